"""The audit bundle's own blocks: its root and its proof blocks, decoded strictly.

An audit bundle is a CARv1 whose single root is a dag-cbor block naming the
chain, contract, agent, scope, selection, checkpoints, proof blocks and
contents (docs/audit-spec.md). These decoders accept exactly that shape and
every link only as the kind of CID it must be; what the blocks claim is then
checked by `provanchor.verify.bundle`, never believed.
"""

from __future__ import annotations

from dataclasses import dataclass

from provanchor.errors import BadInput, DagCborError
from provanchor.formats import dagcbor
from provanchor.formats.cid import CID, CONTENT_LINK, RECORD_LINK, link_problem
from provanchor.records.locations import encoded_path, location_path
from provanchor.records.model import Record

__all__ = [
    "BUNDLE_TYPE",
    "BUNDLE_VERSION",
    "PROOFS_PER_BLOCK",
    "SCOPE_LOG",
    "SCOPE_SELECTION",
    "BundleRoot",
    "Selection",
    "decode_bundle_root",
    "decode_proof_block",
]

BUNDLE_TYPE = "provanchor/audit-bundle"
BUNDLE_VERSION = 2  # v2 states its scope; v1 bundles are still read (their scope follows from the selection)
SCOPE_LOG = "log"  # every record of the agent up to the last checkpoint listed
SCOPE_SELECTION = "selection"  # the records matching `selection`, and only the verifier can prove "all of them"
PROOFS_PER_BLOCK = 1024


@dataclass(frozen=True)
class Selection:
    """Which records go into a bundle: a location (URI, or a path on any host) and a time window."""

    location: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    with_content: bool = False

    def matches(self, record: Record) -> bool:
        if self.since_ns is not None and record.time < self.since_ns:
            return False
        if self.until_ns is not None and record.time > self.until_ns:
            return False
        if self.location is None:
            return True
        return isinstance(record.location, str) and _location_matches(record.location, self.location)

    def to_wire(self) -> dict[str, object]:
        return {
            "location": self.location,
            "since": self.since_ns,
            "until": self.until_ns,
            "content": self.with_content,
        }

    @property
    def selective(self) -> bool:
        """Whether it leaves records out (a location or a time window): then the bundle is a selection."""
        return self.location is not None or self.since_ns is not None or self.until_ns is not None

    @classmethod
    def from_wire(cls, wire: object) -> Selection:
        if not isinstance(wire, dict) or set(wire) != {"location", "since", "until", "content"}:
            raise BadInput("malformed audit bundle root: selection must be {location, since, until, content}")
        location, since, until, content = wire["location"], wire["since"], wire["until"], wire["content"]
        if location is not None and not isinstance(location, str):
            raise BadInput("malformed audit bundle root: selection.location must be a string or null")
        for value in (since, until):
            if value is not None and (type(value) is not int or value < 0):
                raise BadInput("malformed audit bundle root: selection times must be integers (ns) or null")
        if type(content) is not bool:
            raise BadInput("malformed audit bundle root: selection.content must be a boolean")
        return cls(location, since, until, content)


def _location_matches(location: str, wanted: str) -> bool:
    if "://" in wanted:
        return location == wanted
    return location_path(location) == encoded_path(wanted)


@dataclass(frozen=True)
class BundleRoot:
    version: int
    chain_id: int
    contract: str
    agent: str
    scope: str
    selection: Selection
    checkpoints: list[dict[str, object]]
    proofs: list[CID]
    records: int
    contents: list[CID]


_ROOT_KEYS_V1 = {"type", "v", "chain_id", "contract", "agent", "selection", "checkpoints", "proofs", "records",
                 "contents", "created"}
_ROOT_KEYS = _ROOT_KEYS_V1 | {"scope"}


def decode_proof_block(data: bytes) -> list[tuple[int, bytes]]:
    """A proof block's entries, (log position, concatenated audit path), strictly; BadInput otherwise."""
    try:
        wire = dagcbor.decode(data)
    except DagCborError as exc:
        raise BadInput(f"malformed proof block: not DAG-CBOR ({exc})") from None
    if not isinstance(wire, dict) or set(wire) != {"records"} or not isinstance(wire["records"], list):
        raise BadInput("malformed proof block: it must be a map {records: [[position, proof], ...]}")
    entries: list[tuple[int, bytes]] = []
    for number, entry in enumerate(wire["records"]):
        if not (isinstance(entry, list) and len(entry) == 2 and type(entry[0]) is int and entry[0] >= 0):
            raise BadInput(f"malformed proof block: entry {number} is not [non-negative position, proof bytes]")
        if not isinstance(entry[1], bytes):
            raise BadInput(f"malformed proof block: entry {number}'s proof is not a byte string")
        entries.append((entry[0], entry[1]))
    return entries


def decode_bundle_root(data: bytes) -> BundleRoot:
    """The root block, strictly: exact keys and types, every link the kind of CID it must be."""
    try:
        wire = dagcbor.decode(data)
    except ValueError as exc:
        raise BadInput(f"not a provanchor audit bundle: its root block is not DAG-CBOR ({exc})") from None
    if not isinstance(wire, dict) or wire.get("type") != BUNDLE_TYPE or wire.get("v") not in (1, BUNDLE_VERSION):
        raise BadInput("not a provanchor audit bundle (version 1 or 2): its root block has another type")
    version = wire["v"]
    expected = _ROOT_KEYS if version == BUNDLE_VERSION else _ROOT_KEYS_V1
    if set(wire) != expected:
        raise BadInput(f"malformed audit bundle root: keys {sorted(wire)}, expected {sorted(expected)}")
    selection = Selection.from_wire(wire["selection"])
    scope = wire["scope"] if version == BUNDLE_VERSION else (SCOPE_SELECTION if selection.selective else SCOPE_LOG)
    if scope not in (SCOPE_LOG, SCOPE_SELECTION) or (scope == SCOPE_LOG and selection.selective):
        raise BadInput(f"malformed audit bundle root: scope {scope!r} does not fit its selection")
    checkpoints, proofs, contents = wire["checkpoints"], wire["proofs"], wire["contents"]
    if not isinstance(checkpoints, list) or not all(isinstance(c, dict) for c in checkpoints):
        raise BadInput("malformed audit bundle root: checkpoints must be a list of maps")
    for name, value in (("chain_id", wire["chain_id"]), ("records", wire["records"]), ("created", wire["created"])):
        if type(value) is not int or value < 0:
            raise BadInput(f"malformed audit bundle root: {name} must be a non-negative integer")
    if not isinstance(wire["contract"], str) or not isinstance(wire["agent"], str):
        raise BadInput("malformed audit bundle root: contract and agent must be strings")
    if not isinstance(proofs, list) or not isinstance(contents, list):
        raise BadInput("malformed audit bundle root: proofs and contents must be lists of CIDs")
    links = [(c, RECORD_LINK, f"proof block {i}") for i, c in enumerate(proofs)]
    links += [(c, CONTENT_LINK, f"content {i}") for i, c in enumerate(contents)]
    links += [(c.get("manifest"), RECORD_LINK, f"checkpoint {i}'s manifest") for i, c in enumerate(checkpoints)]
    for cid, allowed, what in links:
        if not isinstance(cid, CID):
            raise BadInput(f"malformed audit bundle root: {what} is not a CID")
        problem = link_problem(cid, allowed, what)
        if problem is not None:
            raise BadInput(f"malformed audit bundle root: {problem}")
    return BundleRoot(
        version, wire["chain_id"], wire["contract"], wire["agent"], scope, selection, checkpoints,
        proofs, wire["records"], contents,
    )


