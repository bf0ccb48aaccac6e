"""The index built from a real chain and IPFS: verification, problems, rebuild, lineage, CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provanchor.formats import dagcbor
from provanchor.formats.cid import CID, DAG_CBOR
from provanchor.home import Home
from provanchor.index.query import QueryFilter, run_query
from provanchor.index.store import IndexStore
from provanchor.index.sync import Indexer
from provanchor.localnet.devagents import enroll_agent
from provanchor.network import load_network
from provanchor.pipeline.session import AgentSession
from provanchor.records import Capture, CaptureBackend, Change, ContentRef, Op

PASSWORD = "index-test"
CLI = [sys.executable, "-m", "provanchor.cli.main"]
T0 = 1_700_000_000 * 10**9


def agent_home(net_home: Home, root: Path, name: str) -> Home:
    return enroll_agent(net_home, root / name, name, PASSWORD)[0]


def change(path: str, user: str, t: int, op: Op = Op.WRITE) -> Change:
    data = f"{path}@{t}".encode()
    import hashlib

    return Change(
        time=t,
        host="h1",
        location=f"file://h1{path}",
        op=op,
        user=user,
        capture=Capture(backend=CaptureBackend.MANUAL, attributed=False, reason="test"),
        after=ContentRef(sha256=hashlib.sha256(data).digest(), size=len(data)),
    )


@pytest.fixture(scope="module")
def populated(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two honest agents with interleaved changes, and one whose log carries tampered records."""
    root = tmp_path_factory.mktemp("agents")
    a, b, c = (agent_home(net_home, root, n) for n in ("alpha", "beta", "gamma"))
    with (
        AgentSession.open(a, password=PASSWORD, batch_size=4) as sa,
        AgentSession.open(b, password=PASSWORD, batch_size=4) as sb,
    ):
        for i in range(10):
            sa.record(change(f"/data/a/f{i}", "alice", T0 + i * 10**9))
            sb.record(change(f"/data/ab/g{i}", "bob", T0 + i * 10**9 + 5 * 10**8))
        sa.flush()
        sb.flush()
        addresses = (sa.address.lower(), sb.address.lower())
    with AgentSession.open(c, password=PASSWORD, batch_size=8) as sc:
        for i in range(6):
            sc.record(change(f"/data/c/h{i}", "carol", T0 + i * 10**9))
        # A bad signature on record 1, and a manifest that lists records 4 and 5 swapped.
        sc.spool._db.execute("UPDATE records SET signature = ? WHERE seq = 1", (b"\x01" * 65,))
        sc.anchorer.cut(limit=4)
        batch = sc.anchorer.cut(limit=2)
        assert batch is not None
        manifest = dagcbor.decode(batch.manifest)
        assert isinstance(manifest, dict)
        records, signatures = manifest["records"], manifest["signatures"]
        manifest["records"] = [records[1], records[0]]  # type: ignore[index]
        manifest["signatures"] = [signatures[1], signatures[0]]  # type: ignore[index]
        forged = dagcbor.encode(manifest)
        sc.spool._db.execute(
            "UPDATE batches SET manifest = ?, manifest_cid = ? WHERE id = ?",
            (forged, CID.for_block(DAG_CBOR, forged).encode(), batch.id),
        )
        sc.flush()
        tampered = sc.address.lower()
    return {"honest": addresses, "tampered": tampered}


def test_sync_indexes_verified_records_and_lists_problems(
    net_home: Home, populated: dict[str, object], tmp_path: Path
) -> None:
    network = load_network(net_home)
    with IndexStore.open(tmp_path / "index.sqlite", must_exist=False) as store:
        report = Indexer(store, network).sync()
        assert report.records == 10 + 10 + 3  # gamma: 0, 2, 3 valid; 1 badly signed; 4, 5 swapped
        problems = store.problems()
        tampered = populated["tampered"]
        reasons = {(p.seq, p.reason.split(":")[0]) for p in problems if p.agent == tampered}
        assert any(seq == 1 and "signature" in reason for seq, reason in reasons), problems
        assert {p.seq for p in problems if p.agent == tampered} >= {1, 4, 5}
        gamma = run_query(store, QueryFilter(agent=str(tampered)))
        assert [r.seq for r in gamma] == [0, 2, 3]
        # Filters: prefix without siblings, users, time bounds.
        under_a = run_query(store, QueryFilter(under="/data/a"))
        assert len(under_a) == 10 and all("/data/a/" in r.location for r in under_a)
        assert len(run_query(store, QueryFilter(under="/data/ab"))) == 10
        assert len(run_query(store, QueryFilter(user="bob", since_ns=T0 + 2 * 10**9, until_ns=T0 + 4 * 10**9))) == 2
        # A second sync finds nothing new.
        again = Indexer(store, network).sync()
        assert again.records == 0 and store.record_count() == 23


