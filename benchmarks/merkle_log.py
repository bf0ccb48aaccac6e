"""Benchmark: append N leaf hashes to a CompactRange and show memory stays flat.

Usage: .venv/bin/python benchmarks/merkle_log.py [--leaves N] [--batch B]

Leaf hashes are generated in batches outside the timed regions, so the figures are
the cost of the log itself. The baseline is one ``hashlib.sha256`` call per 32-byte
input in the same process: appending needs on average one node hash (65 bytes, two
SHA-256 blocks) per leaf, so a ratio near 1 means the Python overhead is small.

RSS grows by ~15 MiB at the start: that is the input batch (up to two lists of
``--batch`` leaf hashes alive at once), not the log, whose state is <= 64 hashes.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provanchor.formats.merkle import CompactRange


def batches(n: int, batch: int) -> Iterator[list[bytes]]:
    """Deterministic 32-byte leaf hashes, a batch at a time so they are never all in memory."""
    sha = hashlib.sha256
    for start in range(0, n, batch):
        yield [sha(i.to_bytes(8, "big")).digest() for i in range(start, min(n, start + batch))]


def peak_rss_mib() -> float:
    """Peak RSS so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def current_rss_mib() -> float | None:
    """Current RSS from /proc (Linux only); None elsewhere."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
    except OSError:
        return None
    return int(fields[1]) * resource.getpagesize() / (1024 * 1024)


def fmt_rss() -> str:
    cur = current_rss_mib()
    cur_s = f"{cur:.1f} MiB" if cur is not None else "n/a"
    return f"current RSS {cur_s}, peak RSS {peak_rss_mib():.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=100_000, help="leaf hashes generated at a time")
    args = parser.parse_args()
    n: int = args.leaves
    batch: int = args.batch
    tenth = max(1, n // 10)

    print(f"leaves: {n:,}  (python {sys.version.split()[0]})")
    print(f"start: {fmt_rss()}")

    # 1. append(), one call per leaf.
    cr = CompactRange()
    append_time = 0.0
    checkpoints = [tenth, max(1, n // 2)]
    for leaves in batches(n, batch):
        append = cr.append
        t0 = time.perf_counter()
        for h in leaves:
            append(h)
        append_time += time.perf_counter() - t0
        while checkpoints and cr.size >= checkpoints[0]:
            checkpoints.pop(0)
            print(f"after {cr.size:,} appends: {fmt_rss()}")
    t0 = time.perf_counter()
    r = cr.root()
    root_time = time.perf_counter() - t0
    print(f"after {cr.size:,} appends: {fmt_rss()}  (frontier: {len(cr.hashes)} hashes)")
    append_rate = n / append_time
    print(f"append():  {append_rate:,.0f} leaves/s  ({append_time:.2f} s)")
    print(f"root():    {root_time * 1e6:.1f} us  -> {r.hex()}")

    # 2. extend() with whole batches (bulk-hashes aligned 4096-leaf blocks).
    cr2 = CompactRange()
    extend_time = 0.0
    for leaves in batches(n, batch):
        t0 = time.perf_counter()
        cr2.extend(leaves)
        extend_time += time.perf_counter() - t0
    assert cr2.root() == r, "extend() and append() disagree"
    extend_rate = n / extend_time
    print(f"extend():  {extend_rate:,.0f} leaves/s  ({extend_time:.2f} s, batches of {batch:,})")

    # 3. Baseline: one sha256 per 32-byte input, same inputs, same process.
    sha = hashlib.sha256
    base_time = 0.0
    for leaves in batches(n, batch):
        t0 = time.perf_counter()
        for h in leaves:
            sha(h).digest()
        base_time += time.perf_counter() - t0
    base_rate = n / base_time
    print(f"baseline sha256 loop: {base_rate:,.0f} inputs/s  ({base_time:.2f} s)")
    print(f"ratio append/baseline: {append_rate / base_rate:.2f}")
    print(f"ratio extend/baseline: {extend_rate / base_rate:.2f}")
    print(f"end: {fmt_rss()}")


if __name__ == "__main__":
    main()
