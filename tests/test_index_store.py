"""Tests for the local index: storage, every query filter and their combinations, plans, lineage.

Records are real ones (`Record.from_change`), written by three agents on two
hosts with interleaved times, plus a three-step pipeline of runs for lineage.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provanchor.errors import ConfigError, RecordError, UsageError
from provanchor.formats.cid import CID, RAW
from provanchor.index import (
    BadAgent,
    BadCodeHash,
    BadDepth,
    BadDirection,
    BadLimit,
    BadLocation,
    BadOp,
    BadTime,
    BadTimeRange,
    Checkpoint,
    ForeignIndex,
    IndexedInput,
    IndexMissing,
    IndexOutdated,
    IndexStore,
    NotAnIndex,
    QueryFilter,
    QueryRow,
    format_time,
    lineage,
    location_arg,
    parse_code_hash,
    parse_time,
    query_plan,
    record_id,
    run_query,
)
from provanchor.records import (
    Capture,
    CaptureBackend,
    Change,
    CodeFile,
    CodeIdentity,
    ContentRef,
    Op,
    Record,
    file_location,
)

A1 = "0x" + "11" * 20
A2 = "0x" + "22" * 20
A3 = "0x" + "33" * 20
A1_CHECKSUM = "0x1111111111111111111111111111111111111111"  # all digits: the same in every case
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55 test vector
T0 = 1_700_000_000 * 10**9
SEC = 10**9
TX = bytes.fromhex("ab" * 32)
ROOT = bytes(32)


def _code(name: str) -> CodeIdentity:
    return CodeIdentity(
        exe=CodeFile("/usr/bin/python3.11", hashlib.sha256(b"python").digest()),
        scripts=(CodeFile(f"/opt/{name}.py", hashlib.sha256(name.encode()).digest()),),
        argv=("python3", f"{name}.py"),
        image=None,
    )


C1, C2 = _code("clean"), _code("merge")


def _content(tag: str) -> ContentRef:
    data = tag.encode()
    digest = hashlib.sha256(data).digest()
    return ContentRef(digest, len(data), CID(1, RAW, digest))


@dataclass
class Log:
    """Builds each agent's chained records (seq, prev) and hands them over with a checkpoint."""

    records: list[Record] = field(default_factory=list)
    _seq: dict[str, int] = field(default_factory=dict)
    _prev: dict[str, bytes | None] = field(default_factory=dict)

    def add(self, agent: str, change: Change) -> Record:
        seq = self._seq.get(agent, 0)
        record = Record.from_change(change, agent, seq, self._prev.get(agent))
        self._seq[agent], self._prev[agent] = seq + 1, record.hash
        self.records.append(record)
        return record

    def change(
        self,
        agent: str,
        t: int,
        host: str,
        path: str,
        op: Op,
        user: str | None = None,
        code: CodeIdentity | None = None,
        **extra: object,
    ) -> Record:
        after = None if op is Op.DELETE else _content(f"{path}@{t}")
        capture = Capture(CaptureBackend.FANOTIFY, True) if user else Capture(CaptureBackend.INOTIFY, False, "no pid")
        change = Change(
            time=T0 + t * SEC,
            host=host,
            location=file_location(host, path),
            op=op,
            capture=capture,
            user=user,
            after=after,
            code=code,
            **extra,  # type: ignore[arg-type]
        )
        return self.add(agent, change)

    def run(self, agent: str, t: int, host: str, run_id: str, inputs: list[str], outputs: list[str]) -> Record:
        """A run: one write per output (carrying the run id), then the run record listing both sides."""
        for offset, path in enumerate(outputs):
            self.change(agent, t + offset, host, path, Op.WRITE, "alice", C1, run=run_id)

        def wire(path: str) -> dict[str, object]:
            ref = _content(path)
            return {"location": file_location(host, path), "sha256": ref.sha256, "size": ref.size, "cid": ref.cid}

        payload: dict[str, object] = {
            "run_id": run_id,
            "name": None,
            "argv": ["python3", f"/opt/{run_id}.py"],
            "cwd": "/p",
            "inputs": [wire(p) for p in inputs],
            "outputs": [wire(p) for p in outputs],
            "exit_code": 0,
        }
        change = Change(
            time=T0 + t * SEC,
            host=host,
            location=f"run://{host}/{run_id}",
            op=Op.RUN,
            capture=Capture(CaptureBackend.RUN, True),
            user="alice",
            code=C1,
            run=run_id,
            payload=payload,
        )
        return self.add(agent, change)

    def inputs(self) -> list[IndexedInput]:
        """Each agent's records in one checkpoint (index 0) covering all of them."""
        sizes = self._seq
        return [IndexedInput(r, _checkpoint(r.agent, 0, sizes[r.agent])) for r in self.records]


