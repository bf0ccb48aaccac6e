"""Soak: many writers on one agent's spool for minutes, with kills, and zero loss at the end.

The capture service runs on its own local network while, round after round,
bursts of files are written under its watched directory and `record`, `run`,
`snapshot take` and `anchor --flush` processes run beside it; in every round
one of them is SIGKILLed at a random moment. At the end the service is
stopped, one `anchor --flush` finishes what the killed ones left, and the
benchmark checks, and prints:

- records per second spooled over the soak (every writer together) and the
  anchored total;
- every record id a command printed is in the spool, anchored and indexed;
- seq runs 0..n-1 with no gap or repeat, every `prev` links, the spool's
  integrity check is clean and the chain's latest checkpoint covers all of it.

`python benchmarks/soak_writers.py --minutes 10 --seed 1`. Exits 1 on any loss.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provanchor.agent.service import status_path
from provanchor.chain.client import LedgerClient
from provanchor.home import Home
from provanchor.localnet import lifecycle
from provanchor.localnet.devagents import enroll_agent
from provanchor.network import load_network
from provanchor.pipeline.session import spool_path
from provanchor.pipeline.spool import Spool
from provanchor.records import decode_record

PASSWORD = "soak"
CLI = [sys.executable, "-m", "provanchor.cli.main"]
print = functools.partial(print, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--burst", type=int, default=300, help="files written per round")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="provanchor-soak-") as tmp:
        root = Path(tmp)
        net = Home(root / "net")
        lifecycle.up(net)
        try:
            return soak(net, root, rng, args.minutes * 60, args.burst)
        finally:
            lifecycle.down(net)


def soak(net: Home, root: Path, rng: random.Random, seconds: float, burst: int) -> int:
    home, identity = enroll_agent(net, root / "agent", "soak", PASSWORD)
    env = {**os.environ, "PROVANCHOR_HOME": str(home.root), "PROVANCHOR_PASSWORD": PASSWORD}
    data, work, tree = root / "data", root / "work", root / "tree"
    for directory in (data, work, tree):
        directory.mkdir()
    (work / "in.csv").write_text("a,b\n" + "".join(f"{i},{i * i}\n" for i in range(1000)))
    for i in range(200):
        (tree / f"t{i}.bin").write_bytes(os.urandom(rng.randint(100, 20_000)))
    config = root / "agent.toml"
    config.write_text(
        f'[agent]\nname = "soak"\nhome = "{home.root}"\n[capture]\npaths = ["{data}"]\nsettle_seconds = 0.5\n'
        '[batch]\ninterval = 0.5\n[metrics]\nlisten = ""\n'
    )
    service = subprocess.Popen([*CLI, "agent", "start", "--config", str(config)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    status_file = status_path(home, identity.address)
    while not (status_file.exists() and json.loads(status_file.read_text()).get("pid") == service.pid):
        time.sleep(0.2)
    started = time.monotonic()
    printed: list[str] = []
    killed = 0
    rounds = 0
    while time.monotonic() - started < seconds:
        rounds += 1
        jobs: list[tuple[list[str], Path | None]] = []
        for i in range(3):
            target = work / f"manual-{rounds}-{i}.txt"
            target.write_text(f"round {rounds} item {i}\n")
            jobs.append((["record", "--location", str(target), "--op", "write", "--json"], None))
        jobs.append((["run", "--json", "--", "sh", "-c", f"sort -r in.csv > out-{rounds % 5}.csv"], work))
        jobs.append((["anchor", "--flush", "--json"], None))
        if rounds % 3 == 0:
            (tree / f"t{rng.randrange(200)}.bin").write_bytes(os.urandom(rng.randint(100, 20_000)))
            jobs.append((["snapshot", "take", str(tree), "--json"], None))
        writer = subprocess.Popen([sys.executable, "-c", (
            "import sys\n"
            "d, r, n = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
            "for i in range(n):\n"
            "    open(f'{d}/r{r}-{i % 50}.txt', 'a').write(f'{r} {i}\\n')\n"
        ), str(data), str(rounds), str(burst)])
        running = [subprocess.Popen([*CLI, *job], env=env, cwd=cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for job, cwd in jobs]
        time.sleep(rng.uniform(0.5, 3.0))
        victim = rng.randrange(len(running))
        running[victim].send_signal(signal.SIGKILL)
        for i, process in enumerate(running):
            out, err = process.communicate(timeout=600)
            if i == victim and process.returncode == -signal.SIGKILL:
                killed += 1
                continue
            if process.returncode != 0:
                print(f"FAIL: {' '.join(jobs[i][0][:2])} exited {process.returncode}: {err.strip()}")
                return 1
            record_id = json.loads(out).get("record_id")
            if record_id:
                printed.append(record_id)
        writer.wait()
        print(f"round {rounds}: {len(printed)} ids printed so far, {killed} processes killed")
    elapsed = time.monotonic() - started
    service.send_signal(signal.SIGTERM)
    service.communicate(timeout=300)
    final = subprocess.run([*CLI, "anchor", "--flush", "--json"], env=env, capture_output=True, text=True)
    if final.returncode != 0:
        print(f"FAIL: final anchor --flush: {final.stderr.strip()}")
        return 1
    return check(home, identity.address, env, printed, elapsed, rounds, killed, json.loads(final.stdout))


def check(home: Home, address: str, env: dict[str, str], printed: list[str], elapsed: float, rounds: int,
          killed: int, summary: dict[str, object]) -> int:
    spool = Spool(spool_path(home, address), readonly=True)
    try:
        problems = spool.integrity_problems()
        count = spool.count_records()
        records = [decode_record(r.data) for seq in range(count) if (r := spool.record_by_seq(seq)) is not None]
    finally:
        spool.close()
    links_ok = all(after.prev == before.hash for before, after in itertools.pairwise(records))
    network = load_network(home)
    latest = LedgerClient(network.rpc_url, network.contract).latest_checkpoint(address)
    rows = json.loads(subprocess.run([*CLI, "query", "--agent", address, "--json"], env=env, capture_output=True,
                                     text=True, check=True).stdout)
    indexed = {row["record_id"] for row in rows}
    missing = [record_id for record_id in printed if record_id not in indexed]
    print(f"soak: {elapsed:.0f} s, {rounds} rounds, {killed} processes SIGKILLed")
    print(f"records spooled: {count} ({count / elapsed:.0f} records/s over the soak, all writers together)")
    print(f"anchored on chain: {latest.size if latest else 0}; pending after the final flush: {summary['pending']}")
    print(f"ids printed by commands: {len(printed)}; missing from the index: {len(missing)}")
    print(f"seq gap-free: {[r.seq for r in records] == list(range(count))}; prev links: {links_ok}; "
          f"spool integrity problems: {problems or 'none'}; indexed records: {len(indexed)}")
    lost = (missing or problems or not links_ok or latest is None or latest.size != count
            or len(indexed) != count or summary["pending"] != 0)
    print("ZERO LOSS" if not lost else "LOSS DETECTED")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
