"""Verifying an ML event and everything it came from: authentic, anchored, consistent, and still on disk.

For each event on the trace (provanchor.ml.trace), leaf first:

* **record**: the index's copy hashes to the id its child links to, decodes,
  and is the kind of event the link says (the trace's problems);
* **authentic and anchored**: the record's signature, the agent's authority at
  the anchoring block, inclusion in the anchored root, seq/prev links, all
  from the chain and IPFS (``provanchor.verify.api.verify_record``; see
  :func:`authenticity` for the seam);
* **consistent**: parents are not newer than the event, a model keeps its
  training run's name and version, metrics are numbers, commitments parse,
  a training run's ``provanchor run`` record exists;
* **files** (``check_files``): the dataset file still has its SHA-256 and
  rebuilds the recorded Merkle digest and row count, the model file and the
  code and hyperparameters files still hash as recorded.

Check names are stable (``KIND: what``), because they are part of the
``--json`` output; the detail names the event.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from provanchor.errors import DatasetNotFound, MlError, ProvanchorError, UnsupportedCommitment
from provanchor.index.store import IndexStore
from provanchor.index.timeparse import format_time
from provanchor.ml.commitments import DataCommitment
from provanchor.ml.dataset import MembershipProof, fingerprint_file
from provanchor.ml.environment import read_hyperparameters
from provanchor.ml.events import Event, decimal_text, hyperparameters_wire, parse_event_id
from provanchor.ml.trace import Trace, TraceNode, find_event, trace_event
from provanchor.network import NetworkDescriptor
from provanchor.records import Op, parse_file_location
from provanchor.verify.report import Check, Report

if TYPE_CHECKING:
    from provanchor.verify.api import VerifyContext

__all__ = ["authenticity", "verify_event", "verify_membership"]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _short(record_id: str) -> str:
    return record_id[:16] + "..."


def verify_event(
    store: IndexStore,
    network: NetworkDescriptor | None,
    event_id: str,
    *,
    check_files: bool = True,
) -> Report:
    """The full verification of ``event_id``'s trace; ``network`` None skips the chain re-verification."""
    trace = trace_event(store, event_id)
    report = Report(f"ML event {trace.root}")
    report.facts["events"] = len(trace.nodes)
    report.facts["kinds"] = [node.kind.value for node in trace.nodes]
    context = _context(network, store) if network is not None else None
    try:
        for node in trace.nodes:
            _verify_node(report, trace, node, context, network is None, check_files)
    finally:
        if context is not None:
            context.close()
    return report


def verify_membership(
    store: IndexStore,
    network: NetworkDescriptor | None,
    proof: MembershipProof,
    sample: bytes | None = None,
    *,
    sample_sha256: bytes | None = None,
) -> Report:
    """An auditor's check of a membership proof: the path, and that it leads to an anchored dataset's digest.

    Give the sample, or only its SHA-256; ``network`` None skips the chain re-verification of the dataset record.
    """
    report = Report(f"membership of a sample in dataset {proof.dataset}")
    where = f"row {proof.index} of {proof.rows}"
    if sample is None and sample_sha256 is None:
        report.failed("membership: inclusion proof", "neither the sample nor its sha256 was given")
    else:
        ok = proof.verify(sample, sample_sha256=sample_sha256)
        detail = f"{where} under root {proof.digest.hex()[:16]}..."
        report.add(
            "membership: inclusion proof", ok, detail if ok else f"the path does not lead from the sample: {detail}"
        )
    found, problem = find_event(store, parse_event_id(proof.dataset))
    event = found.event if found is not None else None
    if event is None or event.kind is not Op.DATASET:
        report.failed("membership: dataset record", problem or f"{proof.dataset} is not an indexed dataset event")
        return report
    same = event.payload.get("digest") == proof.digest and event.payload.get("rows") == proof.rows
    report.add(
        "membership: dataset record",
        same,
        f"dataset {event.name} {event.version} records this digest and {proof.rows} rows"
        if same
        else f"dataset {_short(event.record_id)} records another digest or row count than the proof",
    )
    if network is not None:
        context = _context(network, store)
        try:
            report.extend([authenticity(context, event)])
        finally:
            if context is not None:
                context.close()
    return report


def _verify_node(
    report: Report,
    trace: Trace,
    node: TraceNode,
    context: VerifyContext | None,
    offline: bool,
    check_files: bool,
) -> None:
    kind = node.kind.value
    where = f"{kind} {_short(node.record_id)}"
    if node.problems or node.found is None:
        for problem in node.problems:
            report.failed(f"{kind}: record", f"{where}: {problem}")
        return
    event = node.found.event
    report.passed(f"{kind}: record", f"{where}: found in the index, hashes to its id, well-formed ML event")
    if not offline:
        report.extend([authenticity(context, event)])
    else:
        report.passed(
            f"{kind}: anchored (index)",
            f"{where}: indexed in checkpoint {node.found.checkpoint} (signature and inclusion checked at sync)",
        )
    _consistency(report, trace, event, where)
    if check_files:
        _files(report, event, where)


