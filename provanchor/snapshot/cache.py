"""A persistent stat cache so an incremental snapshot neither re-reads nor re-uploads unchanged files.

Hashing a large tree dominates snapshot cost, and almost all files are
unchanged between two snapshots of the same location. Like git's index, the
cache trusts a file to be unchanged when its (relative path, size, mtime_ns,
inode, ctime_ns) are exactly what they were when it was last read; ctime moves
on every write, chmod or rename-over, so a match is a strong signal.

Two safety rules make that trust sound:

* *Staging.* `build_tree` only stages what it learned; nothing is persisted
  until `commit` is called, which the caller does after the blocks were
  actually uploaded. A build whose upload failed therefore does not make the
  next build skip blocks the daemon never received.
* *Racy entries.* Filesystem timestamps come from a coarse clock (a few ms on
  Linux, a whole second on some filesystems), so a file written in the same
  tick as it was read can change again without its stat changing. Entries whose
  mtime or ctime is within `racy_margin_ns` of the scan start are not cached,
  so they are read again next time (git's "racily clean" rule).

Directory and symlink nodes are remembered by path too (their CID only), so a
build can tell which of them are new and must be uploaded.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provanchor.errors import CacheError as CacheError
from provanchor.formats.cid import CID

__all__ = ["CacheError", "CacheStats", "CachedFile", "FileCache", "StatKey"]

#: Default racy window: one second covers every common filesystem's timestamp granularity.
DEFAULT_RACY_MARGIN_NS = 1_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    cid BLOB NOT NULL,
    tsize INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    path TEXT PRIMARY KEY,
    cid BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class StatKey:
    """What must be identical for a file to be trusted as unchanged."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int


@dataclass(frozen=True, slots=True)
class CachedFile:
    """What a previous read established about a file: enough to link it without reading it.

    ``tsize`` (the serialized size of the file's whole DAG) is kept because a
    parent directory's link must carry it and it cannot be derived from the CID.
    """

    sha256: bytes
    cid: CID
    tsize: int


@dataclass(slots=True)
class CacheStats:
    """Counters, so callers (and tests) can see that unchanged files really were skipped."""

    files_read: int = 0
    files_reused: int = 0
    bytes_read: int = 0


class FileCache:
    """SQLite-backed stat cache for one snapshotted directory (one cache file per location)."""

    def __init__(
        self, path: str | Path, *, racy_margin_ns: int = DEFAULT_RACY_MARGIN_NS, store: str | None = None
    ) -> None:
        """``store`` names where the blocks went (an IPFS peer id): a baseline made for another is dropped."""
        self.path = Path(path)
        self.racy_margin_ns = racy_margin_ns
        self.stats = CacheStats()
        self._pending_files: dict[str, tuple[StatKey, CachedFile]] = {}
        self._pending_nodes: dict[str, CID] = {}
        self._scan_start_ns = 0
        self._files: dict[str, tuple[Any, ...]] | None = None  # the committed baseline, read once per build
        self._nodes: dict[str, bytes] | None = None
        try:
            self._db = sqlite3.connect(self.path)
            with self._db:
                self._db.executescript(_SCHEMA)
                if store is not None:
                    row = self._db.execute("SELECT value FROM meta WHERE key = 'store'").fetchone()
                    if row is None or row[0] != store:
                        # Files "unchanged" since a baseline whose blocks another daemon holds would
                        # name blocks this one never got: start over.
                        self._db.execute("DELETE FROM files")
                        self._db.execute("DELETE FROM nodes")
                        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('store', ?)", (store,))
        except sqlite3.Error as exc:
            raise CacheError(f"cannot open snapshot cache {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the database (pending, uncommitted entries are dropped)."""
        self._db.close()

    def __enter__(self) -> FileCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by build_tree ---------------------------------------------------

    def begin(self, scan_start_ns: int) -> None:
        """Start a new build: forget staged entries, reset counters, remember when the scan began."""
        self._pending_files.clear()
        self._pending_nodes.clear()
        self._scan_start_ns = scan_start_ns
        self.stats = CacheStats()
        self._load_baseline()

    def _load_baseline(self) -> None:
        """One read of the whole baseline instead of a query per file: at 1,000 files the queries
        cost more than hashing the 1% that changed."""
        try:
            self._files = {
                row[0]: row[1:]
                for row in self._db.execute(
                    "SELECT path, size, mtime_ns, inode, ctime_ns, sha256, cid, tsize FROM files"
                )
            }
            self._nodes = {row[0]: bytes(row[1]) for row in self._db.execute("SELECT path, cid FROM nodes")}
        except sqlite3.Error as exc:
            raise CacheError(f"cannot read snapshot cache {self.path}: {exc}") from exc

    def lookup(self, key: StatKey) -> CachedFile | None:
        """The committed entry for ``key.path`` if every stat field still matches, else None."""
        row = self._baseline_files().get(key.path)
        if row is None or tuple(row[:4]) != (key.size, key.mtime_ns, key.inode, key.ctime_ns):
            return None
        if self._is_racy(key):
            return None
        return CachedFile(bytes(row[4]), CID.from_bytes(bytes(row[5])), int(row[6]))

    def stage_file(self, key: StatKey, entry: CachedFile) -> None:
        """Remember a file for the next build (persisted by `commit`); racy files are not remembered."""
        if not self._is_racy(key):
            self._pending_files[key.path] = (key, entry)

    def previous_node(self, path: str) -> CID | None:
        """The CID a directory or symlink at ``path`` had in the last committed build."""
        if self._nodes is None:
            self._load_baseline()
        assert self._nodes is not None
        raw = self._nodes.get(path)
        return None if raw is None else CID.from_bytes(raw)

    def stage_node(self, path: str, cid: CID) -> None:
        """Remember a directory or symlink node's CID for the next build."""
        self._pending_nodes[path] = cid

    # -- used by the caller ----------------------------------------------------

    def commit(self) -> None:
        """Persist the last build as the new baseline; call it once its blocks are safely uploaded.

        The tables are replaced wholesale, so deleted paths disappear from the cache.
        """
        try:
            with self._db:
                self._db.execute("DELETE FROM files")
                self._db.execute("DELETE FROM nodes")
                self._db.executemany(
                    "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (k.path, k.size, k.mtime_ns, k.inode, k.ctime_ns, e.sha256, e.cid.to_bytes(), e.tsize)
                        for k, e in self._pending_files.values()
                    ],
                )
                self._db.executemany(
                    "INSERT INTO nodes VALUES (?, ?)", [(p, c.to_bytes()) for p, c in self._pending_nodes.items()]
                )
        except sqlite3.Error as exc:
            raise CacheError(f"cannot write snapshot cache {self.path}: {exc}") from exc
        self._pending_files.clear()
        self._pending_nodes.clear()
        self._files = self._nodes = None  # the baseline changed: read it again next time

    def discard(self) -> None:
        """Drop what the last build staged (its upload failed): the next build starts from the old baseline."""
        self._pending_files.clear()
        self._pending_nodes.clear()

    def _baseline_files(self) -> dict[str, tuple[Any, ...]]:
        if self._files is None:  # used without begin(): read the baseline now
            self._load_baseline()
        assert self._files is not None
        return self._files

    def _is_racy(self, key: StatKey) -> bool:
        return max(key.mtime_ns, key.ctime_ns) >= self._scan_start_ns - self.racy_margin_ns