def _checkpoint(agent: str, idx: int, size: int) -> Checkpoint:
    return Checkpoint(agent, idx, size, ROOT, "bafyreimanifest", 100 + idx, TX, T0)


def build_log() -> Log:
    log = Log()
    log.change(A1, 0, "vm1", "/data/a/x.csv", Op.CREATE, "alice", C1, mode=0o100644)
    log.change(A2, 1, "vm2", "/data/ab/y.csv", Op.WRITE, "bob", C2)
    log.change(A1, 2, "vm1", "/data/a/sub/z.csv", Op.WRITE, "alice", C1)
    log.change(A3, 3, "vm1", "/data/a", Op.CHMOD, "carol", mode=0o40755)
    log.change(A2, 4, "vm2", "/data/a/x.csv", Op.WRITE, "bob", C2)
    log.change(A1, 5, "vm1", "/data/a.csv", Op.WRITE, "alice", C1)
    log.change(A3, 6, "vm1", "/data/a/x.csv", Op.DELETE, "carol")
    log.change(A1, 6, "vm1", "/data/b/q.csv", Op.WRITE, None)  # same time as A3's: ordered by agent
    log.change(
        A2, 7, "vm2", "/data/ab/y2.csv", Op.RENAME, "bob", C2, from_location=file_location("vm2", "/data/ab/y.csv")
    )
    log.change(A2, 8, "vm2", "/data/my file#1.csv", Op.WRITE, "bob", C2)
    # The pipeline raw -> step1 -> mid -> step2 -> out -> step3 -> report, and a self-loop.
    log.change(A1, 20, "vm1", "/p/raw.csv", Op.CREATE, "alice", C1)
    log.run(A1, 21, "vm1", "step1", ["/p/raw.csv"], ["/p/mid.csv"])
    log.run(A1, 23, "vm1", "step2", ["/p/mid.csv", "/p/params.json"], ["/p/out.csv"])
    log.run(A1, 25, "vm1", "step3", ["/p/out.csv"], ["/p/report.pdf"])
    log.run(A3, 27, "vm1", "loop", ["/p/loop.csv"], ["/p/loop.csv"])
    # A record hiding its user and location behind commitments: indexed, but not by those fields.
    hidden = Change(
        time=T0 + 30 * SEC,
        host="vm1",
        location=file_location("vm1", "/secret/s.csv"),
        op=Op.WRITE,
        capture=Capture(CaptureBackend.MANUAL, True),
        user="alice",
        after=_content("s"),
    )
    record = Record.from_change(hidden, A2, 0, None)
    committed = record.with_commitments({"user": b"\1" * 32, "location": b"\2" * 32})
    change = Change(**{name: getattr(committed, name) for name in Change.__dataclass_fields__})
    log.add(A2, change)
    return log


@pytest.fixture
def log() -> Log:
    return build_log()


