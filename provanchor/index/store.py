"""The local index: a SQLite cache of anchored checkpoints and their verified records.

Everything here can be rebuilt from the chain and IPFS, so the store favours
speed over durability (WAL, ``synchronous=NORMAL``: a crash may lose the last
transactions, never corrupt the file; the indexer then re-syncs them). The
indexer follows the chain, verifies records and hands them over through
:meth:`IndexStore.add_records`; the query and lineage modules only read.

Layout (schema version 1; see ``_TABLES_SQL`` and ``_RECORD_INDEXES``):

* ``meta``: schema version and the chain id / ledger contract the index follows;
  an index is never mixed across deployments (:meth:`IndexStore.bind`).
* ``checkpoints``: one row per anchored checkpoint of an agent's log.
* ``records``: one row per record: the columns queries filter and show, and
  the checkpoint that anchors it.
* ``record_bytes``: each record's canonical bytes, under the same ``id``, so a
  record can be shown or re-verified without IPFS. They live apart from
  ``records`` because they are two thirds of its size: inline, every row a
  query reads drags them through the page cache, and queries that check
  thousands of rows run twice as slow.
* ``file_changes``: what a replay needs of each file change beyond the
  ``records`` columns (rename source, mode, content sizes), under the same
  ``id``, so rebuilding 10,000 changes reads rows instead of decoding records.
* ``run_edges`` / ``runs``: run records' inputs and outputs, the lineage graph.
* ``problems``: what the indexer refused, and why.
* ``sync_state``: the indexer's own key/value progress (last processed block...).

Every query filter has an index whose second column is ``time``, because
results are ordered by time: with a ``LIMIT`` SQLite then reads the first
entries of one index range in order instead of sorting every match.
"""

from __future__ import annotations

import os
import sqlite3
import time as _time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provanchor.errors import BadLineageEvent, ConfigError, RecordError
from provanchor.errors import ForeignIndex as ForeignIndex
from provanchor.errors import IndexMissing as IndexMissing
from provanchor.errors import IndexOutdated as IndexOutdated
from provanchor.errors import NotAnIndex as NotAnIndex
from provanchor.formats.cid import CID, DAG_CBOR
from provanchor.records import CodeIdentity, Commitment, Op, Record, decode_record
from provanchor.records.locations import location_path as location_path
from provanchor.records.openlineage import parse_lineage_payload

__all__ = [
    "SCHEMA_VERSION",
    "Checkpoint",
    "ForeignIndex",
    "IndexMissing",
    "IndexOutdated",
    "IndexStore",
    "IndexedInput",
    "NotAnIndex",
    "Problem",
    "location_path",
    "record_id",
]

SCHEMA_VERSION = 3  # 3: code_files (query --program); a version 2 index is upgraded in place
_INT64_MAX = (1 << 63) - 1
# Statistics are refreshed when the table has doubled since the last ANALYZE (and is big
# enough for the planner's choice to matter): stale statistics make SQLite pick a poor index.
_ANALYZE_FROM = 20_000

# The files a record's code names (executable, scripts): "what did this program write", by its
# content hash (this version) or by its path (every version seen there).
_CODE_FILES_SQL = """
CREATE TABLE code_files (
    id INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('exe', 'script')),
    path TEXT NOT NULL,
    sha256 BLOB NOT NULL
);
CREATE INDEX code_files_sha256 ON code_files (sha256, id);
CREATE INDEX code_files_path ON code_files (path, id);
"""

