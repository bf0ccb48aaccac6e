"""End-to-end recording throughput, gas per record, and record-to-anchored latency.

Brings up its own local network (anvil + the IPFS daemon) in a temporary data
directory, approves one agent, and records ~1 KB records through the whole
pipeline: sign, spool (fsynced), IPFS (one CAR import per batch), Merkle log,
anchor. Prints:

- records per second end to end (first record spooled -> last record anchored),
  and the spool-only rate (sign + fsync) of the same producers;
- where the time goes (seconds spent cutting, storing on IPFS, anchoring);
- gas per record at batch sizes 256, 1,024 and 8,192;
- latency from `record()` returning to the record being anchored, p50 / p95,
  with a 1 s batch interval.

Targets (issue 3): >= 5,000 records/s sustained, <= 100 gas per record at batch
1,024, p95 record-to-anchored <= 2 s with a 1 s interval.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from provanchor.home import Home
from provanchor.localnet import lifecycle
from provanchor.localnet.devagents import enroll_agent
from provanchor.network import load_network
from provanchor.pipeline.recorder import RecordRef
from provanchor.pipeline.session import AgentSession
from provanchor.records import Capture, CaptureBackend, Change, Op

PASSWORD = "bench"
print = functools.partial(print, flush=True)
PAYLOAD = {"pad": "x" * 600}  # brings the encoded record to ~1 KB


def change(i: int) -> Change:
    return Change(
        time=time.time_ns(),
        host="bench-host",
        location=f"file://bench-host/data/set-{i % 97}/file-{i}.bin",
        op=Op.WRITE,
        capture=Capture(backend=CaptureBackend.MANUAL, attributed=False, reason="benchmark"),
        user="bench",
        uid=1000,
        pid=4242,
        payload=PAYLOAD,
    )


def new_agent(net: Home, root: Path, name: str) -> Home:
    return enroll_agent(net, root / name, name, PASSWORD)[0]


def run(net: Home, root: Path, name: str, count: int, batch: int, interval: float, producers: int) -> dict[str, float]:
    home = new_agent(net, root, name)
    with AgentSession.open(home, password=PASSWORD, batch_size=batch, interval=interval) as session:
        session.start()
        per_thread = count // producers
        started = time.perf_counter()

        def produce(t: int) -> None:
            # Keep a window of changes in flight, as a capture loop does: each fsync is shared.
            window: list[Future[RecordRef]] = []
            for i in range(per_thread):
                window.append(session.submit(change(t * per_thread + i)))
                if len(window) >= 256:
                    for future in window:
                        future.result()
                    window.clear()
            for future in window:
                future.result()

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(producers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        spooled = time.perf_counter() - started
        total = per_thread * producers
        if interval > 60:  # size-only batching: anchor the remainder explicitly
            session.flush()
        while session.spool.anchored_size() < total:
            if session.last_error is not None and time.perf_counter() - started > 600:
                raise RuntimeError(f"pipeline stuck: {session.last_error}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        session.stop()
        batches = session.spool.batches(["anchored"])
        db = session.spool._db  # benchmark-only peek: per-record latency needs the raw timestamps
        rows = db.execute(
            "SELECT r.spooled_ns, b.anchored_ns FROM records r JOIN batches b ON r.batch = b.id"
        ).fetchall()
        metrics = dict(session.anchorer.metrics)
    latencies = sorted((anchored - spooled_ns) / 1e9 for spooled_ns, anchored in rows)
    gas = [b.gas_used for b in batches if b.gas_used]
    full = [b for b in batches if b.size - b.start_seq == batch and b.gas_used]
    return {
        "records": total,
        "elapsed": elapsed,
        "rate": total / elapsed,
        "spool_rate": total / spooled,
        "p50": latencies[len(latencies) // 2],
        "p95": latencies[int(len(latencies) * 0.95)],
        "gas_per_record": statistics.mean(b.gas_used / (b.size - b.start_seq) for b in full) if full else float("nan"),
        "gas_per_anchor": statistics.mean(gas) if gas else float("nan"),
        "batches": len(batches),
        **metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="small runs, for checking the script works")
    args = parser.parse_args()
    count = 5_000 if args.quick else args.records
    os.environ.setdefault("PROVANCHOR_PASSWORD", PASSWORD)
    with tempfile.TemporaryDirectory(prefix="provanchor-pipeline-") as tmp:
        root = Path(tmp)
        net = Home(root / "net")
        lifecycle.up(net)
        try:
            print(
                f"network up ({load_network(net).ipfs_kind}); {count:,} records of ~1 KB, "
                f"{args.producers} producer threads\n"
            )
            main_run = run(net, root, "main", count, 1024, 1.0, args.producers)
            print(
                f"end to end, batch 1,024, interval 1 s: {main_run['rate']:,.0f} records/s "
                f"({main_run['records']:,} records in {main_run['elapsed']:.1f} s; target 5,000)"
            )
            print(f"  spool only (sign + fsync, same producers): {main_run['spool_rate']:,.0f} records/s")
            print(
                f"  time spent: cut {main_run.get('cut_seconds', 0):.1f} s, IPFS store "
                f"{main_run.get('store_seconds', 0):.1f} s, anchor {main_run.get('anchor_seconds', 0):.1f} s "
                f"over {main_run['batches']} batches"
            )
            print(
                f"  record() -> anchored latency: p50 {main_run['p50']:.2f} s, p95 {main_run['p95']:.2f} s "
                "(target p95 <= 2 s)"
            )
            print("\ngas per record by batch size (target <= 100 at 1,024):")
            for batch, records in ((256, 256 * 12), (1024, 1024 * 6), (8192, 8192 * 3)):
                if args.quick and batch == 8192:
                    records = 8192 + 10
                result = run(net, root, f"gas-{batch}", records, batch, 3600.0 if batch > 1024 else 1.0, args.producers)
                print(
                    f"  batch {batch:>5,}: {result['gas_per_record']:8.1f} gas/record "
                    f"({result['gas_per_anchor']:,.0f} gas per anchor)"
                )
            # Latency at steady rates, with a 1 s interval.
            print()
            for rate in (1000, 2000):
                paced = run_paced(net, root, rate=rate, seconds=10)
                print(
                    f"latency at a steady {paced['rate']:,.0f} records/s, 1 s interval: "
                    f"p50 {paced['p50']:.2f} s, p95 {paced['p95']:.2f} s (target p95 <= 2 s)"
                )
        finally:
            lifecycle.down(net)


def run_paced(net: Home, root: Path, rate: int, seconds: int) -> dict[str, float]:
    home = new_agent(net, root, f"paced-{rate}")
    with AgentSession.open(home, password=PASSWORD, batch_size=8192, interval=1.0) as session:
        session.start()
        total = rate * seconds
        started = time.perf_counter()
        pending: list[Future[RecordRef]] = []
        for i in range(total):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            # As a capture loop does: submit at the workload's pace, durable a moment later (group commit).
            pending.append(session.submit(change(i)))
        for future in pending:
            future.result()
        while session.spool.anchored_size() < total:
            time.sleep(0.02)
        session.stop()
        rows = session.spool._db.execute(
            "SELECT r.spooled_ns, b.anchored_ns FROM records r JOIN batches b ON r.batch = b.id"
        ).fetchall()
    latencies = sorted((anchored - spooled) / 1e9 for spooled, anchored in rows)
    return {
        "rate": total / seconds,
        "p50": latencies[len(latencies) // 2],
        "p95": latencies[int(len(latencies) * 0.95)],
    }


if __name__ == "__main__":
    main()