@pytest.fixture
def store(tmp_path: Path, log: Log) -> Iterator[IndexStore]:
    index = IndexStore(tmp_path / "index.db")
    index.bind(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    for agent in (A1, A2, A3):
        index.add_checkpoint(_checkpoint(agent, 0, len([r for r in log.records if r.agent == agent])))
    assert index.add_records(log.inputs()) == len(log.records)
    yield index
    index.close()


def paths(rows: list[QueryRow]) -> list[str]:
    """The path part of each result's location (host dropped), '?' for a hidden one."""
    return ["?" if row.location is None else _path(row.location) for row in rows]


def _path(location: str) -> str:
    return "/" + location.split("://", 1)[1].split("/", 1)[1]


def q(store: IndexStore, **kwargs: object) -> list[str]:
    return paths(run_query(store, QueryFilter(**kwargs)))  # type: ignore[arg-type]


# ------------------------------------------------------------------ store basics


def test_counts_duplicates_and_reopen(tmp_path: Path, store: IndexStore, log: Log) -> None:
    assert store.record_count() == len(log.records)
    assert store.add_records(log.inputs()) == 0  # re-syncing a checkpoint is harmless
    assert store.add_records([]) == 0
    assert store.max_seq(A1) == len([r for r in log.records if r.agent == A1]) - 1
    first = log.records[0]
    assert store.record_bytes(first.agent, first.seq) == first.canonical
    assert store.record_bytes(first.agent, 999) is None
    store.close()
    with IndexStore.open(tmp_path / "index.db") as again:
        assert again.record_count() == len(log.records)
        assert again.binding() == (31337, "0x5fbdb2315678afecb367f032d93f642f64180aa3")


def test_checkpoints_and_sync_state(store: IndexStore) -> None:
    assert [c.agent for c in store.checkpoints()] == [A1, A2, A3]
    store.add_checkpoint(_checkpoint(A1, 1, 40))
    latest = store.latest_checkpoint(A1)
    assert latest is not None and (latest.idx, latest.size, latest.tx) == (1, 40, TX)
    assert store.latest_checkpoint("0x" + "99" * 20) is None
    assert store.get_state("last_block:0xabc") is None
    store.set_state("last_block:0xabc", "17")
    store.set_state("last_block:0xabc", "18")
    assert store.get_state("last_block:0xabc") == "18"


def test_record_of_another_agent_is_refused(store: IndexStore, log: Log) -> None:
    with pytest.raises(RecordError, match="checkpoint of"):
        store.add_records([IndexedInput(log.records[0], _checkpoint(A2, 0, 1))])


def test_bind_refuses_a_foreign_index(store: IndexStore) -> None:
    store.bind(31337, "0x5fbdb2315678afecb367f032d93f642f64180aa3")  # same deployment, any case
    with pytest.raises(ForeignIndex, match="follows chain 31337") as info:
        store.bind(1, "0x5fbdb2315678afecb367f032d93f642f64180aa3")
    assert isinstance(info.value, ConfigError) and "\n" not in str(info.value)
    with pytest.raises(ForeignIndex):
        store.bind(31337, "0x" + "00" * 20)


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(IndexMissing, match=r"no index at .*nothing\.db: run `provanchor index sync`"):
        IndexStore.open(tmp_path / "nothing.db")
    assert not (tmp_path / "nothing.db").exists()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(NotAnIndex):
        IndexStore.open(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(NotAnIndex, match="not a provanchor index"):
        IndexStore.open(other)
    created = IndexStore.open(tmp_path / "sub" / "new.db", must_exist=False)
    assert created.record_count() == 0 and created.binding() is None


def test_clear_drops_everything(store: IndexStore, log: Log) -> None:
    store.set_state("k", "v")
    store.add_problem("bad signature", agent=A1, seq=3, checkpoint=0)
    store.clear()
    assert store.record_count() == 0
    assert store.checkpoints() == [] and store.problems() == [] and store.get_state("k") is None
    assert store.binding() is None
    assert lineage(store, file_location("vm1", "/p/report.pdf"), "upstream", 5).edges == []
    store.bind(1, "0x" + "00" * 20)  # a cleared index can follow another deployment
    assert store.add_records(log.inputs()) == len(log.records)


def test_outdated_schema_is_refused_and_destroy_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    IndexStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(IndexOutdated, match="schema version 0"):
        IndexStore.open(path)
    IndexStore.destroy(path)
    assert not path.exists()
    with pytest.raises(IndexMissing):
        IndexStore.open(path)


def test_batches_are_atomic_and_nest_as_savepoints(tmp_path: Path, log: Log) -> None:
    index = IndexStore(tmp_path / "i.db")
    items = log.inputs()
    with pytest.raises(RuntimeError), index.batch():
        index.add_records(items[:3])
        index.set_state("k", "1")
        raise RuntimeError("interrupted")
    assert index.record_count() == 0 and index.get_state("k") is None
    with index.batch():
        index.add_records(items[:3])
        with pytest.raises(RecordError), index.batch():  # an inner failure undoes the inner batch only
            index.add_records(items[3:5])
            index.add_records([IndexedInput(log.records[0], _checkpoint(A2, 0, 1))])
        index.set_state("k", "2")
    assert index.record_count() == 3 and index.get_state("k") == "2"


def test_bulk_load_gives_the_same_answers(tmp_path: Path, store: IndexStore, log: Log) -> None:
    bulk = IndexStore(tmp_path / "bulk.db")
    with bulk.bulk_load():
        assert bulk.add_records(log.inputs()) == len(log.records)
        assert run_query(bulk, QueryFilter(under="/data/a")) == run_query(store, QueryFilter(under="/data/a"))
    for kwargs in SINGLE_FILTERS:
        assert run_query(bulk, QueryFilter(**kwargs)) == run_query(store, QueryFilter(**kwargs))  # type: ignore[arg-type]
        assert all("SEARCH" in step for step in query_plan(bulk, QueryFilter(**kwargs)) if "records" in step)  # type: ignore[arg-type]


def test_interrupted_bulk_load_is_repaired_by_the_next_sync(tmp_path: Path, log: Log) -> None:
    items = log.inputs()
    with IndexStore(tmp_path / "i.db") as index:
        index.add_records(items[:5])
    with sqlite3.connect(tmp_path / "i.db") as db:  # what a process dying inside bulk_load() leaves
        names = db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'").fetchall()
        for (name,) in names:
            if name.startswith("records_") and name != "records_agent_seq":
                db.execute(f"DROP INDEX {name}")
    again = IndexStore(tmp_path / "i.db")
    assert any(step.startswith("SCAN records") for step in query_plan(again, QueryFilter(user="bob")))
    again.add_records(items[5:])
    assert query_plan(again, QueryFilter(user="bob"))[0].startswith("SEARCH records USING INDEX records_user")
    assert again.record_count() == len(items)


def test_problems(store: IndexStore, log: Log) -> None:
    store.add_problem("signature does not recover to the agent", agent=A1.upper().replace("0X", "0x"), seq=2)
    store.add_problem("manifest block not found", checkpoint=4, detected_at=123)
    problems = store.problems()
    assert problems[0].agent == A1 and problems[0].seq == 2 and problems[0].detected_at > 0
    assert problems[1].checkpoint == 4 and problems[1].detected_at == 123 and problems[1].agent is None


def test_malformed_run_payload_is_indexed_and_reported(tmp_path: Path) -> None:
    change = Change(
        time=T0,
        host="vm1",
        location="run://vm1/r1",
        op=Op.RUN,
        capture=Capture(CaptureBackend.RUN, True),
        run="r1",
        payload={"inputs": [{"location": 5}, "nonsense"], "outputs": "oops"},
    )
    record = Record.from_change(change, A1, 0, None)
    with IndexStore(tmp_path / "i.db") as index:
        assert index.add_records([IndexedInput(record, _checkpoint(A1, 0, 1))]) == 1
        (problem,) = index.problems()
        assert problem.record_id == record_id(record.hash) and "3 unreadable" in problem.reason


# ------------------------------------------------------------------ single filters


def test_no_filter_returns_everything_in_order(store: IndexStore, log: Log) -> None:
    rows = run_query(store, QueryFilter())
    assert len(rows) == len(log.records)
    keys = [(r.time, r.agent, r.seq) for r in rows]
    assert keys == sorted(keys)
    # Same second: A1 (0x11..) before A3 (0x33..).
    tied = [r for r in rows if r.time == T0 + 6 * SEC]
    assert [r.agent for r in tied] == [A1, A3]


def test_filter_user(store: IndexStore) -> None:
    assert q(store, user="carol") == ["/data/a", "/data/a/x.csv"]
    assert q(store, user="nobody") == []


def test_filter_location_uri_and_host_agnostic_path(store: IndexStore) -> None:
    uri = file_location("vm1", "/data/a/x.csv")
    rows = run_query(store, QueryFilter(location=uri))
    assert [(r.agent, r.op) for r in rows] == [(A1, "create"), (A3, "delete")]
    rows = run_query(store, QueryFilter(location="/data/a/x.csv"))  # any host
    assert [r.location for r in rows] == [uri, file_location("vm2", "/data/a/x.csv"), uri]
    # A path with characters that are percent-encoded in the URI.
    assert q(store, location="/data/my file#1.csv") == ["/data/my%20file%231.csv"]
    assert q(store, location=file_location("vm2", "/data/my file#1.csv")) == ["/data/my%20file%231.csv"]


def test_filter_under_does_not_match_siblings(store: IndexStore) -> None:
    expected = ["/data/a/x.csv", "/data/a/sub/z.csv", "/data/a", "/data/a/x.csv", "/data/a/x.csv"]
    assert q(store, under="/data/a") == expected
    assert q(store, under="/data/a/") == expected
    assert q(store, under="/data/ab") == ["/data/ab/y.csv", "/data/ab/y2.csv"]
    on_vm1 = q(store, under=file_location("vm1", "/data/a"))
    assert on_vm1 == ["/data/a/x.csv", "/data/a/sub/z.csv", "/data/a", "/data/a/x.csv"]
    assert "/data/a.csv" not in q(store, under="/data/a")
    assert len(q(store, under="/")) == len(q(store)) - 5  # all files: not the 4 runs nor the hidden record
    assert q(store, under="run://vm1") == ["/step1", "/step2", "/step3", "/loop"]
    vm1 = [r for r in run_query(store, QueryFilter()) if (r.location or "").startswith("file://vm1/")]
    assert run_query(store, QueryFilter(under="file://vm1")) == vm1
    assert run_query(store, QueryFilter(under="file://vm1/")) == vm1
    assert q(store, under="file://vm") == []  # a host id prefix is not a directory


def test_filter_time_bounds_are_inclusive(store: IndexStore) -> None:
    at_4 = T0 + 4 * SEC
    assert q(store, since_ns=at_4, until_ns=at_4) == ["/data/a/x.csv"]
    assert q(store, since_ns=at_4 + 1, until_ns=T0 + 5 * SEC) == ["/data/a.csv"]
    assert len(q(store, until_ns=T0 + 2 * SEC)) == 3
    assert len(q(store, since_ns=T0 + 30 * SEC)) == 1
    iso = parse_time("2023-11-14T22:13:24Z")  # T0 is 2023-11-14T22:13:20Z
    assert iso == at_4
    assert q(store, since_ns=iso, until_ns=parse_time("1700000004")) == ["/data/a/x.csv"]
    assert q(store, since_ns=parse_time("1700000003.5"), until_ns=parse_time("2023-11-14T23:13:24+01:00")) == [
        "/data/a/x.csv"
    ]


def test_filter_code_hash(store: IndexStore) -> None:
    rows = run_query(store, QueryFilter(code_hash=C2.digest))
    assert {r.agent for r in rows} == {A2} and len(rows) == 4
    assert parse_code_hash("0x" + C2.digest.hex()) == C2.digest == parse_code_hash(C2.digest.hex().upper())
    assert q(store, code_hash=bytes(32)) == []


def test_filter_program_by_content_and_by_path(store: IndexStore) -> None:
    """Both codes run the same interpreter: by its hash every record of either; by a script, one code's."""
    python = C1.exe
    assert python is not None
    by_interpreter = run_query(store, QueryFilter(program_sha256=python.sha256))
    assert {r.code_hash for r in by_interpreter} == {C1.digest, C2.digest}
    by_script = run_query(store, QueryFilter(program_sha256=C2.scripts[0].sha256))
    assert by_script == run_query(store, QueryFilter(code_hash=C2.digest))
    by_path = run_query(store, QueryFilter(program_path="/opt/merge.py"))
    assert by_path == by_script
    assert run_query(store, QueryFilter(program_path="/opt/none.py")) == []


def test_a_version_2_index_is_upgraded_in_place(tmp_path: Path, store: IndexStore) -> None:
    """Index schema 3 added code_files: an older index gets it from its records' own bytes, nothing refetched."""
    before = run_query(store, QueryFilter(program_sha256=C1.scripts[0].sha256))
    assert before
    store.close()
    with sqlite3.connect(store.path) as db:
        db.execute("DROP TABLE code_files")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    upgraded = IndexStore.open(store.path)
    try:
        assert run_query(upgraded, QueryFilter(program_sha256=C1.scripts[0].sha256)) == before
    finally:
        upgraded.close()
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("3",)


def test_filter_agent_any_case(store: IndexStore) -> None:
    rows = run_query(store, QueryFilter(agent=A3))
    assert [r.seq for r in rows] == [0, 1, 2, 3]
    assert run_query(store, QueryFilter(agent=A1_CHECKSUM.upper().replace("0X", "0x"))) == run_query(
        store, QueryFilter(agent=A1)
    )
    assert QueryFilter(agent=CHECKSUMMED).agent == CHECKSUMMED.lower()


def test_filter_op(store: IndexStore) -> None:
    assert q(store, op="delete") == ["/data/a/x.csv"]
    assert q(store, op=Op.RENAME) == ["/data/ab/y2.csv"]
    assert q(store, op="RUN") == ["/step1", "/step2", "/step3", "/loop"]


def test_filter_run_id(store: IndexStore) -> None:
    rows = run_query(store, QueryFilter(run_id="step2"))
    assert [(r.op, _path(r.location or "")) for r in rows] == [("write", "/p/out.csv"), ("run", "/step2")]


def test_hidden_fields_are_not_searchable(store: IndexStore) -> None:
    rows = run_query(store, QueryFilter(agent=A2, since_ns=T0 + 30 * SEC))
    assert len(rows) == 1 and rows[0].user is None and rows[0].location is None
    assert q(store, user="alice", under="/secret") == []


# ------------------------------------------------------------------ combinations, order, limit


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"user": "bob", "op": "write"}, ["/data/ab/y.csv", "/data/a/x.csv", "/data/my%20file%231.csv"]),
        ({"agent": A1, "under": "/data/a"}, ["/data/a/x.csv", "/data/a/sub/z.csv"]),
        (
            {"code_hash": C1.digest, "since_ns": T0 + 2 * SEC, "until_ns": T0 + 5 * SEC},
            ["/data/a/sub/z.csv", "/data/a.csv"],
        ),
        (
            {"under": "/data", "since_ns": T0 + 6 * SEC, "until_ns": T0 + 7 * SEC},
            ["/data/b/q.csv", "/data/a/x.csv", "/data/ab/y2.csv"],
        ),
        ({"location": "/data/a/x.csv", "agent": A2}, ["/data/a/x.csv"]),
        ({"run_id": "step3", "op": "run"}, ["/step3"]),
        ({"user": "alice", "under": "/p", "op": "write"}, ["/p/mid.csv", "/p/out.csv", "/p/report.pdf", "/p/loop.csv"]),
        ({"agent": A1, "op": "write", "code_hash": C1.digest, "under": "/data"}, ["/data/a/sub/z.csv", "/data/a.csv"]),
    ],
)
def test_combined_filters(store: IndexStore, kwargs: dict[str, object], expected: list[str]) -> None:
    assert q(store, **kwargs) == expected


