"""The spool: the agent's durability point.

A record committed here is never lost. SQLite in WAL mode with
`synchronous=FULL` makes every commit durable before `Recorder.record()`
returns; everything after it (batching, IPFS, anchoring) reads from here and
writes its progress back here, each step in one transaction, so a crash at
any point resumes without losing or repeating anything.

Tables:
- `records`: one row per record, by `seq` (the agent's log position): the
  canonical bytes, hash, signature and the batch it went into.
- `batches`: one row per checkpoint, through states `cut` (records chosen,
  Merkle root and manifest fixed) → `stored` (blocks on IPFS) → `sent` (the
  signed anchor transaction saved, then broadcast) → `anchored` (receipt seen).
- `log_state`: the compact range of the Merkle log after the last cut batch.
- `contents`: bytes of file contents recorded while IPFS was unreachable,
  uploaded with their batch.
- `locations`: the last known content of each location (for `before`).
- `meta`: which agent, chain and contract this spool belongs to.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from provanchor.errors import ConfigError, SpoolUnavailable

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    data BLOB NOT NULL,
    signature BLOB NOT NULL,
    location TEXT,
    time_ns INTEGER NOT NULL,
    spooled_ns INTEGER NOT NULL,
    batch INTEGER
);
CREATE INDEX IF NOT EXISTS records_unbatched ON records(batch) WHERE batch IS NULL;
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,            -- = checkpoint index + 1
    start_seq INTEGER NOT NULL,
    end_seq INTEGER NOT NULL,          -- exclusive; = tree size after this batch
    root BLOB NOT NULL,
    proof BLOB NOT NULL,               -- consistency proof, 32-byte hashes concatenated
    manifest_cid TEXT NOT NULL,
    manifest BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('cut', 'stored', 'sent', 'anchored')),
    tx_hash TEXT,
    raw_tx BLOB,
    block INTEGER,
    gas_used INTEGER,
    cut_ns INTEGER NOT NULL,
    anchored_ns INTEGER
);
CREATE TABLE IF NOT EXISTS log_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL,
    frontier BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS contents (cid TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS locations (
    location TEXT PRIMARY KEY,
    sha256 BLOB,
    size INTEGER,
    cid TEXT
);
"""


@dataclass(frozen=True)
class SpooledRecord:
    seq: int
    hash: bytes
    data: bytes
    signature: bytes
    spooled_ns: int


@dataclass(frozen=True)
class Batch:
    id: int
    start_seq: int
    end_seq: int
    root: bytes
    proof: list[bytes]
    manifest_cid: str
    manifest: bytes
    state: str
    tx_hash: str | None
    raw_tx: bytes | None
    block: int | None
    gas_used: int | None
    cut_ns: int
    anchored_ns: int | None

    @property
    def checkpoint_index(self) -> int:
        return self.id - 1

    @property
    def size(self) -> int:
        return self.end_seq


@dataclass(frozen=True)
class KnownContent:
    sha256: bytes | None
    size: int | None
    cid: str | None


