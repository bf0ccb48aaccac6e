"""Governance as a library: who signs, what a proposal asks, and what the chain answered.

Every governance write has the same shape: resolve the governor who signs,
send one transaction, report the proposal's outcome against the quorum. The
five kinds of proposal differ only in their contract function and argument,
so they are one table (`PROPOSALS`), which the CLI turns into commands.

A governor signs with a dev key of the local network (`--as`, index or
address, the default) or with their own encrypted keystore (`--keystore`,
the password as for agents: a password file, `$PROVANCHOR_PASSWORD`, else a
prompt), which is how a real consortium's governors work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from provanchor.errors import UsageError
from provanchor.home import Home
from provanchor.network import load_network

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from provanchor.chain.client import AgentInfo, LedgerClient, ProposalInfo, ProposalOutcome

__all__ = [
    "PROPOSALS",
    "GovernanceResult",
    "ProposalKind",
    "Signer",
    "decide",
    "list_agents",
    "list_proposals",
    "propose",
]

ArgumentKind = Literal["address", "quorum"]


@dataclass(frozen=True)
class ProposalKind:
    """One kind of proposal: its command name, what it asks, and the LedgerClient method that sends it."""

    command: str
    summary: str
    argument: ArgumentKind
    method: str
    takes_name: bool = False


PROPOSALS: tuple[ProposalKind, ...] = (
    ProposalKind("add-agent", "Propose approving ADDRESS as a provenance agent.", "address", "propose_add_agent", True),
    ProposalKind(
        "revoke-agent", "Propose closing ADDRESS's active window for good.", "address", "propose_revoke_agent"
    ),
    ProposalKind("add-governor", "Propose adding ADDRESS to the governors.", "address", "propose_add_governor"),
    ProposalKind(
        "remove-governor",
        "Propose removing ADDRESS from the governors (pending proposals become stale).",
        "address",
        "propose_remove_governor",
    ),
    ProposalKind("set-quorum", "Propose requiring QUORUM approvals from now on.", "quorum", "propose_set_quorum"),
)


@dataclass(frozen=True)
class Signer:
    """Who signs a governance transaction: a dev governor (`dev`: index or address) or a keystore."""

    dev: str | None = None
    keystore: str | None = None
    password_file: str | None = None

    def account(self, home: Home) -> LocalAccount:
        if self.keystore is not None and self.dev is not None:
            raise UsageError("--as and --keystore name two different signers: give one")
        if self.keystore is not None:
            from provanchor.identity import read_password, unlock

            path = Path(self.keystore)
            if not path.is_file():
                raise UsageError(f"--keystore {self.keystore}: no such keystore file")
            return unlock(path, read_password(self.password_file))
        from provanchor.localnet.devkeys import select_governor

        return select_governor(home, self.dev)


@dataclass(frozen=True)
class GovernanceResult:
    """A proposal's state after one transaction, with the quorum it is measured against."""

    outcome: ProposalOutcome
    quorum: int

    def to_json(self) -> dict[str, object]:
        return {
            "proposal_id": self.outcome.proposal_id,
            "executed": self.outcome.executed,
            "approvals": self.outcome.approvals,
            "quorum": self.quorum,
            "tx": self.outcome.tx,
            "block": self.outcome.block,
        }


def _client(home: Home, signer: Signer | None) -> LedgerClient:
    from provanchor.chain.client import LedgerClient

    network = load_network(home)
    client = LedgerClient(network.rpc_url, network.contract, signer.account(home) if signer else None)
    client.ensure_deployed()
    return client


def propose(
    home: Home, kind: ProposalKind, target: str | int, signer: Signer, name: str | None = None
) -> GovernanceResult:
    """Send a proposal of `kind` about `target` (an address, or a quorum); the proposer's approval counts."""
    client = _client(home, signer)
    send: Callable[..., ProposalOutcome] = getattr(client, kind.method)
    outcome = send(target, name) if kind.takes_name else send(target)
    return GovernanceResult(outcome, client.quorum())


def decide(home: Home, action: Literal["approve", "execute"], proposal_id: int, signer: Signer) -> GovernanceResult:
    """Approve a proposal (it executes once the quorum is met), or execute one whose approvals already meet it."""
    client = _client(home, signer)
    outcome = client.approve(proposal_id) if action == "approve" else client.execute(proposal_id)
    return GovernanceResult(outcome, client.quorum())


def list_proposals(home: Home, pending: bool = False) -> tuple[list[ProposalInfo], int]:
    """Every proposal (only those that can still execute with `pending`), and the current quorum."""
    client = _client(home, None)
    found = [p for p in client.proposals() if not pending or (not p.executed and not p.stale)]
    return found, client.quorum()


def list_agents(home: Home) -> list[AgentInfo]:
    """Every agent ever approved, active or revoked, with its window."""
    return _client(home, None).agents()