def test_limit_keeps_the_earliest(store: IndexStore) -> None:
    everything = run_query(store, QueryFilter())
    assert run_query(store, QueryFilter(limit=3)) == everything[:3]
    assert q(store, under="/data/a", limit=2) == ["/data/a/x.csv", "/data/a/sub/z.csv"]


def test_every_limit_cuts_the_full_order(store: IndexStore) -> None:
    """Including inside ties on time, where agent then seq decide (A1 before A3 at T0 + 6 s)."""
    for kwargs in ({}, {"under": "/data"}, {"since_ns": T0 + 5 * SEC}):
        everything = run_query(store, QueryFilter(**kwargs))  # type: ignore[arg-type]
        for limit in range(1, len(everything) + 2):
            assert run_query(store, QueryFilter(**kwargs, limit=limit)) == everything[:limit]  # type: ignore[arg-type]


def test_times_beyond_int64_are_indexed_last(tmp_path: Path) -> None:
    late = Change(
        time=2**64 - 1,
        host="vm1",
        location=file_location("vm1", "/late"),
        op=Op.WRITE,
        capture=Capture(CaptureBackend.MANUAL, True),
    )
    record = Record.from_change(late, A1, 0, None)
    with IndexStore(tmp_path / "i.db") as index:
        index.add_records([IndexedInput(record, _checkpoint(A1, 0, 1))])
        (row,) = run_query(index, QueryFilter(since_ns=parse_time("2262-04-12")))
        assert row.location == file_location("vm1", "/late")
        assert run_query(index, QueryFilter(since_ns=2**64 - 1)) == [row]