class Spool:
    """One agent's spool database. Safe to share between threads of one process.

    Many processes may open one spool. Writers (`readonly=False`) are
    serialised by SQLite's write lock; everything that talks to IPFS or the
    chain between transactions is serialised by the anchoring lock (see
    `provanchor.pipeline.locks`). Readers open it read-only: a read-only
    connection never checkpoints or deletes the WAL on close, so a status query
    cannot pull the WAL from under the service.
    """

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._local = threading.local()
        try:
            if readonly:
                if not path.exists():
                    raise ConfigError(f"spool {path} does not exist: nothing was recorded by this agent here")
                uri = f"file:{quote(str(path))}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._db.executescript(_SCHEMA)
            stored = self.get_meta("schema")
        except sqlite3.Error as exc:
            raise spool_error(path, exc) from exc
        except PermissionError as exc:
            raise SpoolUnavailable(f"spool {path} cannot be opened: permission denied") from exc
        if stored is None and not readonly:
            self.set_meta("schema", str(SCHEMA_VERSION))
        elif stored != str(SCHEMA_VERSION):
            raise ConfigError(f"spool {path} has schema {stored}, this provanchor expects {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A connection to read from: the writer's inside this thread's transaction, else a reader's.

        Reads outside a transaction go to a second connection (WAL lets it read
        the last commit while a write transaction runs), so the anchorer's reads
        never wait for the recorder's signing-and-commit, nor hold it up.
        """
        if getattr(self._local, "in_transaction", False) or self.readonly:
            with self._lock:
                yield self._db
            return
        with self._read_lock:
            if self._reader is None:
                uri = f"file:{quote(str(self.path))}?mode=ro"
                self._reader = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                               timeout=30)
            yield self._reader

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One durable transaction (BEGIN IMMEDIATE ... COMMIT, fsynced by synchronous=FULL).

        SQLite failures (a read-only file, a full disk, a lock held past the
        timeout) become `SpoolUnavailable` naming the spool: the transaction
        is rolled back, and whatever was committed before stays.
        """
        if self.readonly:
            raise SpoolUnavailable(f"spool {self.path} was opened read-only")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise spool_error(self.path, exc) from exc
            self._local.in_transaction = True
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise spool_error(self.path, exc) from exc
                raise
            finally:
                self._local.in_transaction = False

    def integrity_problems(self) -> list[str]:
        """What is wrong with this spool (empty when sound): SQLite's own check plus the log's invariants.

        The invariants: seq runs 0..n-1 without a gap, every record's `prev`
        is the hash of the one before (checked by decoding where cheap: here
        the stored order and uniqueness), batches tile the log from 0 without
        overlap, and the log state's size is the last batch's end.
        """
        problems: list[str] = []
        with self._read() as db:
            for (line,) in db.execute("PRAGMA integrity_check").fetchall():
                if line != "ok":
                    problems.append(f"sqlite: {line}")
            count, low, high = db.execute("SELECT COUNT(*), MIN(seq), MAX(seq) FROM records").fetchone()
            if count and (low != 0 or high != count - 1):
                problems.append(f"records: seq runs {low}..{high} over {count} rows (a gap or a repeat)")
            expected_start = 0
            for batch_id, start, end in db.execute("SELECT id, start_seq, end_seq FROM batches ORDER BY id"):
                if start != expected_start or end <= start:
                    problems.append(f"batch {batch_id}: covers {start}..{end}, expected to start at {expected_start}")
                expected_start = end
            row = db.execute("SELECT size FROM log_state WHERE id = 1").fetchone()
            if (row[0] if row else 0) != expected_start:
                problems.append(f"log state size {row[0] if row else 0} != end of the last batch {expected_start}")
            unbatched_low = db.execute("SELECT MIN(seq) FROM records WHERE batch IS NULL").fetchone()[0]
            if unbatched_low is not None and unbatched_low != expected_start:
                problems.append(f"first unbatched record is seq {unbatched_low}, the log ends at {expected_start}")
        return problems

    # ------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def bind(self, agent: str, chain_id: int, contract: str) -> None:
        """Tie the spool to one agent on one ledger; refuse to mix logs across deployments."""
        wanted = {"agent": agent.lower(), "chain_id": str(chain_id), "contract": contract.lower()}
        for key, value in wanted.items():
            current = self.get_meta(key)
            if current is None and self.readonly:
                continue
            if current is None:
                self.set_meta(key, value)
            elif current != value:
                raise ConfigError(
                    f"spool {self.path} belongs to {key} {current}, not {value}: use another --home or spool"
                )

    # ------------------------------------------------------------ records

    def head(self) -> tuple[int, bytes | None]:
        """(next seq, hash of the last record or None)."""
        with self._read() as db:
            row = db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return 0, None
        return int(row[0]) + 1, bytes(row[1])

    def insert_records(
        self,
        db: sqlite3.Connection,
        rows: Sequence[tuple[int, bytes, bytes, bytes, str | None, int, int]],
    ) -> None:
        db.executemany(
            "INSERT INTO records(seq, hash, data, signature, location, time_ns, spooled_ns) VALUES (?,?,?,?,?,?,?)",
            rows,
        )

    def unbatched(self, limit: int) -> list[SpooledRecord]:
        with self._read() as db:
            rows = db.execute(
                "SELECT seq, hash, data, signature, spooled_ns FROM records WHERE batch IS NULL ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [SpooledRecord(int(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3]), int(r[4])) for r in rows]

    def count_unbatched(self) -> int:
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM records WHERE batch IS NULL").fetchone()[0])

    def oldest_unbatched_ns(self) -> int | None:
        with self._read() as db:
            row = db.execute("SELECT MIN(spooled_ns) FROM records WHERE batch IS NULL").fetchone()
        return None if row[0] is None else int(row[0])

    def records_of_batch(self, batch: Batch) -> list[SpooledRecord]:
        with self._read() as db:
            rows = db.execute(
                "SELECT seq, hash, data, signature, spooled_ns FROM records WHERE seq >= ? AND seq < ? ORDER BY seq",
                (batch.start_seq, batch.end_seq),
            ).fetchall()
        return [SpooledRecord(int(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3]), int(r[4])) for r in rows]

    def record_by_seq(self, seq: int) -> SpooledRecord | None:
        with self._read() as db:
            r = db.execute(
                "SELECT seq, hash, data, signature, spooled_ns FROM records WHERE seq = ?", (seq,)
            ).fetchone()
        return None if r is None else SpooledRecord(int(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3]), int(r[4]))

    def count_records(self) -> int:
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    # ------------------------------------------------------------ locations and contents

    def known_content(self, location: str) -> KnownContent | None:
        with self._read() as db:
            row = db.execute("SELECT sha256, size, cid FROM locations WHERE location = ?", (location,)).fetchone()
        if row is None:
            return None
        return KnownContent(None if row[0] is None else bytes(row[0]), row[1], row[2])

    def set_known_content(self, db: sqlite3.Connection, location: str, content: KnownContent | None) -> None:
        if content is None:
            db.execute("DELETE FROM locations WHERE location = ?", (location,))
        else:
            db.execute(
                "INSERT OR REPLACE INTO locations(location, sha256, size, cid) VALUES (?,?,?,?)",
                (location, content.sha256, content.size, content.cid),
            )

    def put_content(self, db: sqlite3.Connection, cid: str, data: bytes) -> None:
        db.execute("INSERT OR IGNORE INTO contents(cid, data) VALUES (?, ?)", (cid, data))

    def keep_content(self, cid: str, data: bytes) -> None:
        """Keep content bytes durably until a batch stores them on IPFS."""
        with self.transaction() as db:
            self.put_content(db, cid, data)

    def pending_contents(self) -> list[tuple[str, bytes]]:
        with self._read() as db:
            return [(str(c), bytes(d)) for c, d in db.execute("SELECT cid, data FROM contents").fetchall()]

    def drop_contents(self, cids: Sequence[str]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM contents WHERE cid = ?", [(c,) for c in cids])

    # ------------------------------------------------------------ Merkle log state

    def log_state(self) -> tuple[int, list[bytes]]:
        with self._read() as db:
            row = db.execute("SELECT size, frontier FROM log_state WHERE id = 1").fetchone()
        if row is None:
            return 0, []
        blob = bytes(row[1])
        return int(row[0]), [blob[i : i + 32] for i in range(0, len(blob), 32)]

    # ------------------------------------------------------------ batches

    def insert_batch(
        self,
        db: sqlite3.Connection,
        batch_id: int,
        start_seq: int,
        end_seq: int,
        root: bytes,
        proof: Sequence[bytes],
        manifest_cid: str,
        manifest: bytes,
        cut_ns: int,
        frontier: Sequence[bytes],
    ) -> None:
        db.execute(
            "INSERT INTO batches(id, start_seq, end_seq, root, proof, manifest_cid, manifest, state, cut_ns)"
            " VALUES (?,?,?,?,?,?,?,'cut',?)",
            (batch_id, start_seq, end_seq, root, b"".join(proof), manifest_cid, manifest, cut_ns),
        )
        db.execute("UPDATE records SET batch = ? WHERE seq >= ? AND seq < ?", (batch_id, start_seq, end_seq))
        db.execute(
            "INSERT OR REPLACE INTO log_state(id, size, frontier) VALUES (1, ?, ?)", (end_seq, b"".join(frontier))
        )

    def batches(self, states: Sequence[str] | None = None) -> list[Batch]:
        query = "SELECT * FROM batches"
        params: tuple[str, ...] = ()
        if states:
            query += f" WHERE state IN ({','.join('?' * len(states))})"
            params = tuple(states)
        with self._read() as db:
            rows = db.execute(query + " ORDER BY id", params).fetchall()
        return [_batch(row) for row in rows]

    def last_batch(self) -> Batch | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM batches ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else _batch(row)

    def batch(self, batch_id: int) -> Batch | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return None if row is None else _batch(row)

    def mark_stored(self, batch_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE batches SET state = 'stored' WHERE id = ? AND state = 'cut'", (batch_id,))

    def mark_sent(self, batch_id: int, tx_hash: str, raw_tx: bytes) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET state = 'sent', tx_hash = ?, raw_tx = ? WHERE id = ?", (tx_hash, raw_tx, batch_id)
            )

    def mark_anchored(
        self, batch_id: int, tx_hash: str | None, block: int | None, gas_used: int | None, anchored_ns: int
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET state = 'anchored', tx_hash = COALESCE(?, tx_hash), block = ?, gas_used = ?,"
                " anchored_ns = ? WHERE id = ?",
                (tx_hash, block, gas_used, anchored_ns, batch_id),
            )

    def anchored_size(self) -> int:
        """How many records are anchored (cheap: the last anchored batch's end)."""
        with self._read() as db:
            row = db.execute("SELECT COALESCE(MAX(end_seq), 0) FROM batches WHERE state = 'anchored'").fetchone()
        return int(row[0])

    def stats(self) -> dict[str, int]:
        with self._read() as db:
            records = int(db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
            unbatched = int(db.execute("SELECT COUNT(*) FROM records WHERE batch IS NULL").fetchone()[0])
            rows = db.execute("SELECT state, COUNT(*), COALESCE(MAX(end_seq), 0) FROM batches GROUP BY state")
            by_state = {str(s): (int(n), int(m)) for s, n, m in rows.fetchall()}
        anchored_size = by_state.get("anchored", (0, 0))[1]
        return {
            "records": records,
            "unbatched": unbatched,
            "batches_pending": sum(n for s, (n, _) in by_state.items() if s != "anchored"),
            "batches_anchored": by_state.get("anchored", (0, 0))[0],
            "anchored_size": anchored_size,
        }


def _batch(row: Sequence[Any]) -> Batch:
    proof_blob = bytes(row[4])
    return Batch(
        id=int(row[0]),
        start_seq=int(row[1]),
        end_seq=int(row[2]),
        root=bytes(row[3]),
        proof=[proof_blob[i : i + 32] for i in range(0, len(proof_blob), 32)],
        manifest_cid=str(row[5]),
        manifest=bytes(row[6]),
        state=str(row[7]),
        tx_hash=None if row[8] is None else str(row[8]),
        raw_tx=None if row[9] is None else bytes(row[9]),
        block=None if row[10] is None else int(row[10]),
        gas_used=None if row[11] is None else int(row[11]),
        cut_ns=int(row[12]),
        anchored_ns=None if row[13] is None else int(row[13]),
    )


def spool_error(path: Path, exc: sqlite3.Error) -> SpoolUnavailable:
    """One line naming the spool, the cause and the fix."""
    text = str(exc)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered:
        why = "it is read-only (file or directory): make it writable by this user"
    elif "full" in lowered:
        why = "the disk is full: free space and retry"
    elif "locked" in lowered or "busy" in lowered:
        why = "another process held it locked for too long: retry"
    elif "unable to open" in lowered:
        why = "it cannot be opened: check the directory exists and is writable"
    else:
        why = text
    return SpoolUnavailable(f"spool {path}: {why} ({text}); nothing already recorded is lost")
