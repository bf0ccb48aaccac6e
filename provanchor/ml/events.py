"""ML events on the wire: what each kind's record carries, and how a reader checks it.

An ML event is an ordinary provenance record (same encoding, signature, log
and anchoring) with ``op`` one of ``dataset training model evaluation
inference``, ``capture.backend`` = ``ml``, and its data in ``payload``::

    {"ml": 1, "kind": OP, "parents": [{"kind": OP, "id": CID}, ...], ...kind fields}

``parents`` are DAG-CBOR links (CIDs) to the parent events' records, so the
events form a DAG on IPFS itself, and every link is covered by the child's
signature: a parent cannot be swapped without breaking its child. Which
parents each kind has:

| kind         | parents                | location                       | ``after``              |
| ------------ | ---------------------- | ------------------------------ | ---------------------- |
| `dataset`    | none                   | the file, or ml://.../dataset  | the file's sha256/size |
| `training`   | its datasets           | ml://HOST/training/NAME/VER    | null                   |
| `model`      | its training run       | the parameters file            | the file's sha256/size |
| `evaluation` | the model, the dataset | ml://HOST/evaluation/NAME/VER  | null                   |
| `inference`  | the model              | ml://HOST/inference/NAME/VER   | null                   |

An inference record carries ``receipts``: a list of 1 to 1,024
``{"input": commitment, "output": commitment}`` maps (provanchor.ml.commitments).
One receipt per record is the default; batching many in one record shares
its signature, block and log leaf. A receipt in a batch is named
``RECORD_ID#INDEX``.

Numbers that are not integers (metrics, learning rates) are decimal strings
(records admit no floats, docs/record-format.md section 2.1): a float becomes
its shortest round-trip ``repr``, so ``0.91`` is stored as ``"0.91"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

from provanchor.errors import InvalidHyperparameter, InvalidMetric, RecordError, UnknownEvent
from provanchor.formats.cid import CID, DAG_CBOR
from provanchor.records import Op, Record

__all__ = [
    "KINDS",
    "MAX_RECEIPTS_PER_RECORD",
    "PARENT_KINDS",
    "WIRE_VERSION",
    "Event",
    "ParentLink",
    "decimal_text",
    "event_location",
    "hyperparameters_wire",
    "metrics_wire",
    "parse_event",
    "parse_event_id",
    "receipt_id",
    "split_event_id",
]

WIRE_VERSION = 1
MAX_RECEIPTS_PER_RECORD = 1024
"""Receipts one inference record may carry (about 110 bytes each on the wire: records stay near 100 KiB)."""
KINDS: tuple[Op, ...] = (Op.DATASET, Op.TRAINING, Op.MODEL, Op.EVALUATION, Op.INFERENCE)

PARENT_KINDS: dict[Op, tuple[Op, ...]] = {
    Op.DATASET: (),
    Op.TRAINING: (Op.DATASET,),
    Op.MODEL: (Op.TRAINING,),
    Op.EVALUATION: (Op.MODEL, Op.DATASET),
    Op.INFERENCE: (Op.MODEL,),
}
"""Which kinds of parent each kind may link to (every kind listed is required at least once)."""


@dataclass(frozen=True)
class ParentLink:
    kind: Op
    id: CID

    @property
    def record_id(self) -> str:
        return self.id.encode()

    def to_wire(self) -> dict[str, object]:
        return {"kind": self.kind.value, "id": self.id}


@dataclass(frozen=True)
class Event:
    """A recorded ML event: its record id (the record's CID) and what the record says.

    The tracker returns these; ``trace`` reads them back from the index. Pass an
    Event (or its ``record_id``) wherever a parent is expected.
    """

    record_id: str
    kind: Op
    record: Record
    parents: tuple[ParentLink, ...]
    payload: Mapping[str, object]

    @property
    def name(self) -> str | None:
        value = self.payload.get("name")
        return value if isinstance(value, str) else None

    @property
    def version(self) -> str | None:
        value = self.payload.get("version")
        return value if isinstance(value, str) else None

    @property
    def hash(self) -> bytes:
        return self.record.hash

    @property
    def receipts(self) -> list[dict[str, object]]:
        """An inference record's receipts (each ``{"input": commitment, "output": commitment}``)."""
        value = self.payload.get("receipts")
        return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []

    def __str__(self) -> str:
        return self.record_id


def receipt_id(record_id: str, index: int) -> str:
    """The id of receipt ``index`` in a record that batches several: ``RECORD_ID#INDEX``."""
    return f"{record_id}#{index}"


def split_event_id(text: object) -> tuple[CID, int | None]:
    """An event id and, for a batched receipt (``RECORD_ID#INDEX``), the receipt's index."""
    if isinstance(text, str) and "#" in text:
        head, _, tail = text.strip().partition("#")
        if not tail.isdigit() or len(tail) > 6:
            raise UnknownEvent(f"a receipt id is RECORD_ID#INDEX with a decimal index, got {text!r:.80}")
        return parse_event_id(head), int(tail)
    return parse_event_id(text), None


def parse_event_id(text: object) -> CID:
    """An event id is a record's CIDv1 (dag-cbor); anything else is refused with the reason."""
    if isinstance(text, Event):
        return text.record.cid
    if not isinstance(text, str):
        raise UnknownEvent(f"an event id is a record CID string, got {type(text).__name__}")
    try:
        cid = CID.parse(text.strip())
    except Exception:
        raise UnknownEvent(f"not an event id (a record CID such as bafyrei...): {text!r:.80}") from None
    if cid.codec != DAG_CBOR:
        raise UnknownEvent(f"{text!r:.80} names raw content, not a record (dag-cbor CID)")
    return cid


def parse_event(record: Record) -> Event:
    """Read an ML record's payload strictly; a malformed one is a RecordError naming the problem."""
    if record.op not in PARENT_KINDS:
        raise RecordError(f"record {record.cid.encode()} is a {record.op.value} record, not an ML event", field="op")
    payload = record.payload
    if not isinstance(payload, dict) or payload.get("ml") != WIRE_VERSION or payload.get("kind") != record.op.value:
        raise RecordError(f"record {record.cid.encode()}: payload is not an ML event of kind {record.op.value}")
    raw_parents = payload.get("parents")
    if not isinstance(raw_parents, list):
        raise RecordError(f"record {record.cid.encode()}: payload.parents must be a list", field="payload")
    parents = []
    for entry in raw_parents:
        kind = entry.get("kind") if isinstance(entry, dict) else None
        link = entry.get("id") if isinstance(entry, dict) else None
        if kind not in {k.value for k in PARENT_KINDS[record.op]} or not isinstance(link, CID):
            raise RecordError(
                f"record {record.cid.encode()}: a {record.op.value} cannot link to parent {entry!r:.80}",
                field="payload",
            )
        parents.append(ParentLink(Op(kind), link))
    missing = [k.value for k in PARENT_KINDS[record.op] if k not in {p.kind for p in parents}]
    if missing:
        raise RecordError(f"record {record.cid.encode()}: a {record.op.value} needs a {missing[0]} parent")
    if record.op is Op.INFERENCE:
        receipts = payload.get("receipts")
        if (
            not isinstance(receipts, list)
            or not 1 <= len(receipts) <= MAX_RECEIPTS_PER_RECORD
            or not all(isinstance(r, dict) and set(r) == {"input", "output"} for r in receipts)
        ):
            raise RecordError(
                f"record {record.cid.encode()}: receipts must be 1 to {MAX_RECEIPTS_PER_RECORD} "
                "maps of input and output",
                field="payload",
            )
    return Event(record.cid.encode(), record.op, record, tuple(parents), payload)


def event_location(host: str, kind: Op, name: str, version: str) -> str:
    """``ml://HOST/KIND/NAME/VERSION`` with every unsafe byte percent-encoded (a valid record URI)."""
    parts = [quote(part, safe="") for part in (host, kind.value, name, version)]
    return "ml://" + "/".join(parts)


# ------------------------------------------------------------------ numbers


def decimal_text(value: object, what: str) -> str:
    """A finite number as the decimal string stored in records; raises InvalidMetric otherwise."""
    if isinstance(value, bool) or value is None:
        raise InvalidMetric(f"{what} must be a number, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidMetric(f"{what} must be a finite number, got {value!r}")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidMetric(f"{what} must be a finite number, got {value}")
        return str(value)
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidMetric(f"{what} must be a number, got the text {value!r:.40}") from None
        if not parsed.is_finite():
            raise InvalidMetric(f"{what} must be a finite number, got {value!r:.40}")
        return value.strip()
    # NumPy scalars and the like: anything that converts to float exactly is accepted.
    try:
        as_float = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidMetric(f"{what} must be a number, got {type(value).__name__}") from None
    return decimal_text(as_float, what)


def metrics_wire(metrics: Mapping[str, object]) -> dict[str, object]:
    """Metrics as ``{name: decimal string}``; names are non-empty strings, values finite numbers."""
    if not isinstance(metrics, Mapping):
        raise InvalidMetric(f"metrics must be a mapping of name to number, got {type(metrics).__name__}")
    out: dict[str, object] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise InvalidMetric(f"metric names must be non-empty strings, got {name!r:.40}")
        out[name] = decimal_text(value, f"metric {name!r}")
    return out


def hyperparameters_wire(params: Mapping[str, object]) -> dict[str, object]:
    """Hyperparameters with floats as decimal strings; other types are refused by name."""
    if not isinstance(params, Mapping):
        raise InvalidHyperparameter(f"hyperparameters must be a mapping, got {type(params).__name__}")
    return {_param_name(name): _param_value(value, str(name)) for name, value in params.items()}


def _param_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidHyperparameter(f"hyperparameter names must be non-empty strings, got {name!r:.40}")
    return name


def _param_value(value: object, name: str) -> object:
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_param_value(item, name) for item in value]
    try:
        return decimal_text(value, f"hyperparameter {name!r}")
    except InvalidMetric as exc:
        raise InvalidHyperparameter(
            f"hyperparameter {name!r} must be a string, integer, boolean, finite number or a list of those: {exc}"
        ) from None
