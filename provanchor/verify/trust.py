"""What a verification trusts, and where each part of it came from.

An auditor names the trust base on the command line: the chain's RPC URL and
the ledger contract (trusted), and a block source (IPFS API or gateway, never
trusted). On a machine that holds a network.json, whatever is not given is
taken from it, and the report says so: a verdict is only as good as the trust
base it was reached from, so the reader must be able to see which one that was.
"""

from __future__ import annotations

from dataclasses import dataclass

from provanchor.errors import ConfigError, UsageError
from provanchor.home import Home
from provanchor.network import load_network
from provanchor.verify.report import Report

__all__ = ["TrustBase"]


@dataclass(frozen=True)
class TrustBase:
    rpc_url: str
    contract: str
    ipfs_api: str | None
    gateway: str | None
    defaulted: tuple[str, ...]  # which of rpc, contract, ipfs came from network.json
    network_file: str | None

    @classmethod
    def resolve(
        cls,
        home: Home,
        rpc_url: str | None,
        contract: str | None,
        ipfs_api: str | None = None,
        gateway: str | None = None,
        *,
        needs_blocks: bool = True,
    ) -> TrustBase:
        """Explicit options win; what is missing comes from `home`'s network.json when there is one."""
        if ipfs_api is not None and gateway is not None:
            raise UsageError("give --ipfs or --gateway, not both")
        missing_blocks = needs_blocks and ipfs_api is None and gateway is None
        defaulted: list[str] = []
        network_file: str | None = None
        if (rpc_url is None or contract is None or missing_blocks) and home.network_file.exists():
            try:
                network = load_network(home)
            except ConfigError as exc:
                raise UsageError(f"give --rpc, --contract and --ipfs: {exc}") from exc
            network_file = str(home.network_file)
            if rpc_url is None:
                rpc_url, defaulted = network.rpc_url, [*defaulted, "rpc"]
            if contract is None:
                contract, defaulted = network.contract, [*defaulted, "contract"]
            if missing_blocks:
                ipfs_api, defaulted = network.ipfs_api, [*defaulted, "ipfs"]
        for value, option in ((rpc_url, "--rpc URL"), (contract, "--contract ADDRESS")):
            if value is None:
                raise UsageError(f"give {option} (there is no network.json in {home.root} to take it from)")
        if needs_blocks and ipfs_api is None and gateway is None:
            raise UsageError(
                f"give a block source, --ipfs API or --gateway URL (there is no network.json in {home.root})"
            )
        assert rpc_url is not None and contract is not None
        return cls(rpc_url, contract, ipfs_api, gateway, tuple(defaulted), network_file)

    def to_json(self) -> dict[str, object]:
        return {
            "rpc": self.rpc_url,
            "contract": self.contract,
            "ipfs": self.ipfs_api,
            "gateway": self.gateway,
            "from_network_json": list(self.defaulted),
            "network_json": self.network_file,
        }

    def describe(self) -> str:
        blocks = f"ipfs {self.ipfs_api}" if self.ipfs_api else f"gateway {self.gateway}" if self.gateway else None
        parts = [f"rpc {self.rpc_url}", f"contract {self.contract}", *([blocks] if blocks else [])]
        where = (
            f"; {', '.join(self.defaulted)} from {self.network_file} (not given on the command line)"
            if self.defaulted
            else "; all given on the command line"
        )
        return "trust base: " + ", ".join(parts) + where

    def annotate(self, report: Report) -> Report:
        """Record the trust base in the report's facts and its readable form."""
        report.facts["trust_base"] = self.to_json()
        report.notes.append(self.describe())
        return report
