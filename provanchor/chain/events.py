"""The ledger contract's events as typed values, decoded in one place.

web3 hands back logs as attribute dictionaries of `Any`; every consumer that
indexed them by string (`event["args"]["manifestCid"]`) repeated the
decoding and its error handling. Here each event of ProvenanceLedger.sol has
one frozen dataclass, built from a processed log by `decode_event`, carrying
where it was mined (block number, transaction hash, log index). Nothing
outside `provanchor.chain` touches a raw log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provanchor.errors import BadInput
from provanchor.formats.cid import CID

__all__ = [
    "AgentAdded",
    "AgentRevoked",
    "Anchored",
    "ChainEvent",
    "GovernanceEvent",
    "GovernorAdded",
    "GovernorRemoved",
    "Mined",
    "ProposalApproved",
    "ProposalCreated",
    "ProposalExecuted",
    "QuorumChanged",
    "SnapshotAnchored",
    "decode_event",
]


@dataclass(frozen=True)
class Mined:
    """Where an event was mined."""

    block: int
    tx: bytes
    log_index: int

    @property
    def tx_hex(self) -> str:
        return "0x" + self.tx.hex()


@dataclass(frozen=True)
class Anchored:
    """A checkpoint of an agent's log: `size` records under `root`, described by the manifest at `manifest_cid`."""

    agent: str  # lower-case hex
    index: int
    size: int
    root: bytes
    manifest_cid: bytes
    mined: Mined

    @property
    def manifest(self) -> CID | None:
        """The manifest's CID, or None when the bytes on chain are not a CID (a hostile or broken agent)."""
        try:
            return CID.from_bytes(self.manifest_cid)
        except (BadInput, ValueError, IndexError):
            return None


@dataclass(frozen=True)
class SnapshotAnchored:
    resource_id: bytes
    agent: str
    index: int
    cid: bytes
    state_root: bytes
    checkpoint_index: int
    mined: Mined


@dataclass(frozen=True)
class ProposalCreated:
    proposal_id: int
    proposer: str
    action: int
    target: str
    quorum: int
    name: str
    mined: Mined


@dataclass(frozen=True)
class ProposalApproved:
    proposal_id: int
    governor: str
    approvals: int
    mined: Mined


@dataclass(frozen=True)
class ProposalExecuted:
    proposal_id: int
    mined: Mined


@dataclass(frozen=True)
class AgentAdded:
    agent: str
    name: str
    mined: Mined


@dataclass(frozen=True)
class AgentRevoked:
    agent: str
    mined: Mined


@dataclass(frozen=True)
class GovernorAdded:
    governor: str
    mined: Mined


@dataclass(frozen=True)
class GovernorRemoved:
    governor: str
    mined: Mined


@dataclass(frozen=True)
class QuorumChanged:
    previous_quorum: int
    new_quorum: int
    mined: Mined


GovernanceEvent = (
    ProposalCreated
    | ProposalApproved
    | ProposalExecuted
    | AgentAdded
    | AgentRevoked
    | GovernorAdded
    | GovernorRemoved
    | QuorumChanged
)
ChainEvent = Anchored | SnapshotAnchored | GovernanceEvent
GOVERNANCE_EVENTS = (
    "ProposalCreated",
    "ProposalApproved",
    "ProposalExecuted",
    "AgentAdded",
    "AgentRevoked",
    "GovernorAdded",
    "GovernorRemoved",
    "QuorumChanged",
)


def _address(value: object) -> str:
    return str(value).lower()


def decode_event(log: Mapping[str, Any]) -> ChainEvent:
    """A processed web3 log (`event`, `args`, `blockNumber`, `transactionHash`, `logIndex`) as its typed event."""
    name, args = str(log["event"]), log["args"]
    mined = Mined(int(log["blockNumber"]), bytes(log["transactionHash"]), int(log.get("logIndex", 0)))
    match name:
        case "Anchored":
            return Anchored(
                _address(args["agent"]), int(args["index"]), int(args["size"]), bytes(args["root"]),
                bytes(args["manifestCid"]), mined,
            )
        case "SnapshotAnchored":
            return SnapshotAnchored(
                bytes(args["resourceId"]), _address(args["agent"]), int(args["index"]), bytes(args["cid"]),
                bytes(args["stateRoot"]), int(args["checkpointIndex"]), mined,
            )
        case "ProposalCreated":
            return ProposalCreated(
                int(args["proposalId"]), _address(args["proposer"]), int(args["action"]), _address(args["target"]),
                int(args["quorum"]), str(args["name"]), mined,
            )
        case "ProposalApproved":
            return ProposalApproved(int(args["proposalId"]), _address(args["governor"]), int(args["approvals"]), mined)
        case "ProposalExecuted":
            return ProposalExecuted(int(args["proposalId"]), mined)
        case "AgentAdded":
            return AgentAdded(_address(args["agent"]), str(args["name"]), mined)
        case "AgentRevoked":
            return AgentRevoked(_address(args["agent"]), mined)
        case "GovernorAdded":
            return GovernorAdded(_address(args["governor"]), mined)
        case "GovernorRemoved":
            return GovernorRemoved(_address(args["governor"]), mined)
        case "QuorumChanged":
            return QuorumChanged(int(args["previousQuorum"]), int(args["newQuorum"]), mined)
    raise BadInput(f"not an event of the provanchor ledger: {name!r}")
