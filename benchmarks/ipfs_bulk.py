"""Benchmark: bulk block upload (one CAR through ``dag import``) vs one ``block put`` per block.

Usage: .venv/bin/python benchmarks/ipfs_bulk.py [--blocks N] [--block-size B] [--rounds R] [--file-mb M]

Starts its own offline Kubo daemon in a temporary home and stops it at the end. Each round
uploads fresh blocks (a new seed), so no path benefits from the daemon skipping
blocks it already has. The batch is N random ~1 KiB dag-cbor blocks plus a
"manifest" dag-cbor block linking all of them, as a ledger anchor would write.

Second part: local `cid_for_file` throughput (CIDv1 raw leaves and CIDv0) on an
M MB file, against one ``hashlib.sha256`` pass over the same file; a ratio near
(or above, with worker threads) 1 means hashing, not Python, is the cost.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provanchor.formats.cid import CID, DAG_CBOR
from provanchor.formats.unixfs import cid_for_file
from provanchor.ipfs.client import IpfsClient
from provanchor.localnet.processes import IpfsService


def _cbor_array_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x80 | n])
    if n < 256:
        return bytes([0x98, n])
    return bytes([0x99]) + n.to_bytes(2, "big")


def make_batch(count: int, size: int, seed: int) -> tuple[list[tuple[CID, bytes]], CID]:
    """``count`` dag-cbor blocks (one random byte string each) plus a manifest {"l": [links]} (last).

    The blocks must be valid dag-cbor: the recursive pin of the manifest decodes every one.
    """
    rng = random.Random(seed)
    blocks = []
    for _ in range(count):
        data = b"\x59" + size.to_bytes(2, "big") + rng.randbytes(size)  # CBOR byte string, 16-bit length
        blocks.append((CID.for_block(DAG_CBOR, data), data))
    links = b"".join(b"\xd8\x2a\x58\x25\x00" + cid.to_bytes() for cid, _ in blocks)
    manifest = b"\xa1\x61l" + _cbor_array_head(count) + links
    root = CID.for_block(DAG_CBOR, manifest)
    blocks.append((root, manifest))
    return blocks, root


def timed(action: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def upload_round(client: IpfsClient, count: int, size: int, seed: int) -> tuple[float, float, float]:
    """Seconds for (bulk + pin, bulk without pin, one block put per block), each on fresh blocks."""
    pinned_batch, root = make_batch(count, size, seed=seed)
    plain_batch, _ = make_batch(count, size, seed=seed + 1)
    single_batch, _ = make_batch(count, size, seed=seed + 2)

    def bulk_with_pin() -> None:
        client.put_blocks(pinned_batch, pin_roots=[root])

    def bulk_without_pin() -> None:
        client.put_blocks(plain_batch)

    def one_by_one() -> None:
        for _, data in single_batch:
            client.put_block(data, DAG_CBOR)

    pinned = timed(bulk_with_pin)
    assert client.is_pinned(root) and client.get_block(pinned_batch[0][0]) == pinned_batch[0][1]
    plain = timed(bulk_without_pin)
    single = timed(one_by_one)
    assert client.get_block(single_batch[-1][0]) == single_batch[-1][1]
    return pinned, plain, single


def bench_upload(client: IpfsClient, count: int, size: int, rounds: int) -> None:
    bulk_pinned: list[float] = []
    bulk_plain: list[float] = []
    single: list[float] = []
    n = count + 1
    for r in range(rounds):
        pinned, plain, one = upload_round(client, count, size, seed=3 * r)
        bulk_pinned.append(pinned)
        bulk_plain.append(plain)
        single.append(one)
        print(
            f"  round {r + 1}: dag import+pin {pinned * 1000:7.1f} ms, "
            f"dag import {plain * 1000:7.1f} ms, block put x{n} {one * 1000:7.1f} ms"
        )
    best = {name: statistics.median(values) for name, values in
            (("pinned", bulk_pinned), ("plain", bulk_plain), ("single", single))}  # fmt: skip
    manifest_size = len(make_batch(count, size, seed=0)[0][-1][1])
    print(f"\n{n} blocks ({count} x {size + 3} B + {manifest_size} B manifest), median of {rounds} rounds:")
    print(f"  (a) one dag import (CAR) + recursive pin : {n / best['pinned']:9.0f} blocks/s")
    print(f"  (a') one dag import (CAR), no pin        : {n / best['plain']:9.0f} blocks/s")
    print(f"  (b) one block put per block              : {n / best['single']:9.0f} blocks/s")
    print(f"  ratio (a)/(b) = {best['single'] / best['pinned']:.1f}x, (a')/(b) = {best['single'] / best['plain']:.1f}x")


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def bench_hashing(directory: Path, megabytes: int, rounds: int) -> None:
    path = directory / "bench.bin"
    rng = random.Random(42)
    with path.open("wb") as out:
        for _ in range(megabytes):
            out.write(rng.randbytes(1_000_000))
    size_mb = megabytes
    sha256_file(path)  # warm the page cache: every measurement below reads from memory
    base = min(timed(lambda: sha256_file(path)) for _ in range(rounds))
    print(f"\nlocal hashing of a {size_mb} MB file (best of {rounds}, page cache warm):")
    print(f"  hashlib.sha256 (1 MiB reads)           : {size_mb / base:7.0f} MB/s")
    for version in (1, 0):
        for workers in (None, 1):
            label = f"cid_for_file v{version}, " + ("default threads" if workers is None else "1 thread")

            def run(v: int = version, w: int | None = workers) -> None:
                cid_for_file(path, v, workers=w)

            took = min(timed(run) for _ in range(rounds))
            print(f"  {label:<39}: {size_mb / took:7.0f} MB/s  (ratio to sha256 {base / took:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1024)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--file-mb", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="provanchor-ipfs-bench-") as tmp:
        service = IpfsService(Path(tmp) / "home")
        addr = service.start()
        try:
            with IpfsClient(addr, timeout=300) as client:
                print(f"IPFS daemon {service.kind} {client.version()} at {addr}")
                bench_upload(client, args.blocks, args.block_size, args.rounds)
        finally:
            service.stop()
        bench_hashing(Path(tmp), args.file_mb, args.rounds)


if __name__ == "__main__":
    main()
