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

from provanchor.errors import UnknownRun
from provanchor.index.query import QueryFilter
from provanchor.index.store import IndexStore, record_id
from provanchor.records import Op, Record, decode_record, file_location, parse_file_location

__all__ = ["IndexedRecord", "LedgerRecords", "ancestors"]


@dataclass(frozen=True)
class IndexedRecord:
    record_id: str
    record: Record


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

    def affecting(self, host: str, path: str, until_ns: int, user: str | None = None) -> list[IndexedRecord]:
        """File changes at or below ``path`` on ``host`` up to ``until_ns``, plus renames out of it, in replay order."""
        location = file_location(host, path)
        found = {
            r.record_id: r
            for r in self._select(QueryFilter(under=location, until_ns=until_ns, user=user))
            if r.record.op not in _NOT_FILE_CHANGES
        }
        prefix = path.rstrip("/") + "/"
        for r in self._select(QueryFilter(op=Op.RENAME, until_ns=until_ns, user=user)):
            source = r.record.from_location
            if r.record_id in found or not isinstance(source, str) or not source.startswith("file://"):
                continue
            source_host, source_path = parse_file_location(source)
            if source_host == host and (source_path == path or source_path.startswith(prefix)):
                found[r.record_id] = r
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

    def run_writes(self, run_id: str) -> list[IndexedRecord]:
        """The file records a run made (its outputs), in replay order."""
        found = self._select(QueryFilter(run_id=run_id))
        return list(_replay_order(r for r in found if r.record.op not in _NOT_FILE_CHANGES))


_NOT_FILE_CHANGES = frozenset(
    {Op.RUN, Op.SNAPSHOT, Op.DATASET, Op.TRAINING, Op.MODEL, Op.EVALUATION, Op.INFERENCE}
)


def _replay_order(records: Iterable[IndexedRecord]) -> Iterator[IndexedRecord]:
    by_agent: dict[str, list[IndexedRecord]] = {}
    for item in records:
        by_agent.setdefault(item.record.agent, []).append(item)
    streams = [sorted(items, key=lambda r: r.record.seq) for items in by_agent.values()]
    return heapq.merge(*streams, key=lambda r: r.record.time)
