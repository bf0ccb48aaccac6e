"""OpenLineage RunEvents as provanchor receives and records them (spec 2-0-2).

An orchestrator's event is kept exactly as received: the ``lineage`` record's
payload is ``{"event": TEXT, "sha256": DIGEST}``, the UTF-8 body and the
sha256 of its bytes, so a reader can show the very event an Airflow task sent
and prove it was not reworded. Everything else a reader needs (the run id, the
job, the datasets) is parsed again from ``event`` by :func:`parse_lineage_event`,
the same function that admitted it, so receiver and index agree by
construction.

Validation is structural, the fields the spec requires of a RunEvent and the
types it gives them: ``eventTime`` an ISO 8601 date-time, ``producer`` and
``schemaURL`` URIs, ``run.runId`` a UUID, ``job.namespace`` and ``job.name``
non-empty, ``eventType`` one of the spec's states when present, datasets with a
``namespace`` and a ``name``. Facets are kept as they are and not interpreted.

A dataset becomes a location URI so that it joins the lineage graph:
``file://HOST`` + ``/path`` is exactly the ``file://HOST/path`` location an
agent records for that file (OpenLineage's naming for local files), and any
other ``scheme://authority`` namespace is followed by the name as a path
(``s3://bucket`` + ``key``). A namespace without a scheme becomes
``openlineage://NAMESPACE/NAME``, both percent-encoded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from urllib.parse import quote

from provanchor.errors import BadLineageEvent, LineageEventTooLarge, RecordError
from provanchor.records.model import file_location

__all__ = [
    "EVENT_TYPES",
    "MAX_EVENT_BYTES",
    "LineageDataset",
    "LineageEvent",
    "dataset_location",
    "job_location",
    "lineage_payload",
    "parse_lineage_event",
    "parse_lineage_payload",
]

MAX_EVENT_BYTES = 1024 * 1024
"""The largest event accepted: OpenLineage events are metadata; a bigger body is a mistake or an attack."""

EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_PATH_SAFE = "/!$&'()*+,;=:@"


@dataclass(frozen=True)
class LineageDataset:
    namespace: str
    name: str

    @property
    def location(self) -> str:
        return dataset_location(self.namespace, self.name)


@dataclass(frozen=True)
class LineageEvent:
    """The parts of a RunEvent the ledger reads; the event itself stays as received."""

    event_type: str | None
    event_time: str
    producer: str
    run_id: str
    job_namespace: str
    job_name: str
    inputs: tuple[LineageDataset, ...]
    outputs: tuple[LineageDataset, ...]

    @property
    def job_location(self) -> str:
        return job_location(self.job_namespace, self.job_name)


def parse_lineage_event(body: bytes, limit: int = MAX_EVENT_BYTES) -> LineageEvent:
    """Admit `body` as an OpenLineage RunEvent, or raise BadLineageEvent naming the first problem."""
    if len(body) > limit:
        raise LineageEventTooLarge(f"event of {len(body):,} bytes is over the limit of {limit:,} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadLineageEvent("the body is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadLineageEvent(f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadLineageEvent("the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadLineageEvent(f"an OpenLineage event is a JSON object, got {type(data).__name__}")
    if "run" not in data or "job" not in data:
        missing = " and ".join(k for k in ("run", "job") if k not in data)
        raise BadLineageEvent(f"not an OpenLineage RunEvent: {missing} missing")
    event_time = _text(data, "eventTime", "eventTime")
    _check_time(event_time)
    producer = _text(data, "producer", "producer")
    _text(data, "schemaURL", "schemaURL")
    event_type = data.get("eventType")
    if event_type is not None and event_type not in EVENT_TYPES:
        raise BadLineageEvent(f"eventType must be one of {', '.join(EVENT_TYPES)}, got {event_type!r:.40}")
    run = _object(data, "run", "run")
    run_id = _text(run, "runId", "run.runId")
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise BadLineageEvent(f"run.runId must be a UUID, got {run_id!r:.60}") from None
    _facets(run, "run")
    job = _object(data, "job", "job")
    job_namespace = _text(job, "namespace", "job.namespace")
    job_name = _text(job, "name", "job.name")
    _facets(job, "job")
    return LineageEvent(
        event_type=event_type,
        event_time=event_time,
        producer=producer,
        run_id=run_id.lower(),
        job_namespace=job_namespace,
        job_name=job_name,
        inputs=_datasets(data, "inputs"),
        outputs=_datasets(data, "outputs"),
    )


def _text(data: dict[str, object], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        shown = "missing" if key not in data else f"{type(value).__name__} {value!r:.40}"
        raise BadLineageEvent(f"{where} must be a non-empty string ({shown})")
    return value


def _object(data: dict[str, object], key: str, where: str) -> dict[str, object]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise BadLineageEvent(f"{where} must be an object, got {type(value).__name__}")
    return value


def _facets(data: dict[str, object], where: str) -> None:
    facets = data.get("facets")
    if facets is not None and not isinstance(facets, dict):
        raise BadLineageEvent(f"{where}.facets must be an object, got {type(facets).__name__}")


def _check_time(value: str) -> None:
    if "t" not in value.lower():
        raise BadLineageEvent(f"eventTime must be an ISO 8601 date-time with a time, got {value!r:.40}")
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadLineageEvent(f"eventTime is not an ISO 8601 date-time: {value!r:.40}") from None


def _datasets(data: dict[str, object], key: str) -> tuple[LineageDataset, ...]:
    entries = data.get(key)
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise BadLineageEvent(f"{key} must be a list, got {type(entries).__name__}")
    found = []
    for n, entry in enumerate(entries):
        where = f"{key}[{n}]"
        if not isinstance(entry, dict):
            raise BadLineageEvent(f"{where} must be an object, got {type(entry).__name__}")
        dataset = LineageDataset(_text(entry, "namespace", f"{where}.namespace"), _text(entry, "name", f"{where}.name"))
        _facets(entry, where)
        try:
            dataset.location  # noqa: B018 (a dataset that cannot be named as a location is refused now)
        except RecordError as exc:
            raise BadLineageEvent(f"{where} cannot be named as a location: {exc}") from None
        found.append(dataset)
    return tuple(found)


def dataset_location(namespace: str, name: str) -> str:
    """The location URI of an OpenLineage dataset (see the module docstring)."""
    if namespace.startswith("file://") and name.startswith("/"):
        host = namespace[len("file://") :].rstrip("/")
        if host:
            return file_location(host, name)
    if _SCHEME.match(namespace):
        scheme, _, rest = namespace.partition("://")
        base = f"{scheme.lower()}://{quote(rest.rstrip('/'), safe=_PATH_SAFE)}"
        return f"{base}/{quote(name.lstrip('/'), safe=_PATH_SAFE)}"
    return f"openlineage://{quote(namespace, safe='')}/{quote(name, safe=_PATH_SAFE)}"


def job_location(namespace: str, name: str) -> str:
    """Where a lineage record is filed: ``openlineage://NAMESPACE/job/NAME``."""
    return f"openlineage://{quote(namespace, safe='')}/job/{quote(name, safe='')}"


def lineage_payload(body: bytes) -> dict[str, object]:
    """The payload of a ``lineage`` record: the event as received (text) and the sha256 of its bytes."""
    return {"event": body.decode("utf-8"), "sha256": hashlib.sha256(body).digest()}


def parse_lineage_payload(payload: object) -> LineageEvent:
    """Read a ``lineage`` record's payload back; BadLineageEvent if it was not written by the rules above."""
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise BadLineageEvent("a lineage record's payload holds the event as text under 'event'")
    body = str(payload["event"]).encode("utf-8")
    if payload.get("sha256") != hashlib.sha256(body).digest():
        raise BadLineageEvent("a lineage record's sha256 does not match its event text")
    return parse_lineage_event(body, limit=max(MAX_EVENT_BYTES, len(body)))
