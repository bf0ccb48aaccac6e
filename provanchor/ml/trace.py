"""Tracing an ML event back to its data: from a receipt to the model, the training run and the datasets.

The trace reads the local index (a verified cache of anchored records, see
provanchor.index) and walks the ``parents`` links breadth-first, leaf first.
It trusts nothing it reads there: each record's bytes must hash to the id the
child links to (the index file could have been edited), must decode as a
valid record and ML payload, and must be of the kind the link says. What
fails is kept on the node as a problem, so ``verify`` can report it as a
failed check instead of the trace silently stopping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from provanchor.errors import RecordError, UnknownEvent
from provanchor.formats.cid import CID
from provanchor.index.store import IndexStore, record_id
from provanchor.index.timeparse import format_time
from provanchor.ml.events import KINDS, Event, parse_event, split_event_id
from provanchor.records import Op, decode_record

__all__ = ["Located", "Trace", "TraceNode", "find_event", "find_run_record", "list_models", "trace_event"]

_ML_OPS = tuple(kind.value for kind in KINDS)
_SELECT = (
    "SELECT r.agent, r.seq, r.checkpoint, r.checkpoint_size, r.tx, b.canonical"
    " FROM records r JOIN record_bytes b ON b.id = r.id"
)


@dataclass(frozen=True)
class Located:
    """An ML event found in the index, with the checkpoint that anchors it."""

    event: Event
    agent: str
    seq: int
    checkpoint: int
    checkpoint_size: int
    tx: bytes


def find_event(store: IndexStore, cid: CID) -> tuple[Located | None, str | None]:
    """(the event, None), or (None, why it is unusable), or (None, None) when the index has no such record.

    Served by the index on ``op``: only ML records are scanned for the hash.
    """
    marks = ", ".join("?" * len(_ML_OPS))
    rows = store.read(f"{_SELECT} WHERE r.op IN ({marks}) AND r.record_hash = ?", (*_ML_OPS, cid.digest))
    if not rows:
        other = store.read("SELECT op FROM records WHERE record_hash = ? LIMIT 1", (cid.digest,))
        if not other:
            return None, None
        if other[0][0] in _ML_OPS:
            return None, f"the index lists {cid.encode()} but holds no bytes for it"
        return None, f"{cid.encode()} is a {other[0][0]} record, not an ML event"
    agent, seq, checkpoint, size, tx, canonical = rows[0]
    try:
        record = decode_record(bytes(canonical))
    except RecordError as exc:
        return None, f"the indexed bytes of {cid.encode()} are not a valid record ({exc})"
    if record.hash != cid.digest:
        return None, f"the indexed bytes of {cid.encode()} do not hash to its id: the record was altered"
    try:
        event = parse_event(record)
    except RecordError as exc:
        return None, str(exc)
    return Located(event, str(agent), int(seq), int(checkpoint), int(size), bytes(tx)), None


def _indexed_op(store: IndexStore, cid: CID) -> Op | None:
    """The ML kind the index files this record under, whatever its bytes say (None if not an ML record)."""
    rows = store.read("SELECT op FROM records WHERE record_hash = ? LIMIT 1", (cid.digest,))
    kinds = {kind.value: kind for kind in KINDS}
    return kinds.get(str(rows[0][0])) if rows else None


def find_run_record(store: IndexStore, run_id: str) -> str | None:
    """The record id of the ``provanchor run`` record with this run id, if indexed."""
    rows = store.read("SELECT record_hash FROM records WHERE run_id = ? AND op = 'run' LIMIT 1", (run_id,))
    return record_id(bytes(rows[0][0])) if rows else None


@dataclass
class TraceNode:
    """One event on the trace; ``found`` is None when it could not be used (see ``problems``)."""

    record_id: str
    kind: Op
    found: Located | None
    depth: int
    children: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    run_record: str | None = None

    @property
    def event(self) -> Event | None:
        return None if self.found is None else self.found.event

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "record_id": self.record_id,
            "kind": self.kind.value,
            "depth": self.depth,
            "children": self.children,
            "problems": self.problems,
        }
        found = self.found
        if found is not None:
            record = found.event.record
            data.update(
                agent=found.agent,
                seq=found.seq,
                checkpoint=found.checkpoint,
                time=format_time(record.time),
                parents=[p.record_id for p in found.event.parents],
                run_id=record.run,
                run_record=self.run_record,
                location=record.location if isinstance(record.location, str) else None,
                summary=summary(found.event),
            )
        return data


@dataclass
class Trace:
    """The events from ``root`` back to its datasets, leaf first (breadth-first by depth)."""

    root: str
    nodes: list[TraceNode]
    receipt: int | None = None
    """For a batched receipt's id (``RECORD_ID#INDEX``), the index within the first node's record."""

    @property
    def problems(self) -> list[str]:
        return [f"{node.kind.value} {node.record_id}: {p}" for node in self.nodes for p in node.problems]

    @property
    def events(self) -> list[Event]:
        return [node.found.event for node in self.nodes if node.found is not None]

    def by_kind(self, kind: Op) -> list[TraceNode]:
        return [node for node in self.nodes if node.kind is kind]

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "event": self.root,
            "ok": not self.problems,
            "events": [n.to_json() for n in self.nodes],
        }
        if self.receipt is not None and self.nodes and self.nodes[0].event is not None:
            data["receipt"] = {"index": self.receipt, **_jsonable(self.nodes[0].event.receipts[self.receipt])}  # type: ignore[dict-item]
        return data


def summary(event: Event) -> dict[str, object]:
    """The few payload fields a reader wants on a trace line, JSON-ready (digests as hex)."""
    p = event.payload
    keys = {
        Op.DATASET: ("name", "version", "split", "rows", "digest", "row_format"),
        Op.TRAINING: ("name", "version", "hyperparameters", "started_ns", "ended_ns", "status", "metrics"),
        Op.MODEL: ("name", "version", "architecture_digest"),
        Op.EVALUATION: ("name", "version", "split", "metrics"),
        Op.INFERENCE: ("name", "version"),
    }[event.kind]
    out: dict[str, object] = {key: _jsonable(p.get(key)) for key in keys}
    after = event.record.after
    if after is not None:
        out["sha256"] = after.sha256.hex()
        out["size"] = after.size
    if event.kind is Op.INFERENCE:
        receipts = event.receipts
        out["receipts"] = len(receipts)
        first = receipts[0].get("input") if receipts else None
        out["commitment"] = first.get("mode") if isinstance(first, dict) else None
    return out


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, CID):
        return value.encode()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def trace_event(store: IndexStore, event_id: str | Event) -> Trace:
    """Walk from ``event_id`` to every ancestor; UnknownEvent when the start itself is not an indexed ML event."""
    start, receipt = split_event_id(event_id if isinstance(event_id, str) else event_id.record_id)
    found, problem = find_event(store, start)
    if found is None and problem is None:
        raise UnknownEvent(
            f"no ML event {start.encode()} in the index: is it anchored yet? (flush, then `provanchor index sync`)"
        )
    root_id = start.encode() if receipt is None else f"{start.encode()}#{receipt}"
    if found is None:
        kind = _indexed_op(store, start)
        if kind is None:
            raise UnknownEvent(f"cannot trace {start.encode()}: {problem}")
        # An ML record that is indexed but unusable (altered, malformed): a trace with one failed node.
        return Trace(root_id, [TraceNode(start.encode(), kind, None, 0, problems=[str(problem)])], receipt)
    if receipt is not None and not (found.event.kind is Op.INFERENCE and receipt < len(found.event.receipts)):
        raise UnknownEvent(f"{start.encode()} has no receipt #{receipt} (a receipt id names an inference record)")
    nodes: dict[str, TraceNode] = {}
    order: list[TraceNode] = []
    queue: deque[tuple[CID, Op, int, str | None]] = deque([(start, found.event.kind, 0, None)])
    while queue:
        cid, expected, depth, child = queue.popleft()
        rid = cid.encode()
        if rid in nodes:
            if child is not None:
                nodes[rid].children.append(child)
            continue
        located, problem = (found, None) if depth == 0 else find_event(store, cid)
        node = TraceNode(rid, expected, located, depth, [child] if child else [])
        nodes[rid] = node
        order.append(node)
        if located is None:
            node.problems.append(problem or "not in the index (never anchored, or not synced yet)")
            continue
        event = located.event
        if event.kind is not expected:
            node.problems.append(f"linked as a {expected.value} but the record is a {event.kind.value}")
        if event.record.run is not None:
            node.run_record = find_run_record(store, event.record.run)
        for parent in event.parents:
            queue.append((parent.id, parent.kind, depth + 1, rid))
    return Trace(root_id, order, receipt)


def list_models(store: IndexStore) -> list[dict[str, object]]:
    """Every indexed model event with its training run and evaluations, oldest first.

    Records whose indexed bytes do not hash to their id, or that are not
    well-formed ML events, are listed with a ``problem`` instead of being hidden.
    """
    evaluations: dict[str, list[dict[str, object]]] = {}
    for rid, event, _ in _indexed(store, Op.EVALUATION):
        if event is None:
            continue
        model = next((p.record_id for p in event.parents if p.kind is Op.MODEL), None)
        dataset = next((p.record_id for p in event.parents if p.kind is Op.DATASET), None)
        if model is not None:
            evaluations.setdefault(model, []).append(
                {
                    "record_id": rid,
                    "dataset": dataset,
                    "split": event.payload.get("split"),
                    "metrics": _jsonable(event.payload.get("metrics")),
                }
            )
    models: list[dict[str, object]] = []
    for rid, event, problem in _indexed(store, Op.MODEL):
        if event is None:
            models.append({"record_id": rid, "problem": problem})
            continue
        after = event.record.after
        models.append(
            {
                "record_id": rid,
                "name": event.name,
                "version": event.version,
                "agent": event.record.agent,
                "time": format_time(event.record.time),
                "location": event.record.location if isinstance(event.record.location, str) else None,
                "sha256": None if after is None else after.sha256.hex(),
                "size": None if after is None else after.size,
                "architecture_digest": _jsonable(event.payload.get("architecture_digest")),
                "training": next((p.record_id for p in event.parents if p.kind is Op.TRAINING), None),
                "run_id": event.record.run,
                "evaluations": evaluations.get(rid, []),
            }
        )
    return models


def _indexed(store: IndexStore, kind: Op) -> list[tuple[str, Event | None, str | None]]:
    """(record id, event or None, problem) for every indexed record of one ML kind, by time."""
    rows = store.read(
        "SELECT r.record_hash, b.canonical FROM records r JOIN record_bytes b ON b.id = r.id"
        " WHERE r.op = ? ORDER BY r.time, r.agent, r.seq",
        (kind.value,),
    )
    out: list[tuple[str, Event | None, str | None]] = []
    for digest, canonical in rows:
        rid = record_id(bytes(digest))
        try:
            record = decode_record(bytes(canonical))
            if record.hash != bytes(digest):
                raise RecordError("the indexed bytes do not hash to the record id: the record was altered")
            out.append((rid, parse_event(record), None))
        except RecordError as exc:
            out.append((rid, None, str(exc)))
    return out
