"""An agent's checkpoints as the chain records them (`provanchor log`)."""

from __future__ import annotations

from dataclasses import dataclass

from provanchor.chain.client import LedgerClient, checksum
from provanchor.chain.events import Anchored

__all__ = ["AnchoredCheckpoint", "checkpoint_history"]


@dataclass(frozen=True)
class AnchoredCheckpoint:
    """One `Anchored` event with the time the contract stored for it."""

    event: Anchored
    time: int

    def to_json(self) -> dict[str, object]:
        manifest = self.event.manifest
        return {
            "index": self.event.index,
            "size": self.event.size,
            "root": "0x" + self.event.root.hex(),
            "manifest_cid": manifest.encode() if manifest is not None else "0x" + self.event.manifest_cid.hex(),
            "time": self.time,
            "block": self.event.mined.block,
            "tx": self.event.mined.tx_hex,
        }


def checkpoint_history(rpc_url: str, contract: str, agent: str, from_block: int = 0) -> list[AnchoredCheckpoint]:
    """Every checkpoint `agent` anchored, in index order, with the contract's timestamps."""
    ledger = LedgerClient(rpc_url, contract)
    ledger.ensure_deployed()
    address = checksum(agent)
    events = sorted(ledger.anchor_events(address, from_block=from_block), key=lambda e: e.index)
    return [AnchoredCheckpoint(e, ledger.checkpoint(address, e.index).timestamp) for e in events]