def test_row_json(store: IndexStore, log: Log) -> None:
    (row,) = run_query(store, QueryFilter(location=file_location("vm1", "/data/a/x.csv"), op="create"))
    data = row.to_json()
    expected_keys = {
        "record_id", "agent", "seq", "time", "user", "location", "op", "before_sha256", "after_sha256",
        "after_cid", "code_hash", "run_id", "checkpoint_size", "tx",
    }  # fmt: skip
    assert expected_keys <= data.keys()
    first = log.records[0]
    assert first.after is not None and first.after.cid is not None
    assert data["record_id"] == str(first.cid) and data["record_id"].startswith("bafyrei")  # type: ignore[union-attr]
    assert data["time"] == "2023-11-14T22:13:20Z"
    assert data["before_sha256"] is None and data["after_sha256"] == first.after.sha256.hex()
    assert data["after_cid"] == first.after.cid.encode()
    assert data["code_hash"] == C1.digest.hex() and data["run_id"] is None
    assert data["checkpoint_size"] == len([r for r in log.records if r.agent == A1]) and data["tx"] == "0x" + TX.hex()


# ------------------------------------------------------------------ bad input


def test_bad_inputs_are_usage_errors() -> None:
    cases = [
        (BadTime, lambda: parse_time("yesterday")),
        (BadTime, lambda: parse_time("2023-13-01")),
        (BadTime, lambda: parse_time("-5")),
        (BadTime, lambda: parse_time("")),
        (BadCodeHash, lambda: parse_code_hash("zz" * 32)),
        (BadCodeHash, lambda: parse_code_hash("0x1234")),
        (BadCodeHash, lambda: QueryFilter(code_hash=b"short")),
        (BadOp, lambda: QueryFilter(op="explode")),
        (BadAgent, lambda: QueryFilter(agent="0x1234")),
        (BadAgent, lambda: QueryFilter(agent=CHECKSUMMED.replace("a", "A", 1))),  # broken checksum
        (BadTimeRange, lambda: QueryFilter(since_ns=T0 + 1, until_ns=T0)),
        (BadLimit, lambda: QueryFilter(limit=0)),
        (BadLocation, lambda: QueryFilter(under="data/a")),
        (BadLocation, lambda: QueryFilter(location="/data/../etc")),
    ]
    for error, call in cases:
        with pytest.raises(error) as info:
            call()
        assert isinstance(info.value, UsageError) and "\n" not in str(info.value), error
    with pytest.raises(BadTime, match="'yesterday'"):
        parse_time("yesterday")


