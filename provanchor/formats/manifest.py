"""Batch manifests: what one checkpoint adds to an agent's log.

A manifest is a dag-cbor block on IPFS, named by the `Anchored` event of its
checkpoint. It lists the CIDs of the records the checkpoint adds (in `seq`
order, so leaf `start + i` is `records[i]`, as IPLD links), their EIP-712
signatures, the tree size and root, and the previous checkpoint's manifest CID
(as a string, not a link, so that pinning a manifest pins its own batch and not
the whole history again), so an auditor can walk an agent's whole history from
the chain's events alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from provanchor.errors import InvalidCid, RecordError
from provanchor.formats import dagcbor
from provanchor.formats.cid import CID, DAG_CBOR, RECORD_LINK, link_problem

MANIFEST_TYPE = "provanchor/batch"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class PreviousCheckpoint:
    index: int
    size: int
    root: bytes
    manifest: CID


@dataclass(frozen=True)
class Manifest:
    agent: str
    chain_id: int
    contract: str
    checkpoint: int
    start: int
    size: int
    root: bytes
    records: tuple[CID, ...]
    signatures: tuple[bytes, ...]
    previous: PreviousCheckpoint | None

    def to_wire(self) -> dict[str, object]:
        prev: dict[str, object] | None = None
        if self.previous is not None:
            prev = {
                "index": self.previous.index,
                "size": self.previous.size,
                "root": self.previous.root,
                # A CID string, deliberately not an IPLD link: a recursive pin of this manifest
                # must cover this batch only, not walk the agent's whole history again.
                "manifest": self.previous.manifest.encode(),
            }
        return {
            "type": MANIFEST_TYPE,
            "v": MANIFEST_VERSION,
            "agent": self.agent.lower(),
            "chain_id": self.chain_id,
            "contract": self.contract.lower(),
            "checkpoint": self.checkpoint,
            "start": self.start,
            "size": self.size,
            "root": self.root,
            "records": list(self.records),
            "signatures": list(self.signatures),
            "prev": prev,
        }

    @cached_property
    def _encoded(self) -> bytes:
        return dagcbor.encode(self.to_wire())

    def encode(self) -> bytes:
        """The canonical bytes (encoded once: a batch's manifest is needed for its CID and its block)."""
        return self._encoded

    @property
    def cid(self) -> CID:
        return CID.for_block(DAG_CBOR, self._encoded)


def decode_manifest(data: bytes) -> Manifest:
    """Strictly decode a manifest block; any deviation is a RecordError naming the field."""
    try:
        wire = dagcbor.decode(data)
    except ValueError as exc:
        raise RecordError(f"manifest is not canonical dag-cbor: {exc}", field="manifest") from exc
    if not isinstance(wire, dict):
        raise RecordError("manifest is not a map", field="manifest")
    expected = {
        "type",
        "v",
        "agent",
        "chain_id",
        "contract",
        "checkpoint",
        "start",
        "size",
        "root",
        "records",
        "signatures",
        "prev",
    }
    unknown = set(wire) - expected
    if unknown:
        raise RecordError(f"manifest has unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    missing = expected - set(wire)
    if missing:
        raise RecordError(f"manifest lacks field {sorted(missing)[0]!r}", field=sorted(missing)[0])
    if wire["type"] != MANIFEST_TYPE or wire["v"] != MANIFEST_VERSION:
        raise RecordError("not a provanchor batch manifest of version 1", field="type")
    records = wire["records"]
    signatures = wire["signatures"]
    if not isinstance(records, list) or not all(isinstance(c, CID) for c in records):
        raise RecordError("manifest records must be a list of CIDs", field="records")
    start = wire["start"] if isinstance(wire["start"], int) and not isinstance(wire["start"], bool) else 0
    for position, cid in enumerate(records):
        problem = link_problem(cid, RECORD_LINK, f"manifest record {position} (log position {start + position})")
        if problem is not None:
            raise RecordError(problem, field="records")
    if not isinstance(signatures, list) or not all(isinstance(s, bytes) and len(s) == 65 for s in signatures):
        raise RecordError("manifest signatures must be 65-byte strings", field="signatures")
    if len(records) != len(signatures):
        raise RecordError("manifest lists a different number of records and signatures", field="signatures")
    for name in ("agent", "contract"):
        if not isinstance(wire[name], str):
            raise RecordError(f"manifest field {name} must be a string", field=name)
    for name in ("chain_id", "checkpoint", "start", "size"):
        if not isinstance(wire[name], int) or isinstance(wire[name], bool) or wire[name] < 0:
            raise RecordError(f"manifest field {name} must be a non-negative integer", field=name)
    if wire["start"] + len(records) != wire["size"]:
        raise RecordError("manifest start + records does not equal size", field="size")
    root = wire["root"]
    if not isinstance(root, bytes) or len(root) != 32:
        raise RecordError("manifest root must be 32 bytes", field="root")
    previous = None
    prev = wire["prev"]
    if prev is not None:
        if not isinstance(prev, dict) or set(prev) != {"index", "size", "root", "manifest"}:
            raise RecordError("manifest prev must be {index, size, root, manifest}", field="prev")
        if (
            not isinstance(prev["manifest"], str)
            or not isinstance(prev["root"], bytes)
            or len(prev["root"]) != 32
            or not all(type(prev[key]) is int and prev[key] >= 0 for key in ("index", "size"))
        ):
            raise RecordError("manifest prev has wrong types", field="prev")
        try:
            previous_cid = CID.parse(prev["manifest"])
        except InvalidCid as exc:
            raise RecordError(f"manifest prev.manifest is not a CID: {exc}", field="prev") from None
        problem = link_problem(previous_cid, RECORD_LINK, "manifest prev.manifest")
        if problem is not None:
            raise RecordError(problem, field="prev")
        previous = PreviousCheckpoint(prev["index"], prev["size"], prev["root"], previous_cid)
    return Manifest(
        agent=str(wire["agent"]),
        chain_id=int(wire["chain_id"]),
        contract=str(wire["contract"]),
        checkpoint=int(wire["checkpoint"]),
        start=int(wire["start"]),
        size=int(wire["size"]),
        root=root,
        records=tuple(records),
        signatures=tuple(signatures),
        previous=previous,
    )


def build_manifest(
    agent: str,
    chain_id: int,
    contract: str,
    checkpoint: int,
    start: int,
    root: bytes,
    records: Sequence[CID],
    signatures: Sequence[bytes],
    previous: PreviousCheckpoint | None,
) -> Manifest:
    return Manifest(
        agent=agent,
        chain_id=chain_id,
        contract=contract,
        checkpoint=checkpoint,
        start=start,
        size=start + len(records),
        root=root,
        records=tuple(records),
        signatures=tuple(signatures),
        previous=previous,
    )
