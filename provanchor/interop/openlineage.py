"""A recorded run as OpenLineage RunEvents (spec 2-0-2), built with the openlineage-python client's models.

A run becomes two events: START at the run's start and COMPLETE (exit code 0)
or FAIL (any other) at its end, so a lineage server sees an ordinary run.

- ``run.runId``: the provanchor run id when it is a UUID in hex (what
  ``provanchor run`` makes), else a UUIDv5 of it; the same run always gets
  the same runId.
- ``job``: namespace the host id, name the program (its script when an
  interpreter ran one, else its executable).
- ``inputs`` / ``outputs``: one dataset per file, namespace ``file://HOST-ID``
  and name the absolute path (OpenLineage's naming of local files), each with
  a ``provanchor`` dataset facet: the content's sha256 and CID and the record
  that proves that version (the output's write record; for an input, the run
  record that lists it), with its agent, checkpoint and anchoring transaction.
- the run carries a ``provanchor`` run facet (the run record) and, on FAIL,
  the standard ``errorMessage`` facet.

The custom facets' JSON Schema is docs/openlineage/ProvanchorFacet.json, which
their ``_schemaURL`` names. Building through the client's attrs models means
the client's own validation (UUID run ids, ISO date-times) runs on every event.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import attr
from openlineage.client.generated.base import (
    DatasetFacet,
    EventType,
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunFacet,
)
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.serde import Serde

from provanchor import __version__
from provanchor.interop.runs import Anchored, RunFile, RunView, program_name

__all__ = [
    "FACET_SCHEMA_URL",
    "PRODUCER",
    "ProvanchorDatasetFacet",
    "ProvanchorRunFacet",
    "openlineage_run_id",
    "run_events",
    "run_events_json",
]

PRODUCER = f"https://github.com/provanchor/provanchor/tree/v{__version__}"
FACET_SCHEMA_URL = "https://github.com/provanchor/provanchor/blob/main/docs/openlineage/ProvanchorFacet.json"
_RUN_NAMESPACE = uuid.UUID("5d6b1c2e-3f4a-5b6c-8d7e-9f0a1b2c3d4e")


@attr.define(kw_only=True)
class ProvanchorRunFacet(RunFacet):
    """The provanchor run record of this run (docs/openlineage/ProvanchorFacet.json); camelCase as on the wire."""

    recordCid: str
    codeHash: str | None = None
    agent: str
    checkpoint: int | None = None
    checkpointSize: int | None = None
    anchoringTx: str | None = None
    runId: str
    host: str | None = None
    exitCode: int | None = None

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA_URL + "#/$defs/ProvanchorRunFacet"


@attr.define(kw_only=True)
class ProvanchorDatasetFacet(DatasetFacet):
    """The dataset version a run read or wrote and the record that proves it."""

    recordCid: str
    codeHash: str | None = None
    agent: str
    checkpoint: int | None = None
    checkpointSize: int | None = None
    anchoringTx: str | None = None
    sha256: str
    size: int | None = None
    contentCid: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA_URL + "#/$defs/ProvanchorDatasetFacet"


def openlineage_run_id(run_id: str) -> str:
    """The OpenLineage runId of a provanchor run: itself when it is a hex UUID, else a UUIDv5 of it."""
    try:
        if len(run_id) == 32:
            return str(uuid.UUID(hex=run_id))
    except ValueError:
        pass
    return str(uuid.uuid5(_RUN_NAMESPACE, run_id))


def _iso(ns: int) -> str:
    moment = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


def _anchoring(anchored: Anchored) -> dict[str, Any]:
    facts = anchored.facts()
    keys = ("recordCid", "codeHash", "agent", "checkpoint", "checkpointSize", "anchoringTx")
    return {key: facts[key] for key in keys}


def _dataset_facet(file: RunFile, proof: Anchored) -> ProvanchorDatasetFacet:
    return ProvanchorDatasetFacet(
        producer=PRODUCER, sha256=file.sha256.hex(), size=file.size, contentCid=file.cid, **_anchoring(proof)
    )


def _namespace_and_name(file: RunFile) -> tuple[str, str]:
    split = file.host_and_path
    if split is None:  # not a file: the location itself names it
        scheme, _, rest = file.location.partition("://")
        authority, _, path = rest.partition("/")
        return f"{scheme}://{authority}", "/" + path
    host, path = split
    return f"file://{host}", path


def run_events(view: RunView) -> list[RunEvent]:
    """START and COMPLETE (or FAIL) for the run, as the client's models."""
    run_record = view.run
    failed = view.exit_code not in (None, 0)
    run_facets: dict[str, RunFacet] = {
        "provanchor": ProvanchorRunFacet(
            producer=PRODUCER, runId=view.run_id, host=view.host, exitCode=view.exit_code, **_anchoring(run_record)
        )
    }
    if failed:
        run_facets["errorMessage"] = ErrorMessageRunFacet(
            producer=PRODUCER, message=f"exited with code {view.exit_code}", programmingLanguage="process"
        )
    job = Job(namespace=view.host, name=program_name(run_record.record, view.argv))
    inputs = []
    for file in view.inputs:
        namespace, name = _namespace_and_name(file)
        inputs.append(
            InputDataset(namespace=namespace, name=name, facets={"provanchor": _dataset_facet(file, run_record)})
        )
    outputs = []
    for file in view.outputs:
        namespace, name = _namespace_and_name(file)
        proof = file.written_by or run_record
        facets: dict[str, DatasetFacet] = {"provanchor": _dataset_facet(file, proof)}
        outputs.append(OutputDataset(namespace=namespace, name=name, facets=facets))
    run_id = openlineage_run_id(view.run_id)
    start = RunEvent(
        eventType=EventType.START,
        eventTime=_iso(view.started_ns),
        producer=PRODUCER,
        run=Run(runId=run_id, facets=run_facets),
        job=job,
        inputs=inputs,
        outputs=[],
    )
    end = RunEvent(
        eventType=EventType.FAIL if failed else EventType.COMPLETE,
        eventTime=_iso(view.finished_ns),
        producer=PRODUCER,
        run=Run(runId=run_id, facets=run_facets),
        job=job,
        inputs=inputs,
        outputs=outputs,
    )
    return [start, end]


def event_json(event: RunEvent) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Serde.to_json(event))
    return data


def run_events_json(view: RunView) -> list[dict[str, Any]]:
    """The run's events as JSON objects, exactly as they are sent."""
    return [event_json(event) for event in run_events(view)]