def test_parse_and_format_time() -> None:
    assert parse_time("1700000000") == T0
    assert parse_time("1700000000.5") == T0 + SEC // 2
    assert parse_time("2023-11-14T22:13:20Z") == T0
    assert parse_time("2023-11-14T22:13:20") == T0  # naive means UTC
    assert parse_time("2023-11-14 23:13:20+01:00") == T0
    assert parse_time("2023-11-14") == T0 - (22 * 3600 + 13 * 60 + 20) * SEC
    assert parse_time("2023-11-14T22:13:20.123456789Z") == T0 + 123_456_789
    assert parse_time("20231114T221320,25Z") == T0 + SEC // 4
    for ns in (T0, T0 + 1, T0 + 120_000_000, T0 + 123_456_000, 0):
        assert parse_time(format_time(ns)) == ns
    assert format_time(T0) == "2023-11-14T22:13:20Z"
    assert format_time(T0 + 120_000_000) == "2023-11-14T22:13:20.120Z"
    assert format_time(T0 + 1) == "2023-11-14T22:13:20.000000001Z"


def test_location_arg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert location_arg("s3://bucket/key", "vm1") == "s3://bucket/key"
    assert location_arg("/data/a", None) == "/data/a"
    assert location_arg("/data/my file", "vm1") == "file://vm1/data/my%20file"
    assert location_arg("x/../y.csv", None) == str(tmp_path / "y.csv")
    assert location_arg("y.csv", "vm1") == file_location("vm1", tmp_path / "y.csv")