def test_rebuild_answers_every_query_identically(net_home: Home, populated: dict[str, object], tmp_path: Path) -> None:
    env = {**os.environ, "PROVANCHOR_HOME": str(net_home.root)}
    index = tmp_path / "index.sqlite"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args, "--index", str(index)], env=env, capture_output=True, text=True, timeout=120
        )

    assert cli("index", "sync").returncode == 0
    queries = [
        ["--user", "alice"],
        ["--under", "/data/a"],
        ["--agent", str(populated["tampered"])],
        ["--since", "2023-11-14T22:13:22Z", "--until", "1700000005"],
        ["--op", "write", "--limit", "5"],
    ]
    before = [json.loads(cli("query", *q, "--json").stdout) for q in queries]
    rows = before[0]
    assert rows and set(rows[0]) >= {
        "record_id",
        "agent",
        "seq",
        "time",
        "user",
        "location",
        "op",
        "before_sha256",
        "after_sha256",
        "after_cid",
        "code_hash",
        "run_id",
        "checkpoint_size",
        "tx",
    }
    problems = json.loads(cli("index", "problems", "--json").stdout)
    rebuilt = cli("index", "rebuild", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    after = [json.loads(cli("query", *q, "--json").stdout) for q in queries]
    assert after == before
    assert [p["reason"] for p in json.loads(cli("index", "problems", "--json").stdout)] == [
        p["reason"] for p in problems
    ]
    # Bad input is one line.
    for args, needle in (
        (["query", "--since", "yesterday-ish"], "yesterday"),
        (["query", "--code-hash", "xyz"], "code"),
        (["query", "--since", "1700000010", "--until", "1700000000"], "since"),
        (["query", "--agent", "0x123"], "agent"),
        (["query", "--agent", "0x" + "33" * 20], "unknown agent"),
    ):
        done = cli(*args)
        assert done.returncode != 0 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert needle in done.stderr.lower()
    # Without --no-sync, query builds a missing index (it syncs first); with it, a missing index is an error.
    missing = subprocess.run(
        [*CLI, "query", "--no-sync", "--index", str(tmp_path / "none.sqlite")], env=env, capture_output=True, text=True
    )
    assert missing.returncode != 0 and "index sync" in missing.stderr
    other = IndexStore.open(tmp_path / "foreign.sqlite", must_exist=False)
    other.bind(1, "0x" + "22" * 20)
    other.close()
    foreign = subprocess.run(
        [*CLI, "index", "sync", "--index", str(tmp_path / "foreign.sqlite")], env=env, capture_output=True, text=True
    )
    assert foreign.returncode != 0 and foreign.stderr.count("\n") == 1


def test_lineage_through_a_recorded_three_step_pipeline(net_home: Home, tmp_path: Path) -> None:
    home = agent_home(net_home, tmp_path, "pipeline")
    work = tmp_path / "work"
    work.mkdir()
    (work / "raw.csv").write_text("a,b\n1,2\n")
    (work / "shout.py").write_text("import sys\nopen(sys.argv[2], 'w').write(open(sys.argv[1]).read().upper())\n")
    env = {**os.environ, "PROVANCHOR_HOME": str(home.root), "PROVANCHOR_PASSWORD": PASSWORD}
    steps = [
        ["cp", "raw.csv", "staged.csv"],
        ["python3", "shout.py", "staged.csv", "clean.csv"],
        ["sh", "-c", "wc -l clean.csv > report.txt"],
    ]
    for step in steps:
        done = subprocess.run(
            [*CLI, "run", "--", *step], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    assert subprocess.run([*CLI, "anchor", "--flush"], env=env, capture_output=True).returncode == 0
    index = tmp_path / "index.sqlite"
    assert subprocess.run([*CLI, "index", "sync", "--index", str(index)], env=env).returncode == 0
    up = json.loads(
        subprocess.run(
            [*CLI, "lineage", str(work / "report.txt"), "--upstream", "--depth", "5", "--json", "--index", str(index)],
            env=env,
            capture_output=True,
            text=True,
        ).stdout
    )
    files = {n["location"].rsplit("/", 1)[1] for n in up["nodes"] if n["kind"] == "file"}
    assert files == {"report.txt", "clean.csv", "staged.csv", "raw.csv"}
    assert sum(1 for n in up["nodes"] if n["kind"] == "run") == 3
    down = json.loads(
        subprocess.run(
            [*CLI, "lineage", str(work / "raw.csv"), "--downstream", "--depth", "1", "--json", "--index", str(index)],
            env=env,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert {n["location"].rsplit("/", 1)[1] for n in down["nodes"] if n["kind"] == "file"} == {"raw.csv", "staged.csv"}
    dot = subprocess.run(
        [*CLI, "lineage", str(work / "report.txt"), "--upstream", "--dot", "--index", str(index)],
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert dot.startswith("digraph") and "raw.csv" in dot
    time.sleep(0)  # keep the module's network quiet for the next test
    with sqlite3.connect(index) as db:
        assert db.execute("SELECT COUNT(*) FROM run_edges").fetchone()[0] >= 6
