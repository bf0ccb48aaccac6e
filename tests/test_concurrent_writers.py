"""Many writers, one spool, exactly once (issue 12).

The capture service runs while `record`, `run` and `snapshot take` processes
write the same agent's spool at the same time, and one of them is SIGKILLed
half way. Afterwards every id any command printed is queryable and verifies,
`seq` has no gap or repeat, nothing is pending and the spool is sound. Real
processes, a real chain and a real IPFS daemon; several seeds.

Also the bad input of this area: a second service on one home or one key, a
lock left by a SIGKILL, and a spool made read-only.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.agent_service import CLI, Agent
from helpers.waiting import wait_until

from provanchor.chain.client import LedgerClient
from provanchor.home import Home
from provanchor.network import load_network
from provanchor.pipeline.session import spool_path
from provanchor.pipeline.spool import Spool
from provanchor.records import decode_record
from provanchor.verify.api import VerifyContext, verify_record

BURST_FILES = 60


def status_of(agent: Agent) -> dict[str, Any]:
    path = agent.home.root / "agents" / agent.identity.address.lower() / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def quiet(agent: Agent, previous: list[int]) -> bool:
    """Nothing pending, and the spooled count unchanged since the last look."""
    current = status_of(agent)
    spooled = int(current.get("records_spooled", -1))
    settled = current.get("changes_pending") == 0 and previous and previous[-1] == spooled
    previous.append(spooled)
    return bool(settled)


def cli(agent: Agent, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args], env=agent.env(), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def burst(directory: Path, count: int) -> subprocess.Popen[str]:
    script = (
        "import sys, time\n"
        "d, n = sys.argv[1], int(sys.argv[2])\n"
        "for i in range(n):\n"
        "    open(f'{d}/burst-{i}.txt', 'w').write(f'line {i}\\n' * (i + 1))\n"
        "    time.sleep(0.01)\n"
        "time.sleep(0.3)\n"  # stay alive while the agent names the writer from /proc
    )
    return subprocess.Popen([sys.executable, "-c", script, str(directory), str(count)], text=True)


def printed_ids(output: str) -> list[str]:
    data = json.loads(output)
    return [data["record_id"]] if data.get("record_id") else []


@pytest.mark.parametrize("seed", [11, 12])
def test_writers_beside_the_service_lose_nothing(net_home: Home, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    agent = Agent(net_home, tmp_path, f"stress-{seed}", "auto")
    agent.start()
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.csv").write_text("a,b\n1,2\n3,4\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for i in range(20):
        (tree / ("sub" if i % 2 else "") / f"t{i}.bin").write_bytes(os.urandom(rng.randint(10, 5000)))

    jobs: list[tuple[str, list[str], Path | None]] = []
    for i in range(4):
        target = work / f"manual-{i}.txt"
        target.write_text(f"manual {i} {seed}\n")
        jobs.append(("record", ["record", "--location", str(target), "--op", "write", "--json",
                                *(["--flush"] if i % 2 else [])], None))
    for i in range(2):
        jobs.append(("run", ["run", "--json", "--", "sh", "-c", f"sort in.csv > out-{i}.csv"], work))
    jobs.append(("snapshot", ["snapshot", "take", str(tree), "--json"], None))
    jobs.append(("anchor", ["anchor", "--flush", "--json"], None))
    rng.shuffle(jobs)
    victim = rng.choice([i for i, job in enumerate(jobs) if job[0] in ("record", "snapshot", "run", "anchor")])

    writer = burst(agent.data, BURST_FILES)
    running: list[subprocess.Popen[str]] = []
    for _, args, cwd in jobs:
        running.append(cli(agent, *args, cwd=cwd))
        time.sleep(rng.uniform(0.0, 0.3))
    time.sleep(rng.uniform(0.5, 2.5))
    running[victim].send_signal(signal.SIGKILL)

    ids: list[str] = []
    for i, process in enumerate(running):
        out, err = process.communicate(timeout=300)
        if i == victim and process.returncode == -signal.SIGKILL:
            continue
        assert process.returncode == 0, f"{jobs[i][0]} failed: {err}"
        assert "CheckpointExists" not in err
        ids += printed_ids(out)
    assert writer.wait(timeout=120) == 0
    seen: list[int] = []
    wait_until(lambda: quiet(agent, seen), timeout=120, what="the agent to spool the burst", poll=0.5)
    agent.stop()

    # What the killed process left in the spool is anchored by the next flush, by whoever runs it.
    final = subprocess.run([*CLI, "anchor", "--flush", "--json"], env=agent.env(), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["pending"] == 0

    path = spool_path(agent.home, agent.identity.address)
    spool = Spool(path, readonly=True)
    try:
        assert spool.integrity_problems() == []
        count = spool.count_records()
    finally:
        spool.close()
    records = agent.records()
    assert [r.seq for r in records] == list(range(count))
    for before, after in itertools.pairwise(records):
        assert after.prev == before.hash
    assert summary["size"] == summary["records"] == count
    burst_paths = {str(agent.data / f"burst-{i}.txt") for i in range(BURST_FILES)}
    recorded_paths = {r.location.rsplit("/", 1)[-1] for r in records if isinstance(r.location, str)}
    assert {p.rsplit("/", 1)[-1] for p in burst_paths} <= recorded_paths

    network = load_network(agent.home)
    ledger = LedgerClient(network.rpc_url, network.contract)
    checkpoint = ledger.latest_checkpoint(agent.identity.address)
    assert checkpoint is not None and checkpoint.size == count

    rows = json.loads(
        subprocess.run([*CLI, "query", "--agent", agent.identity.address, "--json"], env=agent.env(),
                       capture_output=True, text=True, check=True).stdout
    )
    indexed = {row["record_id"]: row["seq"] for row in rows}
    assert sorted(indexed.values()) == list(range(count))
    assert ids and set(ids) <= set(indexed)
    with VerifyContext(network.rpc_url, network.contract, ipfs_api=network.ipfs_api) as ctx:
        for record_id in ids:
            report = verify_record(ctx, record_id)
            assert report.ok, report.render()


def test_a_second_service_is_refused_with_the_running_pid(net_home: Home, tmp_path: Path) -> None:
    agent = Agent(net_home, tmp_path, "single", "auto")
    agent.start()
    try:
        assert agent.process is not None
        second = subprocess.run([*CLI, "agent", "start", "--config", str(agent.config)], env=agent.env(),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert f"pid {agent.process.pid}" in lines[0] and "Traceback" not in second.stderr

        # The same key from another data directory: one log per agent, so refused too.
        other = tmp_path / "other-home"
        other.mkdir()
        (other / "network.json").write_text((agent.home.root / "network.json").read_text())
        config = tmp_path / "other.toml"
        config.write_text(agent.config.read_text().replace(f'home = "{agent.home.root}"', f'home = "{other}"')
                          .replace("[agent]\n", f'[agent]\nkeystore = "{agent.identity.keystore}"\n'))
        third = subprocess.run([*CLI, "agent", "start", "--config", str(config)], env=agent.env(),
                               capture_output=True, text=True, timeout=60)
        assert third.returncode != 0
        assert f"pid {agent.process.pid}" in third.stderr and "keystore" in third.stderr
        assert len(third.stderr.strip().splitlines()) == 1
    finally:
        agent.stop()


def test_a_killed_service_leaves_no_lock_and_loses_nothing(net_home: Home, tmp_path: Path) -> None:
    agent = Agent(net_home, tmp_path, "killed", "auto")
    agent.start()
    for i in range(5):
        (agent.data / f"k{i}.txt").write_text(f"{i}\n")
    seen: list[int] = []
    wait_until(lambda: quiet(agent, seen), timeout=60, what="the agent to spool the files", poll=0.5)
    spooled = int(status_of(agent)["records_spooled"])
    assert agent.process is not None
    agent.process.send_signal(signal.SIGKILL)
    agent.process.wait()

    agent.start()  # the kernel released the locks with the process: no stale lock to clean by hand
    agent.stop()
    records = agent.records()
    assert len(records) >= spooled and [r.seq for r in records] == list(range(len(records)))
    assert agent.anchored() == len(records)


def test_a_read_only_spool_is_one_line_and_keeps_its_records(net_home: Home, tmp_path: Path) -> None:
    agent = Agent(net_home, tmp_path, "readonly", "auto")
    target = tmp_path / "a.txt"
    target.write_text("first\n")
    first = subprocess.run([*CLI, "record", "--location", str(target), "--op", "create", "--json"],
                           env=agent.env(), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    path = spool_path(agent.home, agent.identity.address)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    files = [p for p in path.parent.iterdir() if p.name.startswith("spool.sqlite")]
    immutable = subprocess.run(["chattr", "+i", *map(str, files)], capture_output=True, text=True)
    if immutable.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {immutable.stderr.strip()}")
    try:
        target.write_text("second\n")
        second = subprocess.run([*CLI, "record", "--location", str(target), "--op", "write"],
                                env=agent.env(), capture_output=True, text=True)
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "read-only" in lines[0] and str(path) in lines[0], second.stderr
    finally:
        subprocess.run(["chattr", "-i", *map(str, files)], check=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert [r.seq for r in agent.records()] == [0]
    assert decode_record(spool_record(path)).op.value == "create"


def spool_record(path: Path) -> bytes:
    spool = Spool(path, readonly=True)
    try:
        record = spool.record_by_seq(0)
        assert record is not None
        return record.data
    finally:
        spool.close()


def test_anchor_without_flush_reads_the_spool_read_only(net_home: Home, tmp_path: Path) -> None:
    agent = Agent(net_home, tmp_path, "status-only", "auto")
    agent.start()
    try:
        (agent.data / "x.txt").write_text("x\n")
        seen: list[int] = []
        wait_until(lambda: quiet(agent, seen), timeout=60, what="the agent to spool x.txt", poll=0.5)
        env = {k: v for k, v in agent.env().items() if k != "PROVANCHOR_PASSWORD"}  # no key needed to look
        shown = subprocess.run([*CLI, "anchor", "--json"], env=env, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["records"] >= 1
        assert agent.process is not None
        held = [os.readlink(f"/proc/{agent.process.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{agent.process.pid}/fd")]
        assert not [name for name in held if "spool.sqlite" in name and name.endswith("(deleted)")]
        (agent.data / "y.txt").write_text("y\n")
        record = subprocess.run([*CLI, "record", "--location", str(agent.data / "y.txt"), "--op", "write", "--json"],
                                env=agent.env(), capture_output=True, text=True, timeout=60)
        assert record.returncode == 0, record.stderr
    finally:
        agent.stop()
    records = agent.records()
    assert [r.seq for r in records] == list(range(len(records)))
    assert agent.anchored() == len(records)