# ------------------------------------------------------------------ plans


SINGLE_FILTERS: list[dict[str, object]] = [
    {"user": "alice"},
    {"location": "file://vm1/data/a/x.csv"},
    {"location": "/data/a/x.csv"},
    {"under": "file://vm1/data/a"},
    {"under": "/data/a"},
    {"location": "run://vm1/step1"},
    {"under": "run://vm1"},
    {"since_ns": T0},
    {"until_ns": T0},
    {"since_ns": T0, "until_ns": T0 + SEC},
    {"code_hash": C1.digest},
    {"agent": A1},
    {"op": "write"},
    {"run_id": "step1"},
]


@pytest.mark.parametrize("kwargs", SINGLE_FILTERS, ids=lambda k: "+".join(k))
@pytest.mark.parametrize("limit", [None, 10])
def test_single_filters_are_index_driven(store: IndexStore, kwargs: dict[str, object], limit: int | None) -> None:
    plan = query_plan(store, QueryFilter(**kwargs, limit=limit))  # type: ignore[arg-type]
    on_records = [step for step in plan if "records" in step]
    assert on_records, plan
    for step in on_records:
        assert step.startswith("SEARCH records USING"), plan  # never "SCAN records" (a full scan)
        assert "INDEX" in step, plan


def test_combined_filters_are_index_driven(store: IndexStore) -> None:
    for kwargs in (
        {"user": "bob", "op": "write"},
        {"agent": A1, "under": "/data/a"},
        {"code_hash": C1.digest, "since_ns": T0, "until_ns": T0 + 5 * SEC},
        {"under": "/data", "since_ns": T0, "until_ns": T0 + 7 * SEC},
        {"location": "/data/a/x.csv", "agent": A2},
    ):
        plan = query_plan(store, QueryFilter(**kwargs, limit=50))  # type: ignore[arg-type]
        assert all(step.startswith("SEARCH records USING") for step in plan if "records" in step), (kwargs, plan)


# ------------------------------------------------------------------ lineage


def _ids(graph_nodes: list[dict[str, str]]) -> list[str]:
    return [n["id"] if n["kind"] == "run" else _path(n["location"]) for n in graph_nodes]


