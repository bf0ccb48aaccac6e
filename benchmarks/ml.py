"""ML provenance throughput: inference receipts through the whole pipeline, and dataset fingerprinting.

Receipts (issue 8 target: at least 5,000 per second through the full pipeline).
Brings up its own local network (anvil + the IPFS daemon) in a temporary data
directory, records a dataset, a training run and a model, then inference
receipts with HMAC commitments, and prints for each way of recording them:

- the spool rate: receipts per second until every one is signed and fsynced;
- the end-to-end rate: first receipt submitted -> last one anchored on chain
  (stored on IPFS in one CAR import per batch, Merkle log, anchor transaction).

Ways: one record per receipt (``inferences``; each receipt is its own record,
block and log leaf), receipts batched ``per_record`` to a record (one
signature, block and leaf for up to 1,024 receipts, each still named and
verified alone), and a ``receipts()`` stream fed one ``add()`` per request, as
a serving loop would.

Fingerprinting (target: at least 0.5x the speed of plain sha256 of the same
file). Writes a file of rows (default 1 GB) for each row length, reads it once
to warm the page cache, then times plain SHA-256 of the file in 8 MiB reads
against ``fingerprint_file`` (a Merkle leaf per row plus the file's SHA-256),
and prints MB/s and the ratio.

    .venv/bin/python benchmarks/ml.py                 # everything, 1 GB files
    .venv/bin/python benchmarks/ml.py --quick         # 64 MB files, fewer receipts
    .venv/bin/python benchmarks/ml.py --only fingerprint --row-bytes 100,1000,4000
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import tempfile
import time
from pathlib import Path

from provanchor.home import Home
from provanchor.localnet import lifecycle
from provanchor.localnet.devagents import enroll_agent
from provanchor.ml import Tracker
from provanchor.ml.dataset import fingerprint_file

PASSWORD = "bench"
print = functools.partial(print, flush=True)


# ------------------------------------------------------------------ fingerprinting


def write_rows(path: Path, size: int, row_bytes: int) -> None:
    """Rows of hex text of one length (newline included), repeated in 4,096-row blocks up to ``size`` bytes."""
    text = os.urandom(row_bytes * 4096 // 2 + 1).hex().encode()
    block = b"".join(text[i * row_bytes : (i + 1) * row_bytes - 1] + b"\n" for i in range(4096))
    with path.open("wb") as handle:
        written = 0
        while written < size:
            handle.write(block)
            written += len(block)


def plain_sha256(path: Path) -> float:
    started = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return time.perf_counter() - started


def bench_fingerprint(directory: Path, size: int, row_lengths: list[int]) -> None:
    print(f"dataset fingerprinting, {size / 1e9:.2f} GB files of rows (page cache warm, best of 2)")
    for row_bytes in row_lengths:
        path = directory / f"rows-{row_bytes}.txt"
        write_rows(path, size, row_bytes)
        plain_sha256(path)  # warm the page cache
        sha_s = min(plain_sha256(path) for _ in range(2))
        times = []
        for _ in range(2):
            started = time.perf_counter()
            fp = fingerprint_file(path)
            times.append(time.perf_counter() - started)
        fp_s = min(times)
        actual = path.stat().st_size
        print(
            f"  rows of {row_bytes:>5,} B ({fp.rows:>11,} rows): sha256 {actual / sha_s / 1e6:6.0f} MB/s, "
            f"fingerprint {actual / fp_s / 1e6:6.0f} MB/s ({fp.rows / fp_s / 1e6:.2f} M rows/s), "
            f"ratio {sha_s / fp_s:.2f}x {'(target met)' if sha_s / fp_s >= 0.5 else '(below the 0.5x target)'}"
        )
        path.unlink()


# ------------------------------------------------------------------ receipts


def bench_receipts(root: Path, count: int, single: int) -> None:
    net = Home(root / "net")
    lifecycle.up(net)
    try:
        home, _ = enroll_agent(net, root / "agent", "bench-ml", PASSWORD)
        data = root / "data.csv"
        write_rows(data, 1 << 20, 64)
        weights = root / "model.bin"
        weights.write_bytes(os.urandom(1 << 16))
        with Tracker.open(home, password=PASSWORD, hmac_key=b"k" * 32, batch_size=1024, interval=0.5) as t:
            ds = t.dataset("bench", "1", path=data)
            run = t.training(model="bench-model", version="1", datasets=[ds], hyperparameters={"lr": "0.1"})
            model = t.model(run, path=weights)
            t.flush()
            pairs = [(f"input {i}".encode(), f"output {i}".encode()) for i in range(count)]
            print(f"inference receipts (HMAC commitments), batch 1,024 records, interval 0.5 s, {count:,} receipts")
            for per_record in (1, 64, 1024):
                n = single if per_record == 1 else count
                started = time.perf_counter()
                receipts = []
                for offset in range(0, n, 4096):  # keep a window in flight, as a serving loop would
                    receipts += t.inferences(model, pairs[offset : min(n, offset + 4096)], commitment="hmac",
                                             per_record=per_record)  # fmt: skip
                spooled = time.perf_counter() - started
                t.flush(timeout=600)
                anchored = time.perf_counter() - started
                records = len({r.record_id for r in receipts})
                print(
                    f"  {per_record:>5} receipt(s) per record ({records:,} records): "
                    f"spool {n / spooled:9,.0f} receipts/s, end to end {n / anchored:9,.0f} receipts/s "
                    f"({records / anchored:,.0f} records/s)"
                )
            started = time.perf_counter()
            with t.receipts(model, commitment="hmac", per_record=1024, max_delay=0.2) as stream:
                futures = [stream.add(given_input, given_output) for given_input, given_output in pairs]
            last = futures[-1].result()
            spooled = time.perf_counter() - started
            t.flush(timeout=600)
            anchored = time.perf_counter() - started
            print(
                f"  receipts() stream, one add() per request ({last.index + 1} in the last record): "
                f"spool {count / spooled:9,.0f} receipts/s, end to end {count / anchored:9,.0f} receipts/s"
            )
            one = time.perf_counter()
            for i in range(200):
                t.inference(model, b"x%d" % i, b"y", commitment="hmac")
            print(
                f"  one inference() call at a time (waits for each fsync): {200 / (time.perf_counter() - one):,.0f}/s"
            )
    finally:
        lifecycle.down(net)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("fingerprint", "receipts"), default=None)
    parser.add_argument("--quick", action="store_true", help="64 MB files and 5,000 receipts")
    parser.add_argument("--size", type=float, default=None, help="file size in GB (default 1)")
    parser.add_argument("--row-bytes", default="100,1000,4000", help="row lengths to try, comma separated")
    parser.add_argument("--receipts", type=int, default=None, help="receipts per batched run (default 50,000)")
    args = parser.parse_args()
    size = int((args.size or (0.064 if args.quick else 1.0)) * 1e9)
    count = args.receipts or (5_000 if args.quick else 50_000)
    with tempfile.TemporaryDirectory(prefix="provanchor-bench-ml-") as tmp:
        root = Path(tmp)
        if args.only in (None, "receipts"):
            bench_receipts(root, count, single=min(count, 5_000 if args.quick else 10_000))
        if args.only in (None, "fingerprint"):
            bench_fingerprint(root, size, [int(n) for n in args.row_bytes.split(",")])


if __name__ == "__main__":
    main()