_TABLES_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE checkpoints (
    agent TEXT NOT NULL,
    idx INTEGER NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    manifest_cid TEXT NOT NULL,
    block INTEGER NOT NULL,
    tx BLOB NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (agent, idx)
) WITHOUT ROWID;
CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record_hash BLOB NOT NULL,
    time INTEGER NOT NULL,
    user TEXT,
    location TEXT,
    path TEXT,
    op TEXT NOT NULL,
    before_sha256 BLOB,
    after_sha256 BLOB,
    after_cid BLOB,
    code_hash BLOB,
    run_id TEXT,
    checkpoint INTEGER NOT NULL,
    checkpoint_size INTEGER NOT NULL,
    tx BLOB NOT NULL
);
CREATE UNIQUE INDEX records_agent_seq ON records (agent, seq);
CREATE TABLE record_bytes (id INTEGER PRIMARY KEY, canonical BLOB NOT NULL);
CREATE TABLE file_changes (
    id INTEGER PRIMARY KEY,
    from_location TEXT,
    mode INTEGER,
    before_size INTEGER,
    after_size INTEGER
);
CREATE TABLE run_edges (
    run_id TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    location TEXT NOT NULL,
    path TEXT,
    sha256 BLOB,
    agent TEXT NOT NULL,
    PRIMARY KEY (run_id, direction, location, agent)
) WITHOUT ROWID;
CREATE INDEX run_edges_location ON run_edges (location, direction, run_id);
CREATE INDEX run_edges_path ON run_edges (path, direction, run_id) WHERE path IS NOT NULL;
CREATE TABLE runs (
    run_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    location TEXT,
    time INTEGER NOT NULL,
    label TEXT NOT NULL,
    exit_code INTEGER,
    PRIMARY KEY (run_id, agent)
) WITHOUT ROWID;
CREATE TABLE problems (
    id INTEGER PRIMARY KEY,
    agent TEXT,
    seq INTEGER,
    record_id TEXT,
    checkpoint INTEGER,
    reason TEXT NOT NULL,
    detected_at INTEGER NOT NULL
);
CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
""" + _CODE_FILES_SQL

# The query indexes on records, kept apart so that bulk_load() can drop and rebuild them.
# ``(agent, seq)`` is not among them: it makes re-syncs idempotent, so it always stays.
_RECORD_INDEXES = {
    "records_agent_time": "records (agent, time)",
    "records_time": "records (time)",
    # File locations: by path (any host), or by path then location (see query.py).
    "records_path": "records (path, location, time) WHERE path IS NOT NULL",
    # Other locations (run://, s3://...): a few percent of records.
    "records_location": "records (location, time) WHERE path IS NULL AND location IS NOT NULL",
    "records_user": "records (user, time) WHERE user IS NOT NULL",
    "records_code_hash": "records (code_hash, time) WHERE code_hash IS NOT NULL",
    "records_op": "records (op, time)",
    "records_run": "records (run_id, time) WHERE run_id IS NOT NULL",
    # A record by its id (CID = hash): record pages, attestations, ML traces. Without it, a scan.
    "records_hash": "records (record_hash)",
}

_TABLES = (
    "meta", "checkpoints", "records", "record_bytes", "file_changes", "run_edges", "runs", "problems", "sync_state",
    "code_files",
)  # fmt: skip

_INSERT_RECORD = (
    "INSERT INTO records (id, agent, seq, record_hash, time, user, location, path, op, before_sha256, after_sha256,"
    " after_cid, code_hash, run_id, checkpoint, checkpoint_size, tx)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_BYTES = "INSERT INTO record_bytes (id, canonical) VALUES (?, ?)"
_INSERT_CODE_FILE = "INSERT INTO code_files (id, role, path, sha256) VALUES (?, ?, ?, ?)"
_INSERT_FILE_CHANGE = (
    "INSERT INTO file_changes (id, from_location, mode, before_size, after_size) VALUES (?, ?, ?, ?, ?)"
)
_FILE_OPS = frozenset({Op.CREATE, Op.WRITE, Op.TRUNCATE, Op.RENAME, Op.DELETE, Op.CHMOD})
_INSERT_EDGE = (
    "INSERT OR IGNORE INTO run_edges (run_id, direction, location, path, sha256, agent) VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_RUN = "INSERT OR IGNORE INTO runs (run_id, agent, location, time, label, exit_code) VALUES (?, ?, ?, ?, ?, ?)"


# ------------------------------------------------------------------ errors


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class Checkpoint:
    """One anchored checkpoint of an agent's log.

    ``time`` is the anchoring block's timestamp in nanoseconds (block seconds
    times 10^9), so that it compares directly with record times.
    """

    agent: str
    idx: int
    size: int
    root: bytes
    manifest_cid: str
    block: int
    tx: bytes
    time: int


@dataclass(frozen=True)
class IndexedInput:
    """A verified record and the checkpoint that anchors it: what the indexer hands over.

    ``record.agent`` must equal ``checkpoint.agent`` and ``record.seq`` must be
    below ``checkpoint.size`` (the record is a leaf of that checkpoint's tree).
    """

    record: Record
    checkpoint: Checkpoint


@dataclass(frozen=True)
class Problem:
    """Something the indexer could not accept; kept so `index problems` can explain gaps."""

    agent: str | None
    seq: int | None
    record_id: str | None
    checkpoint: int | None
    reason: str
    detected_at: int


# ------------------------------------------------------------------ the store


class IndexStore:
    """A SQLite index file. One writer (the indexer) and any number of readers may share it.

    Writes are grouped with :meth:`batch`; outside one, each ``add_*`` call is
    its own transaction.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._depth = 0
        self._analyzed_at = 0
        self._bulk = False
        try:
            self._configure()
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise NotAnIndex(f"{self.path} is not a provanchor index ({exc}): use another path") from None
        except ConfigError:
            self._db.close()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str], must_exist: bool = True) -> IndexStore:
        """Open an index; with ``must_exist`` refuse to create one (queries on a missing index)."""
        if must_exist and not Path(path).is_file():
            raise IndexMissing(f"no index at {path}: run `provanchor index sync`")
        return cls(path)

    @staticmethod
    def destroy(path: str | os.PathLike[str]) -> None:
        """Delete an index file and its WAL side files (for a rebuild after IndexOutdated)."""
        for suffix in ("", "-wal", "-shm"):
            Path(f"{os.fspath(path)}{suffix}").unlink(missing_ok=True)

    def _configure(self) -> None:
        for pragma in (
            "journal_mode = WAL",
            "synchronous = NORMAL",
            "busy_timeout = 10000",
            "temp_store = MEMORY",
            "cache_size = -131072",  # 128 MiB: index pages stay cached during a bulk sync
            "mmap_size = 1073741824",
            # The path index takes inserts at random places, so each commit dirties many pages.
            # Checkpointing the WAL rarely copies each hot page back once for many commits instead
            # of once per commit (1.3x faster sync at 1M records); the WAL is then cut back to 64 MiB.
            "wal_autocheckpoint = 65536",
            "journal_size_limit = 67108864",
        ):
            self._db.execute(f"PRAGMA {pragma}")

    def _check_schema(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            with self.batch():
                self._create()
            return
        if "meta" not in tables:
            raise NotAnIndex(f"{self.path} is a database but not a provanchor index: use another path")
        version = self._meta("schema_version")
        if version == "2":
            self._upgrade_from_2()
            version = str(SCHEMA_VERSION)
        if version != str(SCHEMA_VERSION):
            raise IndexOutdated(
                f"index {self.path} has schema version {version}, this provanchor uses {SCHEMA_VERSION}: "
                "delete it and run `provanchor index sync`"
            )

    def _upgrade_from_2(self) -> None:
        """Version 3 adds code_files; fill it from the records' own bytes (no chain or IPFS needed)."""
        with self.batch():
            for statement in _CODE_FILES_SQL.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            rows: list[tuple[object, ...]] = []
            for row_id, canonical in self._db.execute("SELECT id, canonical FROM record_bytes"):
                rows.extend(_code_file_rows(row_id, decode_record(canonical)))
            self._db.executemany(_INSERT_CODE_FILE, rows)
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    def _create(self) -> None:
        for statement in _TABLES_SQL.split(";"):
            if statement.strip():
                self._db.execute(statement)
        self._create_indexes()
        self._db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _create_indexes(self) -> None:
        for name, definition in _RECORD_INDEXES.items():
            self._db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")

    def ensure_indexes(self) -> None:
        """Create the query indexes an older index file lacks (the explorer's follower calls this)."""
        if not self._bulk and self._indexes_missing():
            self._create_indexes()

    def _indexes_missing(self) -> bool:
        names = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        return not names.issuperset(_RECORD_INDEXES)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- transactions

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One write transaction around everything inside; nested batches are savepoints.

        The indexer should add a checkpoint, its records and its sync state in
        one batch, so that an interrupted sync never leaves half a checkpoint,
        and should group many checkpoints per batch during a long sync: each
        commit rewrites every index page it touched, so 20,000 records per
        commit index about 1.5x faster than 1,024. A failing inner batch is
        undone alone, so the caller may catch its error and go on.
        """
        depth = self._depth
        self._db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT level{depth}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth = depth
            if depth == 0:
                self._db.execute("ROLLBACK")
            else:
                self._db.execute(f"ROLLBACK TO level{depth}")
                self._db.execute(f"RELEASE level{depth}")
            raise
        self._depth = depth
        if depth:
            self._db.execute(f"RELEASE level{depth}")
            return
        self._db.execute("COMMIT")
        self._maybe_analyze()

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Add many records without the query indexes, then build those in one sorted pass.

        For a first sync or a rebuild: keeping the path index up to date costs
        a random page write per record, building it at the end is a sort
        (1.7x faster at 1M records). Queries meanwhile still answer, by scanning, so use
        this only while nobody relies on the index. If the process dies inside,
        the next :meth:`add_records` outside a bulk load rebuilds the indexes.
        """
        if self._depth:
            raise RuntimeError("bulk_load() cannot run inside a batch()")
        with self.batch():
            for name in _RECORD_INDEXES:
                self._db.execute(f"DROP INDEX IF EXISTS {name}")
        self._bulk = True
        try:
            yield
        finally:
            self._bulk = False
            with self.batch():
                self._create_indexes()
            self.analyze()

    # -------------------------------------------------------------- meta and state

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def binding(self) -> tuple[int, str] | None:
        """(chain id, contract address) the index follows, or None if not bound yet."""
        chain_id, contract = self._meta("chain_id"), self._meta("contract")
        if chain_id is None or contract is None:
            return None
        return int(chain_id), contract

    def bind(self, chain_id: int, contract: str) -> None:
        """Tie the index to one deployment; refuse if it already follows another one.

        Records of two deployments must never mix: the same agent address and
        seq can exist in both, with different contents.
        """
        contract = contract.lower()
        current = self.binding()
        if current == (chain_id, contract):
            return
        if current is not None:
            raise ForeignIndex(
                f"index {self.path} follows chain {current[0]} contract {current[1]}, not chain {chain_id} "
                f"contract {contract}: use another index path or rebuild it"
            )
        with self.batch():
            self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)", (("chain_id", str(chain_id)), ("contract", contract))
            )

    def get_state(self, key: str) -> str | None:
        """The indexer's progress value for ``key`` (e.g. ``last_block:<contract>``), or None."""
        row = self._db.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        with self.batch():
            self._db.execute(
                "INSERT INTO sync_state (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -------------------------------------------------------------- checkpoints

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a checkpoint; storing the same (agent, idx) again replaces it (re-sync after a reorg)."""
        c = checkpoint
        with self.batch():
            self._db.execute(
                "INSERT OR REPLACE INTO checkpoints (agent, idx, size, root, manifest_cid, block, tx, time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (c.agent.lower(), c.idx, c.size, c.root, c.manifest_cid, c.block, c.tx, min(c.time, _INT64_MAX)),
            )

    def checkpoints(self, agent: str | None = None) -> list[Checkpoint]:
        sql = "SELECT agent, idx, size, root, manifest_cid, block, tx, time FROM checkpoints"
        params: tuple[object, ...] = ()
        if agent is not None:
            sql += " WHERE agent = ?"
            params = (agent.lower(),)
        return [Checkpoint(*row) for row in self._db.execute(sql + " ORDER BY agent, idx", params)]

    def latest_checkpoint(self, agent: str) -> Checkpoint | None:
        """The agent's highest-index checkpoint: where the indexer resumes its log."""
        row = self._db.execute(
            "SELECT agent, idx, size, root, manifest_cid, block, tx, time FROM checkpoints"
            " WHERE agent = ? ORDER BY idx DESC LIMIT 1",
            (agent.lower(),),
        ).fetchone()
        return None if row is None else Checkpoint(*row)

    # -------------------------------------------------------------- records

    def add_records(self, items: Iterable[IndexedInput]) -> int:
        """Bulk-insert verified records; returns how many were new.

        Records already indexed (same agent and seq) are skipped, so re-syncing
        a checkpoint is harmless. The caller guarantees they are the same
        records: the indexer verified them against the anchored roots.
        Run records also yield their lineage edges; a run payload that cannot be
        read as inputs/outputs is indexed anyway and reported in ``problems``.
        """
        batch = list(items)
        if not batch:
            return 0
        with self.batch():
            if not self._bulk and self._indexes_missing():  # a bulk load was interrupted
                self._create_indexes()
            fresh = self._unseen(batch)
            first_id = self._last_id() + 1  # ids assigned here, so record_bytes shares them
            rows = []
            blobs = []
            changes: list[tuple[object, ...]] = []
            code_files: list[tuple[object, ...]] = []
            edges: list[tuple[object, ...]] = []
            runs: list[tuple[object, ...]] = []
            problems: list[tuple[object, ...]] = []
            for row_id, item in enumerate(fresh, first_id):
                rows.append(_record_row(row_id, item))
                blobs.append((row_id, item.record.canonical))
                code_files.extend(_code_file_rows(row_id, item.record))
                if item.record.op in _FILE_OPS:
                    changes.append(_file_change_row(row_id, item.record))
                if item.record.op is Op.RUN:
                    _run_rows(item, edges, runs, problems)
                elif item.record.op is Op.LINEAGE:
                    _lineage_rows(item, edges, runs, problems)
            self._db.executemany(_INSERT_RECORD, rows)
            self._db.executemany(_INSERT_BYTES, blobs)
            self._db.executemany(_INSERT_FILE_CHANGE, changes)
            if code_files:
                self._db.executemany(_INSERT_CODE_FILE, code_files)
            if edges:
                self._db.executemany(_INSERT_EDGE, edges)
            if runs:
                self._db.executemany(_INSERT_RUN, runs)
            if problems:
                self._db.executemany(
                    "INSERT INTO problems (agent, seq, record_id, checkpoint, reason, detected_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    problems,
                )
        return len(fresh)

    def _unseen(self, batch: Sequence[IndexedInput]) -> list[IndexedInput]:
        """The inputs not indexed yet: one range query per agent, not one lookup per record."""
        spans: dict[str, tuple[int, int]] = {}
        for item in batch:
            record, checkpoint = item.record, item.checkpoint
            if record.agent != checkpoint.agent.lower():
                raise RecordError(
                    f"record of agent {record.agent} handed over with a checkpoint of {checkpoint.agent}", field="agent"
                )
            if record.seq > _INT64_MAX:
                raise RecordError(f"seq {record.seq} is too large to index", field="seq")
            low, high = spans.get(record.agent, (record.seq, record.seq))
            spans[record.agent] = (min(low, record.seq), max(high, record.seq))
        seen: set[tuple[str, int]] = set()
        for agent, (low, high) in spans.items():
            rows = self._db.execute(
                "SELECT seq FROM records WHERE agent = ? AND seq BETWEEN ? AND ?", (agent, low, high)
            ).fetchall()
            seen.update((agent, row[0]) for row in rows)
        fresh = []
        for item in batch:
            key = (item.record.agent, item.record.seq)
            if key not in seen:
                seen.add(key)  # a duplicate inside the batch is skipped too
                fresh.append(item)
        return fresh

    def record_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    def record_bytes(self, agent: str, seq: int) -> bytes | None:
        """The canonical bytes of an indexed record (show or re-verify it without IPFS)."""
        row = self._db.execute(
            "SELECT canonical FROM record_bytes WHERE id = (SELECT id FROM records WHERE agent = ? AND seq = ?)",
            (agent.lower(), seq),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def max_seq(self, agent: str) -> int | None:
        """The highest indexed seq of an agent, or None: a gap check for the indexer."""
        row = self._db.execute("SELECT max(seq) FROM records WHERE agent = ?", (agent.lower(),)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # -------------------------------------------------------------- problems

    def add_problem(
        self,
        reason: str,
        *,
        agent: str | None = None,
        seq: int | None = None,
        record_id: str | None = None,
        checkpoint: int | None = None,
        detected_at: int | None = None,
    ) -> None:
        """Remember why something was not indexed (bad signature, missing block...)."""
        with self.batch():
            self._db.execute(
                "INSERT INTO problems (agent, seq, record_id, checkpoint, reason, detected_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    None if agent is None else agent.lower(),
                    seq,
                    record_id,
                    checkpoint,
                    reason,
                    _time.time_ns() if detected_at is None else detected_at,
                ),
            )

    def problems(self) -> list[Problem]:
        rows = self._db.execute(
            "SELECT agent, seq, record_id, checkpoint, reason, detected_at FROM problems ORDER BY id"
        )
        return [Problem(*row) for row in rows]

    # -------------------------------------------------------------- maintenance

    def clear(self) -> None:
        """Drop everything, binding and sync state included, for a rebuild from the chain.

        Call :meth:`bind` again afterwards.
        """
        with self.batch():
            for table in _TABLES:
                self._db.execute(f"DROP TABLE IF EXISTS {table}")
            self._create()
        self._analyzed_at = 0

    def analyze(self) -> None:
        """Refresh the planner's statistics (about 0.7 s per million records).

        Not sampled (``analysis_limit``): a sample sees one user or op where
        there are hundreds, and the planner then drives ``user = ? AND op = ?``
        from the op index, 100 times slower.
        """
        self._db.execute("PRAGMA analysis_limit = 0")
        self._db.execute("ANALYZE")
        self._analyzed_at = self._last_id()

    def _maybe_analyze(self) -> None:
        if self._bulk:
            return
        last = self._last_id()
        if last >= _ANALYZE_FROM and last >= 2 * self._analyzed_at:
            self.analyze()

    def _last_id(self) -> int:
        row = self._db.execute("SELECT max(id) FROM records").fetchone()
        return int(row[0] or 0)

    def read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only statement: the query and lineage modules' only access to SQL."""
        return self._db.execute(sql, params).fetchall()


# ------------------------------------------------------------------ row derivation


def record_id(record_hash: bytes) -> str:
    """The record's CID string (CIDv1 dag-cbor): how records are named everywhere else."""
    return CID(1, DAG_CBOR, record_hash).encode()


def _plain_text(value: object) -> str | None:
    """A field's plain text, or None when absent or hidden behind a commitment (not searchable)."""
    return None if value is None or isinstance(value, Commitment) else str(value)


def _record_row(row_id: int, item: IndexedInput) -> tuple[object, ...]:
    record, checkpoint = item.record, item.checkpoint
    location = _plain_text(record.location)
    before, after = record.before, record.after
    return (
        row_id,
        record.agent,
        record.seq,
        record.hash,
        min(record.time, _INT64_MAX),  # uint64 on the wire; later than 2262 sorts last
        _plain_text(record.user),
        location,
        None if location is None else location_path(location),
        record.op.value,
        None if before is None else before.sha256,
        None if after is None else after.sha256,
        None if after is None or after.cid is None else after.cid.to_bytes(),
        record.code_hash,
        record.run,
        checkpoint.idx,
        checkpoint.size,
        checkpoint.tx,
    )


def _code_file_rows(row_id: int, record: Record) -> list[tuple[object, ...]]:
    """(id, role, path, sha256) of the executable and scripts a plain code identity names."""
    code = record.code
    if not isinstance(code, CodeIdentity):
        return []
    rows: list[tuple[object, ...]] = [(row_id, "exe", code.exe.path, code.exe.sha256)] if code.exe else []
    rows += [(row_id, "script", script.path, script.sha256) for script in code.scripts]
    return rows


def _file_change_row(row_id: int, record: Record) -> tuple[object, ...]:
    before, after = record.before, record.after
    return (
        row_id,
        _plain_text(record.from_location),
        record.mode,
        None if before is None else before.size,
        None if after is None else after.size,
    )


def _run_rows(
    item: IndexedInput,
    edges: list[tuple[object, ...]],
    runs: list[tuple[object, ...]],
    problems: list[tuple[object, ...]],
) -> None:
    """Lineage rows from a run record's payload; anything unreadable becomes a problem, not an error.

    The payload is free-form DAG-CBOR as far as record validation goes, so a
    signed, valid record can still carry a malformed run payload.
    """
    record, checkpoint = item.record, item.checkpoint.idx
    payload = record.payload or {}
    run_id = payload.get("run_id", record.run)
    if not isinstance(run_id, str) or not run_id:
        problems.append(_problem(record, checkpoint, "run record without a run id: no lineage edges"))
        return
    bad = 0
    for key, direction in (("inputs", "in"), ("outputs", "out")):
        entries = payload.get(key, [])
        if not isinstance(entries, list):
            bad += 1
            continue
        for entry in entries:
            location = entry.get("location") if isinstance(entry, dict) else None
            if not isinstance(location, str) or "://" not in location:
                bad += 1
                continue
            digest = entry.get("sha256")
            sha256 = digest if isinstance(digest, bytes) and len(digest) == 32 else None
            edges.append((run_id, direction, location, location_path(location), sha256, record.agent))
    if bad:
        problems.append(_problem(record, checkpoint, f"run payload has {bad} unreadable input/output entries: skipped"))
    exit_code = payload.get("exit_code")
    runs.append(
        (
            run_id,
            record.agent,
            _plain_text(record.location),
            min(record.time, _INT64_MAX),
            _run_label(payload, run_id),
            exit_code if isinstance(exit_code, int) and abs(exit_code) <= _INT64_MAX else None,
        )
    )


def _lineage_rows(
    item: IndexedInput,
    edges: list[tuple[object, ...]],
    runs: list[tuple[object, ...]],
    problems: list[tuple[object, ...]],
) -> None:
    """Lineage rows from a received OpenLineage event: its run, job and datasets join the run graph.

    A job's datasets become locations (provanchor.records.openlineage), so an
    Airflow task that reads ``file://HOST`` + ``/data/out.csv`` is downstream of
    the ``provanchor run`` that wrote ``file://HOST/data/out.csv``.
    """
    record, checkpoint = item.record, item.checkpoint.idx
    try:
        event = parse_lineage_payload(record.payload)
    except BadLineageEvent as exc:
        problems.append(_problem(record, checkpoint, f"lineage record unreadable: {exc}"))
        return
    for datasets, direction in ((event.inputs, "in"), (event.outputs, "out")):
        for dataset in datasets:
            location = dataset.location
            edges.append((event.run_id, direction, location, location_path(location), None, record.agent))
    label = f"{event.job_namespace}/{event.job_name}"
    runs.append((event.run_id, record.agent, event.job_location, min(record.time, _INT64_MAX), label[:60], None))


def _run_label(payload: dict[str, object], run_id: str) -> str:
    """A short human label: the run's name, else its command line, else its id."""
    name = payload.get("name")
    if isinstance(name, str) and name:
        return name
    argv = payload.get("argv")
    if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        words = [os.path.basename(str(argv[0]))] + [str(a) for a in argv[1:]]
        text = " ".join(words)
        return text if len(text) <= 60 else text[:57] + "..."
    return run_id[:12]


def _problem(record: Record, checkpoint: int, reason: str) -> tuple[object, ...]:
    return (record.agent, record.seq, record_id(record.hash), checkpoint, reason, _time.time_ns())
