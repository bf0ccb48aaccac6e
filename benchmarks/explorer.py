"""Benchmark: the explorer's API latency over HTTP on the 1,000,000-record index of benchmarks/query.py.

Usage: .venv/bin/python benchmarks/explorer.py [--records N] [--repeat R] [--keep DIR]

Builds the same index as benchmarks/query.py (real records from 64 agents,
runs, a 12-step chain), serves the explorer app with uvicorn on loopback, and
times requests from a keep-alive HTTP client, end to end (routing, the index
reads, JSON or HTML rendering, the security middleware):

- search: ``/api/search`` by path prefix, by user, by agent and time window,
  by code hash (page size 50), and the server-rendered ``/search`` page;
- record: ``/api/record/ID`` for random records (fields and anchoring, from
  the index; the live verification of a record page is excluded, as the
  target says: it is a chain and IPFS round trip, timed by benchmarks/verify.py);
- lineage: ``/api/lineage`` of the chain's last output, upstream, depth 10.

Targets: search and record p95 <= 50 ms; lineage depth 10 <= 200 ms.
"""

from __future__ import annotations

import argparse
import http.client
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from query import AGENTS, CHAIN_STEPS, HOSTS, Generator, percentile, timed_build

from provanchor.explorer.app import create_app
from provanchor.explorer.reader import Explorer
from provanchor.home import Home
from provanchor.index import IndexStore
from provanchor.index.store import record_id
from provanchor.network import NetworkDescriptor
from provanchor.records import file_location


def build(db: Path, total: int) -> Generator:
    generator = Generator()
    store = IndexStore(db)
    store.bind(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    started = time.perf_counter()
    with store.bulk_load():
        timed_build(store, generator, total, 10_000)
    store.close()
    print(f"index: {total:,} records built in {time.perf_counter() - started:.0f} s")
    return generator


def serve(explorer: Explorer) -> tuple[int, threading.Thread]:
    import socket

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(create_app(explorer), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return port, thread


def timed(connection: http.client.HTTPConnection, paths: list[str]) -> tuple[float, float, int]:
    """(p50 ms, p95 ms, non-200 answers) over `paths`, one request each, after one warm-up."""
    connection.request("GET", paths[0])
    connection.getresponse().read()
    times, bad = [], 0
    for path in paths:
        t0 = time.perf_counter()
        connection.request("GET", path)
        answer = connection.getresponse()
        answer.read()
        times.append((time.perf_counter() - t0) * 1000)
        bad += answer.status != 200
    return statistics.median(times), percentile(times, 0.95), bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--keep", type=Path, default=None, help="build the index here and keep it")
    args = parser.parse_args()
    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="provanchor-explorer-bench-"))
    db = directory / "index.db"
    try:
        IndexStore.destroy(db)
        generator = build(db, args.records)
        network = NetworkDescriptor(
            31337, "http://127.0.0.1:9", "0x5FbDB2315678afecb367f032d93F642f64180aa3", 0, "/ip4/127.0.0.1/tcp/9"
        )
        explorer = Explorer(Home(directory), network, db)
        port, _ = serve(explorer)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        rnd = random.Random(5)
        sample = generator.sample.rows
        with IndexStore.open(db) as store:
            count = store.record_count()
            ids = [
                record_id(
                    bytes(store.read("SELECT record_hash FROM records WHERE id = ?", (rnd.randrange(1, count),))[0][0])
                )
                for _ in range(args.repeat)
            ]

        def pick() -> tuple[str, str, str, str, bytes, int, str]:
            return rnd.choice(sample)

        def q(**params: object) -> str:
            return urllib.parse.urlencode({k: str(v) for k, v in params.items()})

        day = 3600 * 10**9
        shapes = {
            "api search: path prefix (project)": lambda: (
                f"/api/search?{q(location='/'.join(pick()[3].split('/')[:3]))}"
            ),
            "api search: user": lambda: f"/api/search?{q(user=pick()[2])}",
            "api search: agent + 1 h window": lambda: (
                lambda r: f"/api/search?{q(agent=r[0], since=r[5] // 10**9, until=(r[5] + day) // 10**9)}"
            )(pick()),
            "api search: code hash": lambda: f"/api/search?{q(code_hash=pick()[4].hex())}",
            "page  search: path prefix": lambda: f"/search?{q(location='/'.join(pick()[3].split('/')[:3]))}",
        }
        print(f"\n{'request':38} {'p50 ms':>8} {'p95 ms':>8}  non-200   ({args.repeat} requests each, keep-alive)")
        worst_search = 0.0
        for name, make in shapes.items():
            p50, p95, bad = timed(connection, [make() for _ in range(args.repeat)])
            worst_search = max(worst_search, p95)
            print(f"{name:38} {p50:8.2f} {p95:8.2f}  {bad}")
        p50, p95_record, bad = timed(connection, [f"/api/record/{rid}" for rid in ids])
        print(f"{'api record (fields + anchoring)':38} {p50:8.2f} {p95_record:8.2f}  {bad}")
        last = file_location(HOSTS[0], f"/data/chain/step{CHAIN_STEPS:02d}.csv")
        lineage_paths = [f"/api/lineage?{q(location=last, depth=10, direction='upstream')}"] * max(10, args.repeat // 5)
        p50, p95_lineage, bad = timed(connection, lineage_paths)
        print(f"{'api lineage, depth 10 (12-step chain)':38} {p50:8.2f} {p95_lineage:8.2f}  {bad}")
        outputs = generator.sample.outputs
        random_paths = [
            f"/api/lineage?{q(location=rnd.choice(outputs), depth=10, direction='upstream')}"
            for _ in range(args.repeat)
        ]
        p50, p95_random, bad = timed(connection, random_paths)
        print(f"{'api lineage, depth 10 (random output)':38} {p50:8.2f} {p95_random:8.2f}  {bad}")
        print(
            f"\nsearch worst p95 {worst_search:.1f} ms, record p95 {p95_record:.1f} ms (target <= 50 ms); "
            f"lineage depth 10 p95 {max(p95_lineage, p95_random):.1f} ms (target <= 200 ms); agents: {len(AGENTS)}"
        )
        explorer.close()
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
