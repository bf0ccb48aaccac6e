"""Benchmark: records/s to build + encode + hash + sign, and to verify, for ~1 KB records.

Usage: .venv/bin/python benchmarks/records.py [--records N] [--processes P]

"sign" is the agent's per-record hot path: ``Record.from_change`` (validation),
canonical DAG-CBOR encoding, SHA-256 record hash, Merkle leaf hash and the
EIP-712 signature. "recover" is signature recovery alone; "verify" is what an
auditor does per record: strict decode, record hash, and recovery. Changes
differ in time, location and payload so no per-record cache can help, while the
code identity is shared, as it is for one process writing many files.
With ``--processes P`` the sign figure is also measured with P worker processes
(the pipeline target is >= 5,000 records/s on 2 cores).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provanchor.formats.cid import CID, RAW
from provanchor.records import (
    Capture,
    CaptureBackend,
    Change,
    CodeFile,
    CodeIdentity,
    ContentRef,
    Eip712Domain,
    Op,
    Record,
    RecordSigner,
    decode_record,
    file_location,
    record_leaf_hash,
    recover_signer,
)

KEY = hashlib.sha256(b"benchmark key").digest()
DOMAIN = Eip712Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
HOST = "3f2a9c0d5e6b4a1f8c7d2e1b0a9f8e7d"
CODE = CodeIdentity(
    exe=CodeFile("/usr/bin/python3.11", hashlib.sha256(b"python").digest()),
    scripts=(CodeFile("/home/alice/pipeline/prepare.py", hashlib.sha256(b"script").digest()),),
    argv=("python3", "prepare.py", "--input", "raw/", "--output", "clean/"),
    image="registry.example/ml/prep@sha256:" + "ab" * 32,
)


def make_changes(n: int) -> list[Change]:
    """Distinct, realistic file-write changes padded to ~1 KB encoded."""
    changes = []
    for i in range(n):
        content = i.to_bytes(8, "big") * 4
        digest = hashlib.sha256(content).digest()
        changes.append(
            Change(
                time=1_700_000_000_000_000_000 + i * 1000,
                host=HOST,
                location=file_location(HOST, f"/home/alice/data/clean/part-{i:08d}.csv"),
                op=Op.WRITE,
                capture=Capture(CaptureBackend.FANOTIFY, True),
                user="alice",
                uid=1000,
                before=ContentRef(hashlib.sha256(digest).digest(), 4096 + i),
                after=ContentRef(digest, len(content), CID.for_block(RAW, content)),
                code=CODE,
                pid=4242,
                run="run-0001",
                payload={"rows": i, "columns": ["id", "value", "label"], "note": "x" * 100},
            )
        )
    return changes


def sign_all(changes: list[Change]) -> tuple[list[Record], list[bytes]]:
    """The agent's hot path for a batch of changes: sequence, encode, hash, leaf, sign."""
    signer = RecordSigner(KEY, DOMAIN)
    records, signatures = [], []
    prev: bytes | None = None
    for seq, change in enumerate(changes):
        record = Record.from_change(change, signer.address, seq, prev)
        record_hash = record.hash  # encodes (canonical bytes are cached on the record)
        record_leaf_hash(record_hash)
        signatures.append(signer.sign(record_hash))
        records.append(record)
        prev = record_hash
    return records, signatures


def _worker(n: int) -> float:
    changes = make_changes(n)
    t0 = time.perf_counter()
    sign_all(changes)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2, help="worker processes for the parallel sign figure")
    args = parser.parse_args()
    n: int = args.records
    print(f"records: {n:,}  (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")

    changes = make_changes(n)
    t0 = time.perf_counter()
    records, signatures = sign_all(changes)
    sign_time = time.perf_counter() - t0
    blocks = [r.canonical for r in records]
    sizes = [len(b) for b in blocks]
    print(f"record size: {min(sizes)}..{max(sizes)} bytes (mean {sum(sizes) / n:.0f})")
    print(f"build+encode+hash+sign: {n / sign_time:,.0f} records/s  ({sign_time / n * 1e6:.1f} us/record)")

    t0 = time.perf_counter()
    for change in changes[:n]:
        Record.from_change(change, records[0].agent, 1, records[0].hash)
    build_time = time.perf_counter() - t0
    fresh = [Record.from_change(c, records[0].agent, 1, records[0].hash) for c in changes]
    t0 = time.perf_counter()
    for record in fresh:
        _ = record.canonical
    encode_time = time.perf_counter() - t0
    print(f"  of which build (validate): {build_time / n * 1e6:.1f} us, encode: {encode_time / n * 1e6:.1f} us")

    address = RecordSigner(KEY, DOMAIN).address
    hashes = [r.hash for r in records]
    t0 = time.perf_counter()
    for record_hash, signature in zip(hashes, signatures, strict=True):
        recover_signer(DOMAIN, record_hash, signature)
    recover_time = time.perf_counter() - t0
    print(f"recover:                {n / recover_time:,.0f} signatures/s  ({recover_time / n * 1e6:.1f} us each)")

    t0 = time.perf_counter()
    for block, signature in zip(blocks, signatures, strict=True):
        record = decode_record(block)
        if recover_signer(DOMAIN, hashlib.sha256(block).digest(), signature) != address or record.agent is None:
            raise SystemExit("verification failed")
    verify_time = time.perf_counter() - t0
    print(f"verify (decode+hash+recover): {n / verify_time:,.0f} records/s  ({verify_time / n * 1e6:.1f} us each)")

    processes: int = args.processes
    if processes > 1:
        per_worker = n // processes
        with ProcessPoolExecutor(processes) as pool:
            t0 = time.perf_counter()
            times = list(pool.map(_worker, [per_worker] * processes))
        total = per_worker * processes
        print(
            f"build+encode+hash+sign, {processes} processes: {total / max(times):,.0f} records/s "
            f"(slowest worker {max(times):.2f} s for {per_worker:,})"
        )


if __name__ == "__main__":
    main()