# ------------------------------------------------------------------ authenticity (the seam)


def _context(network: NetworkDescriptor, store: IndexStore) -> VerifyContext | None:
    """A verification context on the network's chain and IPFS, the index as a (checked) hint.

    SEAM: provanchor.verify.api is the shared verifier (issue 7). Where it is
    missing, ``None`` makes :func:`authenticity` fall back to the index's word.
    """
    try:
        from provanchor.verify.api import VerifyContext as Context
    except ImportError:
        return None
    return Context(network.rpc_url, network.contract, ipfs_api=network.ipfs_api, index_path=store.path)


def authenticity(context: VerifyContext | None, event: Event) -> Check:
    """One check summing up ``verify_record``: signature, agent active, inclusion, seq/prev, blocks.

    With no verifier available (``context`` None) it says so and fails: an
    event is never reported authentic on the index's word alone.
    """
    name = f"{event.kind.value}: authentic and anchored"
    where = f"{event.kind.value} {_short(event.record_id)}"
    if context is None:
        return Check(name, False, f"{where}: no chain verifier available (provanchor.verify.api missing)")
    from provanchor.verify.api import verify_record

    try:
        sub = verify_record(context, event.record_id)
    except ProvanchorError as exc:
        return Check(name, False, f"{where}: cannot verify ({exc})")
    checkpoint = sub.facts.get("checkpoint")
    if sub.ok:
        names = ", ".join(dict.fromkeys(check.name for check in sub.checks))
        return Check(name, True, f"{where}: checkpoint {checkpoint}; {names}")
    failures = "; ".join(f"{check.name}: {check.detail}" for check in sub.failures())
    return Check(name, False, f"{where}: {failures}")


# ------------------------------------------------------------------ consistency


def _consistency(report: Report, trace: Trace, event: Event, where: str) -> None:
    kind = event.kind.value
    links = {p.record_id for p in event.parents}
    parents = [n.found.event for n in trace.nodes if n.found is not None and n.record_id in links]
    newer = [p for p in parents if p.record.time > event.record.time]
    if parents:
        ok = not newer
        detail = (
            f"{where}: its {len(parents)} parent(s) were recorded before it"
            if ok
            else f"{where}: parent {newer[0].kind.value} {_short(newer[0].record_id)} is newer than the event"
        )
        report.add(f"{kind}: parents precede it", ok, detail)
    payload = event.payload
    if event.kind is Op.TRAINING:
        started, ended = payload.get("started_ns"), payload.get("ended_ns")
        if isinstance(started, int) and isinstance(ended, int) and 0 <= started <= ended:
            report.passed(f"{kind}: start and end", f"{where}: {format_time(started)} to {format_time(ended)}")
        else:
            report.failed(f"{kind}: start and end", f"{where}: started {started!r:.30}, ended {ended!r:.30}")
        if event.record.run is not None:
            found = next(n.run_record for n in trace.nodes if n.record_id == event.record_id)
            report.add(
                f"{kind}: run record",
                found is not None,
                f"{where}: run {event.record.run} is recorded by {found}"
                if found
                else f"{where}: run {event.record.run} has no indexed run record",
            )
    if event.kind is Op.MODEL:
        training = next((p for p in parents if p.kind is Op.TRAINING), None)
        if training is not None:
            same = (training.name, training.version) == (event.name, event.version)
            report.add(
                f"{kind}: matches its training run",
                same,
                f"{where}: {event.name} {event.version}"
                + ("" if same else f" but the run trained {training.name} {training.version}"),
            )
    if event.kind in (Op.TRAINING, Op.EVALUATION):
        _metrics(report, event, where)
    if event.kind is Op.INFERENCE:
        receipts = event.receipts
        try:
            for entry in receipts:
                DataCommitment.from_wire(entry.get("input"))
                DataCommitment.from_wire(entry.get("output"))
        except UnsupportedCommitment as exc:
            report.failed(f"{kind}: commitments", f"{where}: {exc}")
        else:
            chosen = "" if trace.receipt is None else f" (this receipt is #{trace.receipt})"
            report.passed(f"{kind}: commitments", f"{where}: {len(receipts)} receipt(s) well formed{chosen}")


def _metrics(report: Report, event: Event, where: str) -> None:
    metrics = event.payload.get("metrics")
    if event.kind is Op.TRAINING and not metrics:
        return
    if not isinstance(metrics, dict):
        report.failed(f"{event.kind.value}: metrics", f"{where}: metrics must be a map")
        return
    try:
        for name, value in metrics.items():
            if not isinstance(value, str):
                raise MlError(f"metric {name!r} is stored as {type(value).__name__}, not a decimal string")
            decimal_text(value, f"metric {name!r}")
    except MlError as exc:
        report.failed(f"{event.kind.value}: metrics", f"{where}: {exc}")
        return
    report.passed(f"{event.kind.value}: metrics", f"{where}: {len(metrics)} metric(s), all numbers")


