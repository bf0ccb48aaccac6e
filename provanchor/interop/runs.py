"""A recorded run as the exports see it: its run record, its output write records, and where each is anchored.

Read from the index, whose rows the indexer verified against the anchored
roots; the record bytes are hashed again here against the id the index files
them under, so an edited index file yields an error, not a wrong export.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provanchor.errors import IndexMissing, RecordError, UnknownRun
from provanchor.formats.cid import CID
from provanchor.index.store import IndexStore, record_id
from provanchor.records import CodeIdentity, Op, Record, decode_record
from provanchor.records.model import parse_file_location

__all__ = ["Anchored", "RunFile", "RunView", "load_record", "load_run", "program_name"]

_SELECT = (
    "SELECT r.record_hash, r.checkpoint, r.checkpoint_size, r.tx, b.canonical"
    " FROM records r JOIN record_bytes b ON b.id = r.id"
)


@dataclass(frozen=True)
class Anchored:
    """A record and the checkpoint that anchors it (None when the source had no anchoring yet)."""

    record: Record
    checkpoint: int | None = None
    checkpoint_size: int | None = None
    tx: bytes | None = None

    @property
    def record_id(self) -> str:
        return self.record.cid.encode()

    def facts(self) -> dict[str, object]:
        """What the exports attach: record id, code hash, agent, checkpoint and anchoring transaction."""
        record = self.record
        return {
            "recordCid": self.record_id,
            "codeHash": None if record.code_hash is None else record.code_hash.hex(),
            "agent": record.agent,
            "checkpoint": self.checkpoint,
            "checkpointSize": self.checkpoint_size,
            "anchoringTx": None if self.tx is None else "0x" + self.tx.hex(),
        }


@dataclass(frozen=True)
class RunFile:
    """One input or output of a run, as the run record lists it."""

    location: str
    sha256: bytes
    size: int | None
    cid: str | None
    written_by: Anchored | None = None
    """For an output: the run's write record for it."""

    @property
    def host_and_path(self) -> tuple[str, str] | None:
        if not self.location.startswith("file://"):
            return None
        try:
            return parse_file_location(self.location)
        except RecordError:
            return None


@dataclass(frozen=True)
class RunView:
    run_id: str
    run: Anchored
    inputs: tuple[RunFile, ...]
    outputs: tuple[RunFile, ...]

    @classmethod
    def of(cls, run: Anchored, writes: Sequence[Anchored]) -> RunView:
        """A run from its run record and the run's write records (an output's proof is its write record)."""
        by_location: dict[object, Anchored] = {w.record.location: w for w in writes}
        payload = run.record.payload or {}
        return cls(
            run.record.run or "",
            run,
            tuple(_files(payload.get("inputs"), {})),
            tuple(_files(payload.get("outputs"), by_location)),
        )

    @property
    def payload(self) -> dict[str, object]:
        return self.run.record.payload or {}

    @property
    def started_ns(self) -> int:
        started = self.payload.get("started_ns")
        return started if isinstance(started, int) else self.run.record.time

    @property
    def finished_ns(self) -> int:
        duration = self.payload.get("duration_ns")
        return self.started_ns + (duration if isinstance(duration, int) else 0)

    @property
    def exit_code(self) -> int | None:
        code = self.payload.get("exit_code")
        return code if isinstance(code, int) else None

    @property
    def argv(self) -> list[str]:
        argv = self.payload.get("argv")
        return [str(a) for a in argv] if isinstance(argv, list) else []

    @property
    def host(self) -> str:
        host = self.run.record.host
        return host if isinstance(host, str) else "committed-host"


def program_name(record: Record, argv: list[str]) -> str:
    """The program a run ran: its script when an interpreter ran one, else its executable, else argv[0]."""
    code = record.code
    if isinstance(code, CodeIdentity):
        if code.scripts:
            return os.path.basename(code.scripts[0].path)
        if code.exe is not None:
            return os.path.basename(code.exe.path)
    return os.path.basename(argv[0]) if argv else "unknown"


def load_record(store: IndexStore, digest: bytes) -> Anchored | None:
    """The indexed record with this hash, checked against it; None when the index does not hold it."""
    rows = store.read(f"{_SELECT} WHERE r.record_hash = ? LIMIT 1", (digest,))
    return _anchored(rows[0]) if rows else None


def _anchored(row: tuple[object, ...]) -> Anchored:
    digest, checkpoint, size, tx, canonical = row
    assert isinstance(canonical, bytes | memoryview) and isinstance(digest, bytes | memoryview)
    try:
        record = decode_record(bytes(canonical))
    except RecordError as exc:
        raise IndexMissing(f"the index holds an invalid record {record_id(bytes(digest))}: {exc}") from None
    if record.hash != bytes(digest):
        raise IndexMissing(f"the index's bytes for {record_id(bytes(digest))} do not hash to it: rebuild the index")
    assert isinstance(checkpoint, int) and isinstance(size, int) and isinstance(tx, bytes | memoryview)
    return Anchored(record, checkpoint, size, bytes(tx))


def load_run(store: IndexStore, run_id: str) -> RunView:
    """The run `provanchor run` recorded under `run_id`, with its output write records; UnknownRun if none."""
    run_id = run_id.strip()
    if not run_id:
        raise UnknownRun("a run id is the non-empty id `provanchor run` printed")
    rows = store.read(f"{_SELECT} WHERE r.run_id = ? ORDER BY r.time, r.agent, r.seq", (run_id,))
    records = [_anchored(row) for row in rows]
    runs = [a for a in records if a.record.op is Op.RUN]
    if not runs:
        raise UnknownRun(f"no anchored run {run_id!r:.80} in the index (is it anchored, and the index synced?)")
    writes = [a for a in records if a.record.op in (Op.CREATE, Op.WRITE)]
    return RunView.of(runs[-1], writes)


def _files(entries: object, writes: Mapping[object, Anchored]) -> list[RunFile]:
    files = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        location, digest = entry.get("location"), entry.get("sha256")
        if not isinstance(location, str) or not isinstance(digest, bytes):
            continue
        size, cid = entry.get("size"), entry.get("cid")
        files.append(
            RunFile(
                location,
                digest,
                size if isinstance(size, int) else None,
                cid.encode() if isinstance(cid, CID) else None,
                writes.get(location),
            )
        )
    return files
