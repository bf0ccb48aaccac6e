"""Turning changes into signed, durably spooled records.

`Recorder.record()` returns only after the signed record is committed to the
spool (fsynced). One committer thread assigns `seq` and `prev`, signs and
commits: sequencing is trivially gap-free, and when many threads record at
once their records share one transaction (group commit), so the cost of the
fsync is paid once per group rather than once per record.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace

from provanchor.errors import ProvanchorError
from provanchor.formats.cid import CID
from provanchor.pipeline import faults
from provanchor.pipeline.spool import KnownContent, Spool
from provanchor.records import Change, ContentRef, Op, Record, RecordSigner, record_cid

__all__ = ["RecordRef", "Recorder"]

_MAX_GROUP = 4096


@dataclass(frozen=True)
class RecordRef:
    """Where a record landed: its position in the agent's log and its one name."""

    seq: int
    hash: bytes
    cid: CID

    @property
    def record_id(self) -> str:
        return self.cid.encode()


@dataclass
class _Pending:
    change: Change
    content: bytes | None
    fill_before: bool
    future: Future[RecordRef]


class Recorder:
    """The per-agent sequencer in front of the spool."""

    def __init__(self, spool: Spool, signer: RecordSigner) -> None:
        self.spool = spool
        self.signer = signer
        self.agent = signer.address.lower()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._commit_loop, name="provanchor-recorder", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ public

    def record(self, change: Change, content: bytes | None = None, fill_before: bool = True) -> RecordRef:
        """Spool one change; returns once it is signed and durably committed.

        `content`, when given, is the new content's bytes: kept in the spool until
        its batch is stored on IPFS, so a record never points at content that
        could be lost. With `fill_before`, a missing `before` is taken from the
        agent's last known version of the location (at sequencing time, so
        back-to-back changes of one file chain correctly).
        """
        return self.submit(change, content, fill_before).result()

    def record_many(self, changes: Sequence[Change], fill_before: bool = True) -> list[RecordRef]:
        futures = [self.submit(change, None, fill_before) for change in changes]
        return [f.result() for f in futures]

    def submit(self, change: Change, content: bytes | None = None, fill_before: bool = True) -> Future[RecordRef]:
        if self._closed:
            raise ProvanchorError("the recorder is closed")
        future: Future[RecordRef] = Future()
        self._queue.put(_Pending(change, content, fill_before, future))
        return future

    def _with_before(self, change: Change, known_in_group: dict[str, KnownContent | None]) -> Change:
        if change.before is not None or not isinstance(change.location, str):
            return change
        source = change.from_location if change.op == Op.RENAME and isinstance(change.from_location, str) else None
        key = source or change.location
        known = known_in_group[key] if key in known_in_group else self.spool.known_content(key)
        if known is None or known.sha256 is None or known.size is None:
            return change
        return replace(change, before=ContentRef(sha256=known.sha256, size=known.size))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ committer thread

    def _commit_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < _MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this group, then stop
                    break
                group.append(item)
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        rows: list[tuple[int, bytes, bytes, bytes, str | None, int, int]] = []
        built: list[tuple[_Pending, Record]] = []
        failed: list[tuple[_Pending, BaseException]] = []
        now = time.time_ns()
        known_in_group: dict[str, KnownContent | None] = {}
        try:
            # The head is read inside the write transaction: another process recording as the
            # same agent into the same spool (the service and `provanchor run`) is serialised
            # by SQLite, and seq stays gap-free and unique.
            with self.spool.transaction() as db:
                seq, prev = self.spool.head()
                for pending in group:
                    try:
                        change = (
                            self._with_before(pending.change, known_in_group) if pending.fill_before else pending.change
                        )
                        record = Record.from_change(change, agent=self.agent, seq=seq, prev=prev)
                        signature = self.signer.sign(record.hash)
                    except Exception as exc:  # a bad change fails its caller only, never the group
                        failed.append((pending, exc))
                        continue
                    _remember(known_in_group, record)
                    location = record.location if isinstance(record.location, str) else None
                    rows.append((seq, record.hash, record.canonical, signature, location, record.time, now))
                    built.append((pending, record))
                    seq, prev = seq + 1, record.hash
                self.spool.insert_records(db, rows)
                for pending, record in built:
                    self._track_location(db, record)
                    if pending.content is not None and record.after is not None and record.after.cid is not None:
                        self.spool.put_content(db, record.after.cid.encode(), pending.content)
        except BaseException as exc:
            for pending, _ in built:
                pending.future.set_exception(exc)
            for pending, error in failed:
                pending.future.set_exception(error)
            return
        faults.crash_point("after-spool-commit")
        for pending, record in built:
            pending.future.set_result(RecordRef(record.seq, record.hash, record_cid(record)))
        for pending, error in failed:
            pending.future.set_exception(error)

    def _track_location(self, db: object, record: Record) -> None:
        if not isinstance(record.location, str):
            return
        connection = db  # sqlite3.Connection; typed loosely to keep the spool the only SQL owner
        if record.op == Op.DELETE:
            self.spool.set_known_content(connection, record.location, None)  # type: ignore[arg-type]
            return
        if record.op == Op.RENAME and isinstance(record.from_location, str):
            self.spool.set_known_content(connection, record.from_location, None)  # type: ignore[arg-type]
        if record.after is not None:
            after = record.after
            known = KnownContent(after.sha256, after.size, after.cid.encode() if after.cid else None)
            self.spool.set_known_content(connection, record.location, known)  # type: ignore[arg-type]


def _remember(known: dict[str, KnownContent | None], record: Record) -> None:
    """What the location table will say after `record` (mirrors `_track_location`)."""
    if not isinstance(record.location, str):
        return
    if record.op == Op.DELETE:
        known[record.location] = None
        return
    if record.op == Op.RENAME and isinstance(record.from_location, str):
        known[record.from_location] = None
    if record.after is not None:
        after = record.after
        known[record.location] = KnownContent(after.sha256, after.size, after.cid.encode() if after.cid else None)