# ------------------------------------------------------------------ files on disk


def _local_path(event: Event) -> str | None:
    location = event.record.location
    if not isinstance(location, str) or not location.startswith("file://"):
        return None
    return parse_file_location(location)[1]


def _file_hash(path: str) -> bytes | None:
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        return digest.digest()
    except OSError:
        return None


def _files(report: Report, event: Event, where: str) -> None:
    kind = event.kind.value
    if event.kind is Op.DATASET:
        _dataset_file(report, event, where)
    elif event.kind is Op.MODEL:
        path = _local_path(event)
        after = event.record.after
        if path is not None and after is not None:
            _compare_file(report, f"{kind}: file", where, path, after.sha256)
    elif event.kind is Op.TRAINING:
        payload = event.payload
        code = payload.get("code")
        entries = code if isinstance(code, list) else []
        bad = []
        for entry in entries:
            path, digest = (entry.get("path"), entry.get("sha256")) if isinstance(entry, dict) else (None, None)
            actual = _file_hash(path) if isinstance(path, str) else None
            if actual is None or actual != digest:
                bad.append(f"{path} {'is missing' if actual is None else 'changed'}")
        if entries:
            detail = f"{where}: " + ("; ".join(bad) if bad else f"{len(entries)} code file(s) unchanged")
            report.add(f"{kind}: code files", not bad, detail)
        params_file = payload.get("hyperparameters_file")
        if isinstance(params_file, dict):
            path, digest = params_file.get("path"), params_file.get("sha256")
            if isinstance(path, str) and isinstance(digest, bytes):
                _compare_file(report, f"{kind}: hyperparameters file", where, path, digest)
                if params_file.get("loaded") is True:
                    _hyperparameters_match(report, event, where, path)


def _hyperparameters_match(report: Report, event: Event, where: str, path: str) -> None:
    """The recorded hyperparameters came from this file: does it still say the same values?"""
    name = f"{event.kind.value}: hyperparameters"
    try:
        parsed = read_hyperparameters(path)
        now = hyperparameters_wire(parsed or {})
    except (OSError, MlError) as exc:
        report.failed(name, f"{where}: {exc}")
        return
    recorded = event.payload.get("hyperparameters")
    if not isinstance(recorded, dict):
        report.failed(name, f"{where}: the record's hyperparameters are not a map")
        return
    differ = [
        f"{key}: recorded {recorded.get(key, '(absent)')!r:.40}, file now {now.get(key, '(absent)')!r:.40}"
        for key in sorted(set(recorded) | set(now))
        if recorded.get(key) != now.get(key)
    ]
    if differ:
        report.failed(name, f"{where}: {path} no longer says what the record does: " + "; ".join(differ[:5]))
    else:
        report.passed(name, f"{where}: {path} still gives the recorded {len(recorded)} hyperparameter(s)")


def _compare_file(report: Report, name: str, where: str, path: str, expected: bytes) -> None:
    actual = _file_hash(path)
    if actual is None:
        report.failed(name, f"{where}: {path} is not on this machine")
    elif actual != expected:
        report.failed(
            name, f"{where}: {path} changed (sha256 now {actual.hex()[:16]}..., recorded {expected.hex()[:16]}...)"
        )
    else:
        report.passed(name, f"{where}: {path} still has sha256 {expected.hex()[:16]}...")


def _dataset_file(report: Report, event: Event, where: str) -> None:
    kind = event.kind.value
    path = _local_path(event)
    after = event.record.after
    if path is None or after is None:
        return  # samples given in memory: nothing on disk to check
    header = event.payload.get("header")
    try:
        fp = fingerprint_file(Path(path), header=bool(header), row_format=_text(event.payload.get("row_format")))
    except (DatasetNotFound, ProvanchorError) as exc:
        report.failed(f"{kind}: file", f"{where}: {exc}")
        return
    if fp.sha256 != after.sha256 or fp.size != after.size:
        report.failed(f"{kind}: file", f"{where}: {path} changed since it was recorded")
        return
    report.passed(f"{kind}: file", f"{where}: {path} still has sha256 {after.sha256.hex()[:16]}...")
    digest, rows = event.payload.get("digest"), event.payload.get("rows")
    ok = fp.digest == digest and fp.rows == rows
    detail = (
        f"{where}: {rows} rows rebuild Merkle root {fp.digest.hex()[:16]}..."
        if ok
        else f"{where}: the file's {fp.rows} rows give another digest than the record's"
    )
    report.add(f"{kind}: digest", ok, detail)
