"""in-toto attestations of recorded runs and ML models: SLSA provenance v1 in a DSSE envelope.

For a run (``provanchor export intoto RUN_ID``):

- **subjects**: the run's outputs, named by location, with their sha256;
- ``buildDefinition``: ``externalParameters`` the argv, working directory and
  run name; ``internalParameters`` the host, the environment digest and the
  capture backend; ``resolvedDependencies`` the program (executable and
  scripts, with their sha256 and the code hash) and every input;
- ``runDetails``: ``builder.id`` the agent (``urn:provanchor:agent:ADDRESS``),
  ``metadata`` the run id and its start and end times, and the byproduct
  ``provanchor record``: the anchored run record (``ipfs://CID``).

For a model (``provanchor ml export intoto MODEL_EVENT``) the subject is the
parameters file, the dependencies are the training run's code and its
datasets, the parameters are the hyperparameters, and the byproduct is the
model record.

The envelope is signed by the agent that recorded the run or the model, so
``provanchor verify attestation`` can hold the signer against the chain's
list of authorised agents.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from provanchor import __version__
from provanchor.errors import RecordError, UnknownEvent, UsageError
from provanchor.formats.dsse import Envelope, sign_envelope
from provanchor.formats.intoto import PAYLOAD_TYPE, PREDICATE_TYPE, RECORD_BYPRODUCT, STATEMENT_TYPE, statement_bytes
from provanchor.index.store import IndexStore
from provanchor.interop.runs import Anchored, RunView
from provanchor.ml.events import Event
from provanchor.ml.trace import trace_event
from provanchor.records import CodeIdentity, Op, Record

__all__ = ["BUILD_TYPE", "builder_id", "model_statement", "run_statement", "sign_statement"]

BUILD_TYPE = "https://github.com/provanchor/provanchor/blob/main/docs/interop.md#slsa-build-type-v1"


def builder_id(agent: str) -> str:
    return f"urn:provanchor:agent:{agent.lower()}"


def _rfc3339(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _code_dependencies(record: Record) -> list[dict[str, Any]]:
    code = record.code
    found: list[dict[str, Any]] = []
    if isinstance(code, CodeIdentity):
        files = ([("executable", code.exe)] if code.exe is not None else []) + [("script", s) for s in code.scripts]
        for role, file in files:
            found.append(
                {"name": role, "uri": f"file://{_host(record)}{file.path}", "digest": {"sha256": file.sha256.hex()}}
            )
    if record.code_hash is not None:
        found.append({"name": "code hash", "uri": "urn:provanchor:code", "digest": {"sha256": record.code_hash.hex()}})
    return found


def _host(record: Record) -> str:
    return record.host if isinstance(record.host, str) else "committed-host"


def _record_byproduct(anchored: Anchored) -> dict[str, Any]:
    annotations: dict[str, Any] = {"agent": anchored.record.agent, "seq": anchored.record.seq}
    if anchored.checkpoint is not None:
        annotations["checkpoint"] = anchored.checkpoint
    if anchored.tx is not None:
        annotations["anchoringTx"] = "0x" + anchored.tx.hex()
    return {
        "name": RECORD_BYPRODUCT,
        "uri": f"ipfs://{anchored.record_id}",
        "digest": {"sha256": anchored.record.hash.hex()},
        "annotations": annotations,
    }


def _statement(subjects: list[dict[str, Any]], build: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {"buildDefinition": build, "runDetails": details},
    }


def run_statement(view: RunView) -> dict[str, Any]:
    """The statement for a recorded run; UsageError when the run left no output to attest."""
    if not view.outputs:
        raise UsageError(f"run {view.run_id} wrote no output: an attestation needs at least one subject")
    record = view.run.record
    payload = view.payload
    env = payload.get("env")
    internal: dict[str, Any] = {"host": view.host, "capture": payload.get("capture")}
    if isinstance(env, dict) and isinstance(env.get("sha256"), bytes):
        internal["envSha256"] = env["sha256"].hex()
    external: dict[str, Any] = {"argv": view.argv}
    for key in ("cwd", "name"):
        if isinstance(payload.get(key), str):
            external[key] = payload[key]
    dependencies = _code_dependencies(record) + [
        {"name": "input", "uri": file.location, "digest": {"sha256": file.sha256.hex()}} for file in view.inputs
    ]
    build = {
        "buildType": BUILD_TYPE,
        "externalParameters": external,
        "internalParameters": internal,
        "resolvedDependencies": dependencies,
    }
    details = {
        "builder": {"id": builder_id(record.agent), "version": {"provanchor": __version__}},
        "metadata": {
            "invocationId": view.run_id,
            "startedOn": _rfc3339(view.started_ns),
            "finishedOn": _rfc3339(view.finished_ns),
        },
        "byproducts": [_record_byproduct(view.run)],
    }
    subjects = [{"name": file.location, "digest": {"sha256": file.sha256.hex()}} for file in view.outputs]
    return _statement(subjects, build, details)


def model_statement(store: IndexStore, event_id: str) -> tuple[dict[str, Any], Anchored]:
    """The statement for an ML model event, and the anchored model record."""
    trace = trace_event(store, event_id)
    root = trace.nodes[0]
    if root.found is None:
        raise UnknownEvent(f"cannot attest {event_id}: {'; '.join(root.problems)}")
    if root.kind is not Op.MODEL:
        raise UnknownEvent(f"{event_id} is a {root.kind.value} event; an attestation is made for a model")
    model = root.found.event
    after = model.record.after
    if after is None or not isinstance(model.record.location, str):
        raise RecordError(f"model {event_id} names no parameters file to attest")
    trainings = [n.found.event for n in trace.by_kind(Op.TRAINING) if n.found is not None]
    datasets = [n.found.event for n in trace.by_kind(Op.DATASET) if n.found is not None]
    training = trainings[0] if trainings else None
    dependencies = _code_dependencies(training.record) if training is not None else []
    dependencies += [_dataset_dependency(d) for d in datasets]
    external: dict[str, Any] = {"name": model.name, "version": model.version}
    if training is not None and isinstance(training.payload.get("hyperparameters"), dict):
        external["hyperparameters"] = training.payload["hyperparameters"]
    metadata: dict[str, Any] = {"invocationId": training.record_id if training is not None else model.record_id}
    if training is not None:
        for wire, key in (("started_ns", "startedOn"), ("ended_ns", "finishedOn")):
            value = training.payload.get(wire)
            if isinstance(value, int):
                metadata[key] = _rfc3339(value)
    anchored = Anchored(model.record, root.found.checkpoint, root.found.checkpoint_size, root.found.tx)
    build = {
        "buildType": BUILD_TYPE + "-model",
        "externalParameters": external,
        "internalParameters": {"host": _host(model.record)},
        "resolvedDependencies": dependencies,
    }
    details = {
        "builder": {"id": builder_id(model.record.agent), "version": {"provanchor": __version__}},
        "metadata": metadata,
        "byproducts": [_record_byproduct(anchored)],
    }
    subjects = [{"name": model.record.location, "digest": {"sha256": after.sha256.hex()}}]
    return _statement(subjects, build, details), anchored


def _dataset_dependency(event: Event) -> dict[str, Any]:
    location = event.record.location if isinstance(event.record.location, str) else "(committed)"
    after = event.record.after
    digest = after.sha256.hex() if after is not None else event.record.hash.hex()
    return {
        "name": f"dataset {event.name or ''} {event.version or ''}".strip(),
        "uri": location,
        "digest": {"sha256": digest},
        "annotations": {"record": event.record_id},
    }


def sign_statement(statement: dict[str, Any], private_key: bytes) -> Envelope:
    """The statement in a DSSE envelope signed by `private_key` (keyid its address)."""
    return sign_envelope(PAYLOAD_TYPE, statement_bytes(statement), private_key)
