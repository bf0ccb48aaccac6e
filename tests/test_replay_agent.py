"""Replay against the real agent: random file operations by several processes, replayed at many instants.

The agent runs as a service with fanotify and takes its periodic snapshot at
start. Four worker processes at a time (one of them as the user `nobody`)
create, write, append, truncate, rename (sometimes over another file), chmod
and delete files; after each round the test waits until the agent has
spooled everything, notes the time and keeps its own copy of the tree. Once
the agent has stopped and anchored, a replay at each noted time must equal
that copy, file for file, byte for byte and mode for mode; and a replay of
only nobody's changes must be the start-up snapshot plus nobody's files.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.agent_service import Agent
from test_replay_state import tree_of

from provanchor.home import Home
from provanchor.hostid import default_host_id
from provanchor.records import file_location
from provanchor.replay import open_sources, replay_state

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3"]
WORKER = r"""
import os, random, sys, time
seed, root, prefix, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
rng = random.Random(seed)
def mine():
    found = []
    for dirpath, _, names in os.walk(root):
        found += [os.path.join(dirpath, n) for n in names if n.startswith(prefix)]
    return sorted(found)
for step in range(count):
    files = mine()
    op = rng.choice(["create", "create", "write", "append", "truncate", "rename", "chmod", "delete"])
    if op == "create" or not files:
        sub = rng.choice(["", "a", "a/b", "c"])
        os.makedirs(os.path.join(root, sub), exist_ok=True)
        path = os.path.join(root, sub, f"{prefix}{seed}_{step}.dat")
        with open(path, "wb") as f:
            f.write(os.urandom(rng.choice([0, 10, 1000, 70000, 300000])))
        continue
    path = rng.choice(files)
    if op == "write":
        with open(path, "wb") as f:
            f.write(os.urandom(rng.randint(1, 5000)))
    elif op == "append":
        with open(path, "ab") as f:
            f.write(os.urandom(rng.randint(1, 3000)))
    elif op == "truncate":
        os.truncate(path, os.path.getsize(path) // 2)
    elif op == "rename":
        if len(files) > 1 and rng.random() < 0.3:
            target = rng.choice([f for f in files if f != path])  # over another of this worker's files
        else:
            sub = os.path.join(root, rng.choice(["", "a", "c"]))
            os.makedirs(sub, exist_ok=True)
            target = os.path.join(sub, f"{prefix}{seed}_{step}_mv.dat")
        os.rename(path, target)
    elif op == "chmod":
        os.chmod(path, rng.choice([0o600, 0o640, 0o644, 0o755]))
    elif op == "delete":
        os.unlink(path)
time.sleep(0.3)  # stay alive while the agent reads the last events: it names the writer from /proc
"""


def wait_until_spooled(agent: Agent, timeout: float = 60) -> None:
    """Until two status updates after the files settled agree: nothing pending, nothing new spooled."""
    status = agent.home.root / "agents" / agent.identity.address.lower() / "status.json"
    settled = time.time() + 0.6  # the agent's settle time (0.5 s) for writes seen without a close
    previous: dict[str, object] | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = json.loads(status.read_text())
        if current["updated"] >= settled and current["changes_pending"] == 0:
            if (
                previous is not None
                and previous["updated"] != current["updated"]
                and previous["records_spooled"] == current["records_spooled"]
            ):
                return
            previous = current
        time.sleep(0.1)
    raise AssertionError("the agent never went quiet")


def test_replay_equals_the_tree_at_every_instant(net_home: Home, tmp_path: Path) -> None:
    # Outside pytest's private temp directory, so that a worker running as `nobody` can write here.
    base = Path(tempfile.mkdtemp(prefix="replay-agent-"))
    run_random_operations(net_home, base, tmp_path)
    shutil.rmtree(base)  # kept when the test fails: the agent's spool and the tree explain the failure


def run_random_operations(net_home: Home, base: Path, tmp_path: Path) -> None:
    os.chmod(base, 0o755)
    agent = Agent(net_home, base, "random-ops", "fanotify", extra="[snapshot]\ninterval = 3600\n")
    data = agent.data.resolve()
    for sub in ("a", "a/b", "c"):  # shared by every worker, the unprivileged one included
        (data / sub).mkdir()
    for directory in (data, data / "a", data / "a" / "b", data / "c"):
        os.chmod(directory, 0o777)
    (data / "seed.txt").write_bytes(b"there before the agent\n")
    (data / "a" / "big.bin").write_bytes(os.urandom(600_000))
    os.symlink("seed.txt", data / "link")
    snapshot_files = tree_of(data)
    agent.start()
    status = agent.home.root / "agents" / agent.identity.address.lower() / "status.json"
    deadline = time.monotonic() + 60
    while json.loads(status.read_text()).get("snapshots_taken", 0) < 1:
        assert time.monotonic() < deadline, "the start-up snapshot was never taken"
        time.sleep(0.2)
    rng = random.Random(1234)
    instants: list[tuple[int, dict[str, tuple[str, bytes | str, int]]]] = []
    try:
        for round_number in range(8):
            workers = [
                subprocess.Popen([sys.executable, "-c", WORKER, str(rng.randrange(10**6)), str(data), f"w{i}_", "12"])
                for i in range(3)
            ]
            nobody = [*AS_NOBODY, "-c", WORKER, str(rng.randrange(10**6)), str(data), "n_", "8"]
            workers.append(subprocess.Popen(nobody))
            for worker in workers:
                assert worker.wait(timeout=60) == 0
            if round_number == 3:
                (data / "seed.txt").write_bytes(b"changed by the test itself\n")
            wait_until_spooled(agent)
            instants.append((time.time_ns(), tree_of(data)))
            time.sleep(0.05)
    finally:
        agent.stop()
    assert len({json.dumps(sorted(t)) for _, t in instants}) > 4  # the tree really changed between instants
    location = file_location(default_host_id(), str(data))
    with open_sources(agent.home) as sources:
        for number, (at, expected) in enumerate(instants):
            out = tmp_path / f"replay-{number}"
            result = replay_state(sources.records, sources.ipfs, sources.ledger, location, at, out)
            assert result.ok, ([b.to_json() for b in result.breaks] + result.problems, agent.stderr[-3000:])
            assert result.snapshot is not None
            got = tree_of(out)
            differing = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
            assert not differing, f"instant {number} at {at}: {differing}; agent log: {agent.stderr[-3000:]}"
        # Only nobody's changes on the start-up snapshot: its files as they really are, everyone else's absent,
        # and no break, since nobody never touched another worker's file.
        at, final = instants[-1]
        out = tmp_path / "nobody-only"
        result = replay_state(sources.records, sources.ipfs, sources.ledger, location, at, out, user="nobody")
        assert result.ok, [b.to_json() for b in result.breaks] + result.problems
        expected = {k: v for k, v in final.items() if os.path.basename(k).startswith("n_")}
        assert expected, "the unprivileged worker wrote nothing"
        expected.update(snapshot_files)
        assert tree_of(out) == expected