def test_lineage_upstream_from_report(store: IndexStore) -> None:
    report = file_location("vm1", "/p/report.pdf")
    graph = lineage(store, report, "upstream", 10)
    assert _ids(graph.nodes) == [
        "/p/report.pdf", "run:step3", "/p/out.csv", "run:step2", "/p/mid.csv", "/p/params.json", "run:step1",
        "/p/raw.csv",
    ]  # fmt: skip
    edges = {(e["from"].rsplit("/", 1)[-1], e["to"].rsplit("/", 1)[-1], e["kind"]) for e in graph.edges}
    assert edges == {
        ("run:step3", "report.pdf", "output"),
        ("out.csv", "run:step3", "input"),
        ("run:step2", "out.csv", "output"),
        ("mid.csv", "run:step2", "input"),
        ("params.json", "run:step2", "input"),
        ("run:step1", "mid.csv", "output"),
        ("raw.csv", "run:step1", "input"),
    }
    run_node = next(n for n in graph.nodes if n["kind"] == "run")
    assert run_node == {"id": "run:step3", "kind": "run", "run_id": "step3", "label": "python3 /opt/step3.py"}
    assert graph.nodes[0] == {"id": report, "kind": "file", "location": report, "label": "report.pdf"}
    assert not graph.truncated


def test_lineage_depth_limits(store: IndexStore) -> None:
    report = file_location("vm1", "/p/report.pdf")
    assert _ids(lineage(store, report, "upstream", 0).nodes) == ["/p/report.pdf"]
    assert _ids(lineage(store, report, "upstream", 1).nodes) == ["/p/report.pdf", "run:step3", "/p/out.csv"]
    two = lineage(store, report, "upstream", 2)
    assert _ids(two.nodes)[-3:] == ["run:step2", "/p/mid.csv", "/p/params.json"]
    assert "run:step1" not in _ids(two.nodes)


def test_lineage_downstream_from_raw(store: IndexStore) -> None:
    raw = file_location("vm1", "/p/raw.csv")
    assert _ids(lineage(store, raw, "downstream", 1).nodes) == ["/p/raw.csv", "run:step1", "/p/mid.csv"]
    graph = lineage(store, raw, "downstream", 10)
    assert _ids(graph.nodes) == [
        "/p/raw.csv", "run:step1", "/p/mid.csv", "run:step2", "/p/out.csv", "run:step3", "/p/report.pdf",
    ]  # fmt: skip
    assert {e["kind"] for e in graph.edges} == {"input", "output"}
    assert {"from": raw, "to": "run:step1", "kind": "input"} in graph.edges
    # A host-agnostic path starts from that path on every host that has it.
    assert _ids(lineage(store, "/p/raw.csv", "downstream", 1).nodes) == _ids(lineage(store, raw, "downstream", 1).nodes)


def test_lineage_cycles_terminate(store: IndexStore) -> None:
    loop = file_location("vm1", "/p/loop.csv")
    for direction in ("upstream", "downstream"):
        graph = lineage(store, loop, direction, 50)
        assert _ids(graph.nodes) == ["/p/loop.csv", "run:loop"]
        assert len(graph.edges) == 2


def test_lineage_of_unknown_file_and_bad_arguments(store: IndexStore) -> None:
    graph = lineage(store, file_location("vm9", "/nowhere"), "upstream", 3)
    assert len(graph.nodes) == 1 and graph.edges == []
    with pytest.raises(BadDirection):
        lineage(store, "/p/raw.csv", "sideways", 1)
    with pytest.raises(BadDepth):
        lineage(store, "/p/raw.csv", "upstream", -1)
    with pytest.raises(BadLocation):
        lineage(store, "p/raw.csv", "upstream", 1)


def test_lineage_max_nodes(store: IndexStore) -> None:
    graph = lineage(store, file_location("vm1", "/p/report.pdf"), "upstream", 10, max_nodes=3)
    assert graph.truncated and graph.to_json()["truncated"] is True
    assert len(graph.nodes) == 3


def test_lineage_json_and_dot(store: IndexStore) -> None:
    graph = lineage(store, file_location("vm1", "/p/report.pdf"), "upstream", 1)
    data = graph.to_json()
    assert data == {"nodes": graph.nodes, "edges": graph.edges}
    dot = graph.to_dot()
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    assert '"run:step3" -> "file://vm1/p/report.pdf" [label="output"];' in dot
    assert '"file://vm1/p/out.csv" -> "run:step3" [label="input"];' in dot
    assert 'label="python3 /opt/step3.py"' in dot
    quoted = type(graph)(nodes=[{"id": 'a"b', "kind": "file", "location": 'a"b', "label": "x\\y"}]).to_dot()
    assert '"a\\"b"' in quoted and '"x\\\\y"' in quoted
