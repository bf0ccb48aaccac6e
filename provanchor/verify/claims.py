"""Claims about files, runs and the whole ledger, each reduced to verified records.

Finding the records a claim rests on is the only place the index helps: with
one, its answer says where to look (and every record it names is fetched,
hashed and checked like any other); without one, every agent's anchored log
is scanned, which is slower but exhaustive.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from provanchor.errors import RecordError, UsageError
from provanchor.index.query import QueryFilter, encoded_path, run_query
from provanchor.index.store import location_path
from provanchor.index.timeparse import format_time
from provanchor.progress import ProgressFn
from provanchor.records import CodeIdentity, Op, Record, decode_record, parse_file_location
from provanchor.records.commitments import Commitment
from provanchor.verify.api import VerifyContext, check_anchored_record, verify_agent
from provanchor.verify.log import Tally
from provanchor.verify.report import Report

__all__ = ["find_records", "verify_all", "verify_file", "verify_run"]

CHECK_FOUND = "latest record found"
CHECK_FILE = "file matches latest record"
CHECK_RUN = "run record found"
CHECK_CODE = "code hash"
CHECK_OUTPUTS = "output hashes"
CHECK_OUTPUT_RECORDS = "output records authentic"
CHECK_ON_DISK = "outputs on disk"


def find_records(
    ctx: VerifyContext, match: Callable[[Record], bool], hint: QueryFilter | None
) -> tuple[list[Record], str]:
    """Records satisfying `match`, decoded from verified bytes, oldest first; and how they were found."""
    found: list[Record] = []
    if ctx.index is not None and hint is not None:
        for row in run_query(ctx.index, hint):
            log = ctx.log(row.agent)
            anchor = log.checkpoint_of(row.seq)
            if anchor is None:
                continue
            log.walk(anchor.index)
            blocks, _ = ctx.record_blocks(log, [row.seq])
            found.extend(_decoded(blocks, match))
        how = "candidates from the index hint, each re-verified (complete as of the index's last sync)"
    else:
        agents = ctx.chain.agents()
        for agent in agents:
            log = ctx.log(agent)
            log.walk()
            size = log.anchors[-1].size if log.anchors else 0
            blocks, _ = ctx.record_blocks(log, range(size))
            found.extend(_decoded(blocks, match))
        how = f"exhaustive scan of the anchored logs of {len(agents)} agent(s)"
    found.sort(key=lambda r: (r.time, r.agent, r.seq))
    return found, how


def _decoded(blocks: list[tuple[int, bytes]], match: Callable[[Record], bool]) -> list[Record]:
    out = []
    for _, data in blocks:
        try:
            record = decode_record(data)
        except RecordError:
            continue  # reported by the checks of any claim that relies on it
        if match(record):
            out.append(record)
    return out


def _sha256_file(path: Path) -> tuple[bytes, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.digest(), size


# ------------------------------------------------------------------ files


def verify_file(ctx: VerifyContext, path: str | os.PathLike[str], location: str | None = None) -> Report:
    """Is the file's current content what the ledger last recorded for it? If not, when did it last match?

    Without `location`, records of the same absolute path on any host count.
    """
    file_path = Path(path)
    if not file_path.is_file():
        raise UsageError(f"not a readable regular file: {file_path}")
    absolute = os.path.abspath(file_path)
    if location is not None and "://" not in location:
        raise UsageError(f"a location is a URI such as file://HOST/PATH, got {location!r:.80}")
    wanted_path = encoded_path(absolute) if location is None else None
    digest, size = _sha256_file(file_path)
    report = Report(f"file {absolute}" + (f" as {location}" if location else ""))
    report.facts.update({"path": absolute, "sha256": digest.hex(), "size": size})

    def match(record: Record) -> bool:
        if not isinstance(record.location, str):
            return False
        if location is not None:
            return record.location == location
        return location_path(record.location) == wanted_path

    hint = QueryFilter(location=location or absolute)
    records, how = find_records(ctx, match, hint)
    report.facts["records_found"] = len(records)
    if not records:
        report.failed(CHECK_FOUND, f"no anchored record for this location ({how})")
        return report
    latest = records[-1]
    located = check_anchored_record(ctx, report, latest, content=False)
    report.passed(CHECK_FOUND, f"record {latest.cid} ({latest.op.value} at {format_time(latest.time)}); {how}")
    report.facts["latest_record"] = latest.cid.encode()
    if located.anchor is None:
        return report
    after = latest.after
    if after is not None and after.sha256 == digest and after.size == size:
        report.passed(CHECK_FILE, f"sha256 {digest.hex()} and size {size} equal the latest record's")
        return report
    recorded = "no content (deleted)" if after is None else f"sha256 {after.sha256.hex()}"
    detail = f"current sha256 {digest.hex()} differs from the latest record's {recorded}"
    for older in reversed(records[:-1]):
        if older.after is not None and older.after.sha256 == digest:
            proof = Report("earlier record")
            check_anchored_record(ctx, proof, older, content=False)
            state = "verified" if proof.ok else "which does NOT verify"
            detail += f"; it last matched record {older.cid} ({state}) written at {format_time(older.time)}"
            report.facts["last_matched_record"] = older.cid.encode()
            report.facts["last_matched_time"] = format_time(older.time)
            break
    else:
        detail += "; it never matched any anchored record of this location"
    report.failed(CHECK_FILE, detail)
    return report


# ------------------------------------------------------------------ runs


def verify_run(ctx: VerifyContext, run_id: str) -> Report:
    """Did this run's outputs come from this code: run record authentic, code hash, every output's hash."""
    if not isinstance(run_id, str) or not run_id.strip():
        raise UsageError("a run id is the non-empty id `provanchor run` printed")
    run_id = run_id.strip()
    report = Report(f"run {run_id}")
    records, how = find_records(ctx, lambda r: r.run == run_id, QueryFilter(run_id=run_id))
    runs = [r for r in records if r.op is Op.RUN]
    if not runs:
        report.failed(CHECK_RUN, f"no anchored run record for run {run_id} ({how})")
        return report
    run = runs[-1]
    report.passed(CHECK_RUN, f"record {run.cid} ({how})")
    report.facts["run_record"] = run.cid.encode()
    check_anchored_record(ctx, report, run, content=False)
    _code_hash(report, run)
    payload = run.payload or {}
    outputs = payload.get("outputs")
    if not isinstance(outputs, list):
        report.failed(CHECK_OUTPUTS, "the run record's payload has no list of outputs")
        return report
    writes = {r.location: r for r in records if r.op is not Op.RUN and isinstance(r.location, str)}
    hashes, authentic, on_disk = Tally(CHECK_OUTPUTS), Tally(CHECK_OUTPUT_RECORDS), Tally(CHECK_ON_DISK)
    absent = 0
    for entry in outputs:
        location = entry.get("location") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(location, str) or not isinstance(digest, bytes):
            hashes.failed(f"unreadable output entry {entry!r:.80}")
            continue
        write = writes.get(location)
        if write is None:
            hashes.failed(f"{location}: no anchored write record of this run")
            continue
        sub = Report(location)
        check_anchored_record(ctx, sub, write, content=True)
        if sub.ok:
            authentic.passed()
        else:
            failed = ", ".join(sorted({c.name for c in sub.failures()}))
            authentic.failed(f"{location}: record {write.cid} fails {failed}")
        if write.after is None or write.after.sha256 != digest:
            hashes.failed(f"{location}: the write record's sha256 differs from the run's output hash")
        else:
            hashes.passed()
        absent += _on_disk(on_disk, location, digest)
    report.extend([hashes.check(f"{hashes.count} output(s): each write record carries the run's output sha256")])
    report.extend([authentic.check(f"{authentic.count} output write record(s) pass every record check")])
    if on_disk.count:
        report.extend([on_disk.check(f"{on_disk.count} output file(s) present here match ({absent} absent)")])
    report.facts["outputs"] = len(outputs)
    report.facts["outputs_absent_here"] = absent
    return report


def _code_hash(report: Report, run: Record) -> None:
    code = run.code
    if isinstance(code, CodeIdentity):
        digest = code.digest_for(run.v)
        if run.code_hash == digest:
            files = [f.path for f in ([code.exe] if code.exe else []) + list(code.scripts)]
            report.passed(CHECK_CODE, f"{digest.hex()} recomputes from the code identity ({', '.join(files)})")
        else:
            report.failed(CHECK_CODE, "code_hash does not recompute from the record's code identity")
        report.facts["code_hash"] = digest.hex()
    elif isinstance(code, Commitment):
        report.failed(CHECK_CODE, "the code identity is committed: open the commitment to recompute its hash")
    else:
        report.failed(CHECK_CODE, "the run record names no code identity, so no code hash can be recomputed")


def _on_disk(tally: Tally, location: str, digest: bytes) -> int:
    """Compare an output with the file at its path here, if any; returns 1 when it is absent."""
    try:
        _, path = parse_file_location(location)
    except RecordError:
        return 1
    file_path = Path(path)
    if not file_path.is_file():
        return 1
    if _sha256_file(file_path)[0] == digest:
        tally.passed()
    else:
        tally.failed(f"{path} on disk no longer has the run's output hash")
    return 0


# ------------------------------------------------------------------ everything


def verify_all(ctx: VerifyContext, with_content: bool = False, progress: ProgressFn | None = None) -> Report:
    """Every registered agent's whole log, one check per agent."""
    report = Report(f"ledger {ctx.contract} on chain {ctx.chain_id}")
    agents = ctx.chain.agents()
    summaries: dict[str, object] = {}
    for done, agent in enumerate(agents):
        if progress is not None:
            progress("verifying agents", done, len(agents))
        sub = verify_agent(ctx, agent, with_content=with_content, progress=progress)
        summaries[agent] = sub.to_json()
        records = sub.facts.get("records", 0)
        if sub.ok:
            report.passed(f"agent {agent}", f"{records} record(s): every check passed")
        else:
            failed = "; ".join(f"{c.name}: {c.detail}" for c in sub.failures()[:3])
            report.failed(f"agent {agent}", failed)
    if not agents:
        report.failed("agents", "the ledger has no registered agent: nothing to verify")
    report.facts["agents"] = summaries
    return report
