"""The network descriptor (`network.json`) every command reads.

It names what a client needs to reach the ledger: the chain's RPC URL and id,
the contract address and its deployment block, and the IPFS RPC API. `node up`
writes it for the local network; in production an operator writes it by hand
(any EVM JSON-RPC, Kubo or IPFS Cluster), which is the only difference between
the two.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from provanchor.errors import ConfigError, NetworkNotFound
from provanchor.home import Home

SCHEMA = "provanchor/network/v1"


@dataclass(frozen=True)
class NetworkDescriptor:
    chain_id: int
    rpc_url: str
    contract: str
    deployment_block: int
    ipfs_api: str
    ipfs_kind: str = "unknown"
    local: bool = False
    # The IPFS repository's path when the daemon runs on this machine (the local network): the
    # anchorer then makes imported blocks durable (syncfs) before anchoring them. None elsewhere.
    ipfs_repo: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The local chain's engine ("anvil" or "geth") when `node up` runs it; "external" otherwise.
    chain_kind: str = "anvil"
    # An IPFS Cluster that pins what the ledger needs: {"api": REST URL, "replication": N}, or None.
    ipfs_cluster: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = SCHEMA
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], source: Path | None = None) -> NetworkDescriptor:
        where = f" in {source}" if source else ""
        try:
            return cls(
                chain_id=int(data["chain_id"]),
                rpc_url=str(data["rpc_url"]),
                contract=str(data["contract"]),
                deployment_block=int(data.get("deployment_block", 0)),
                ipfs_api=str(data["ipfs_api"]),
                ipfs_kind=str(data.get("ipfs_kind", "unknown")),
                local=bool(data.get("local", False)),
                ipfs_repo=str(data["ipfs_repo"]) if data.get("ipfs_repo") else None,
                extra=dict(data.get("extra", {})),
                chain_kind=str(data.get("chain_kind", "anvil" if data.get("local") else "external")),
                ipfs_cluster=dict(data["ipfs_cluster"]) if data.get("ipfs_cluster") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"network descriptor{where} is malformed: missing or bad {exc}") from exc


def load_network(home: Home) -> NetworkDescriptor:
    path = home.network_file
    if not path.exists():
        raise NetworkNotFound(
            f"no network.json in {home.root}: run `provanchor node up` or pass --home / set PROVANCHOR_HOME"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return NetworkDescriptor.from_json(data, path)


def save_network(home: Home, descriptor: NetworkDescriptor) -> Path:
    write_json_atomic(home.network_file, descriptor.to_json())
    return home.network_file


def write_json_atomic(path: Path, data: Any, mode: int = 0o644) -> None:
    """Write JSON so a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
