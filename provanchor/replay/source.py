"""The records a replay needs, read from the index after it has been synced with the ledger.

The index only holds records the indexer verified (signature, authorised
agent, seq/prev chain, inclusion in an anchored root), so a replay built on
it is checked against the ledger step by step. Records are decoded again
from their canonical bytes here: the replay uses what was signed, never a
derived column.

Order: each agent's records in ``seq`` order (the order its ``before``
hashes were assigned in), agents interleaved by time.
"""

from __future__ import annotations

import heapq
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from provanchor.errors import UnknownRun
from provanchor.formats.cid import CID
from provanchor.index.query import QueryFilter
from provanchor.index.store import IndexStore, record_id
from provanchor.records import ContentRef, Op, Record, decode_record, file_location, parse_file_location

__all__ = ["FileChange", "IndexedRecord", "LedgerRecords", "ancestors"]


@dataclass(frozen=True)
class IndexedRecord:
    record_id: str
    record: Record


@dataclass(frozen=True, slots=True)
class FileChange:
    """The fields of a file-change record a replay uses, read from the index's columns.

    Decoding 10,000 records costs seconds; these rows cost milliseconds. They
    come from records the indexer verified and decoded itself.
    """

    record_hash: bytes
    agent: str
    seq: int
    time: int
    op: Op
    location: str
    from_location: str | None
    before: ContentRef | None
    after: ContentRef | None
    mode: int | None

    @property
    def record_id(self) -> str:
        return record_id(self.record_hash)


def ancestors(path: str) -> list[str]:
    """``path`` and every directory above it, nearest first: /a/b/c, /a/b, /a, /."""
    chain = [path]
    while path != "/":
        path = posixpath.dirname(path)
        chain.append(path)
    return chain


class LedgerRecords:
    def __init__(self, store: IndexStore) -> None:
        self.store = store

    def _select(self, query: QueryFilter, extra: str = "", params: tuple[object, ...] = ()) -> list[IndexedRecord]:
        where, values = query.where()
        rows = self.store.read(
            f"SELECT r.record_hash, b.canonical FROM records r JOIN record_bytes b ON b.id = r.id"
            f" WHERE {where}{extra}",
            [*values, *params],
        )
        return [IndexedRecord(record_id(bytes(h)), decode_record(bytes(data))) for h, data in rows]

    def _changes(self, query: QueryFilter) -> list[FileChange]:
        where, values = query.where()
        rows = self.store.read(
            "SELECT r.record_hash, r.agent, r.seq, r.time, r.op, r.location, f.from_location, r.before_sha256,"
            " f.before_size, r.after_sha256, f.after_size, r.after_cid, f.mode"
            f" FROM records r JOIN file_changes f ON f.id = r.id WHERE {where}",
            values,
        )
        return [_file_change(row) for row in rows]

    def affecting(self, host: str, path: str, until_ns: int, user: str | None = None) -> list[FileChange]:
        """File changes at or below ``path`` on ``host`` up to ``until_ns``, plus renames out of it, in replay order."""
        location = file_location(host, path)
        found = {c.record_hash: c for c in self._changes(QueryFilter(under=location, until_ns=until_ns, user=user))}
        prefix = path.rstrip("/") + "/"
        for change in self._changes(QueryFilter(op=Op.RENAME, until_ns=until_ns, user=user)):
            source = change.from_location
            if change.record_hash in found or source is None or not source.startswith("file://"):
                continue
            source_host, source_path = parse_file_location(source)
            if source_host == host and (source_path == path or source_path.startswith(prefix)):
                found[change.record_hash] = change
        return list(_replay_order(found.values()))

    def snapshots(self, host: str, path: str, until_ns: int) -> list[IndexedRecord]:
        """Snapshot records of ``path`` or a directory above it, taken up to ``until_ns``, newest first."""
        locations = [file_location(host, p) for p in ancestors(path)]
        marks = ", ".join("?" * len(locations))
        found = self._select(
            QueryFilter(op=Op.SNAPSHOT, until_ns=until_ns), f" AND r.location IN ({marks})", tuple(locations)
        )
        return sorted(found, key=lambda r: (r.record.time, r.record.seq), reverse=True)

    def run(self, run_id: str) -> IndexedRecord:
        """The anchored `run` record with this id (UnknownRun when the index has none)."""
        found = self._select(QueryFilter(op=Op.RUN, run_id=run_id))
        if not found:
            raise UnknownRun(f"no anchored run {run_id!r:.80} in the index (is it synced? try `provanchor index sync`)")
        return max(found, key=lambda r: r.record.time)


def _file_change(row: tuple[Any, ...]) -> FileChange:
    rhash, agent, seq, time, op, location, source, before_sha, before_size, after_sha, after_size, after_cid, mode = row
    before = None if before_sha is None else ContentRef(bytes(before_sha), before_size)
    after = None
    if after_sha is not None:
        cid = None if after_cid is None else CID.from_bytes(bytes(after_cid))
        after = ContentRef(bytes(after_sha), after_size, cid)
    return FileChange(
        bytes(rhash), agent, seq, time, Op(op), location, source, before, after, mode
    )  # fmt: skip


def _replay_order(changes: Iterable[FileChange]) -> Iterator[FileChange]:
    by_agent: dict[str, list[FileChange]] = {}
    for change in changes:
        by_agent.setdefault(change.agent, []).append(change)
    streams = [sorted(items, key=lambda c: c.seq) for items in by_agent.values()]
    return heapq.merge(*streams, key=lambda c: c.time)
