"""Benchmark: `verify agent` over a 100,000-record log, end to end, and bare inclusion proofs.

Usage: .venv/bin/python benchmarks/verify.py [--records N] [--batch B] [--proofs P] [--skip-ipfs]

Brings up its own local network (anvil + the IPFS daemon) in a temporary data
directory, approves one agent and publishes N real records (signed, ~400 bytes
each) in checkpoints of B with `LogWriter`: every record and manifest block is
on IPFS, every checkpoint anchored with its consistency proof. Then it times
the same verification (every manifest against the chain, every root rebuilt,
every consecutive pair's consistency locally and by the contract, the agent's
window at every anchoring block, every record fetched by CID, hashed, strictly
decoded, its seq/prev and its EIP-712 signature checked; one inclusion proof
by the contract) from three block sources:

- **bundle**: `audit verify` of a CAR made by `audit export` (read and
  hash-checked in full; no IPFS); the export time is shown apart;
- **index hint**: `verify agent --index` with an index holding every
  record's bytes (each used only if it hashes to the CID the anchored
  manifest lists); the index is filled directly by `IndexStore.add_records`,
  not by a sync, because only its bytes matter here;
- **IPFS**: `verify agent` with every block from the daemon (8 at a time).

Each figure is records per second from the call to the verdict, chain calls
included, in-process; the CLI rows add process start and imports. Finally,
bare `merkle.verify_inclusion` calls per second (one process, then one per
core) on proofs into the 100,000-leaf tree.

Targets (issue 7): >= 10,000 records/s end to end; >= 100,000 proofs/s. Issue 13 (Kubo):
`verify agent` from IPFS alone and a first `index sync` from chain + IPFS, >= 5,000 records/s each.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the log forger is a test helper

from helpers.forge import LogWriter

from provanchor.chain.client import LedgerClient
from provanchor.formats import merkle
from provanchor.formats.cid import CID, DAG_CBOR
from provanchor.home import Home
from provanchor.identity import unlock
from provanchor.index.store import Checkpoint, IndexedInput, IndexStore
from provanchor.index.sync import Indexer
from provanchor.ipfs.client import IpfsClient
from provanchor.ipfs.sources import MemorySource
from provanchor.localnet import lifecycle
from provanchor.localnet.devagents import enroll_agent
from provanchor.network import load_network
from provanchor.records import Capture, CaptureBackend, Change, ContentRef, Op, decode_record
from provanchor.verify.api import VerifyContext, verify_agent
from provanchor.verify.bundle import Selection, export_bundle, verify_bundle
from provanchor.verify.log import Chain

PASSWORD = "bench"
T0 = 1_700_000_000 * 10**9
print = functools.partial(print, flush=True)


def change(i: int) -> Change:
    digest = i.to_bytes(32, "big")
    return Change(
        time=T0 + i * 1_000_000,
        host="bench-host",
        location=f"file://bench-host/data/project{i % 97}/file{i % 5003}.csv",
        op=Op.WRITE,
        user=f"user{i % 31}",
        capture=Capture(backend=CaptureBackend.FANOTIFY, attributed=True),
        pid=1000 + i % 4000,
        after=ContentRef(digest, 1024 + i % 4096),
    )


def publish(net: Home, root: Path, records: int, batch: int) -> tuple[LogWriter, list[list[bytes]]]:
    network = load_network(net)
    _, identity = enroll_agent(net, root / "agent", "bench", PASSWORD)
    account = unlock(identity.keystore_path, PASSWORD)
    writer = LogWriter(LedgerClient(network.rpc_url, network.contract), IpfsClient(network.ipfs_api), account)
    batches: list[list[bytes]] = []
    started = time.perf_counter()
    for start in range(0, records, batch):
        entries = [writer.record(change(i)) for i in range(start, min(records, start + batch))]
        writer.publish(entries)
        batches.append([e.data for e in entries])
    print(f"published {records:,} records in {len(batches)} checkpoints in {time.perf_counter() - started:.1f} s")
    return writer, batches


def fill_index(path: Path, network_chain: int, contract: str, writer: LogWriter, batches: list[list[bytes]]) -> None:
    with IndexStore.open(path, must_exist=False) as store:
        store.bind(network_chain, contract)
        size = 0
        with store.bulk_load():
            for index, blocks in enumerate(batches):
                size += len(blocks)
                manifest = writer.manifests[index]
                checkpoint = Checkpoint(writer.agent, index, size, manifest.root, manifest.cid.encode(), 0, b"", 0)
                store.add_checkpoint(checkpoint)
                store.add_records(IndexedInput(decode_record(data), checkpoint) for data in blocks)


def cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children (CLI runs, record workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Timed:
    """Wall and CPU seconds of a block: the machine is shared, so CPU per record is the stable figure."""

    def __enter__(self) -> Timed:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = cpu_seconds() - self.cpu


def rate(label: str, records: int, timed: Timed, ok: bool) -> None:
    verdict = "ok" if ok else "FAILED"
    per = timed.cpu / records * 1e6
    print(
        f"  {label:<42} {timed.wall:7.2f} s  {records / timed.wall:>8,.0f} records/s"
        f"  (CPU {timed.cpu:6.2f} s, {per:5.0f} us/record)  verdict {verdict}"
    )


def cli(args: list[str]) -> tuple[Timed, bool]:
    with Timed() as timed:
        done = subprocess.run([sys.executable, "-m", "provanchor.cli.main", *args], capture_output=True, text=True)
    return timed, done.returncode == 0


def _proof_rate(args: tuple[list[tuple[bytes, int, list[bytes]]], int, bytes, int]) -> int:
    items, size, root, rounds = args
    verify = merkle.verify_inclusion
    count = 0
    for _ in range(rounds):
        for leaf, index, proof in items:
            if not verify(leaf, index, size, proof, root):
                raise AssertionError("a valid proof failed")
            count += 1
    return count


def bench_proofs(leaves: list[bytes], proofs: int) -> None:
    size = len(leaves)
    root = merkle.root(leaves)
    rnd = random.Random(7)
    positions = [rnd.randrange(size) for _ in range(200)]
    from provanchor.verify.bundle import _levels, _proof

    levels = _levels(leaves)
    items = [(leaves[p], p, _proof(levels, p)) for p in positions]
    rounds = max(1, proofs // len(items))
    started, cpu = time.perf_counter(), time.process_time()
    count = _proof_rate((items, size, root, rounds))
    single = count / (time.perf_counter() - started)
    per_cpu = count / (time.process_time() - cpu)
    workers = os.cpu_count() or 1
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        total = sum(pool.map(_proof_rate, [(items, size, root, rounds)] * workers))
    parallel = total / (time.perf_counter() - started)
    depth = len(items[0][2])
    print(f"  inclusion proofs ({size:,}-leaf tree, ~{depth} hashes):")
    print(f"    1 process                              {single:>9,.0f} proofs/s  ({per_cpu:,.0f} per CPU second)")
    print(f"    {workers} processes (pool start included)       {parallel:>9,.0f} proofs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--proofs", type=int, default=200_000)
    parser.add_argument("--skip-ipfs", action="store_true", help="Skip the (slow) all-from-IPFS run.")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="provanchor-bench-verify-") as tmp:
        root = Path(tmp)
        net = Home(root / "net")
        lifecycle.up(net)
        try:
            network = load_network(net)
            writer, batches = publish(net, root, options.records, options.batch)
            trust = ["--rpc", network.rpc_url, "--contract", network.contract]
            ipfs = [*trust, "--ipfs", network.ipfs_api]
            n = options.records
            cores = os.cpu_count()
            print(f"verify agent over {n:,} records ({len(batches)} checkpoints of {options.batch}), {cores} cores:")

            bundle = root / "bundle.car"
            # Exported from the blocks just published (what IPFS holds), not fetched back: the
            # export is the data holder's job and not what is measured here.
            published = MemorySource((CID.for_block(DAG_CBOR, data), data) for blocks in batches for data in blocks)
            for manifest in writer.manifests:
                published.add(manifest.cid, manifest.encode())
            started = time.perf_counter()
            export_bundle(Chain(network.rpc_url, network.contract), published, writer.agent, Selection(), bundle)
            exported = time.perf_counter() - started
            print(f"  (audit export: {exported:.1f} s, {bundle.stat().st_size / 2**20:.0f} MiB; not in the figures)")
            with Timed() as timed:
                report = verify_bundle(Chain(network.rpc_url, network.contract), bundle)
            rate("bundle: audit verify (library)", n, timed, report.ok)
            timed, ok = cli(["audit", "verify", str(bundle), *trust])
            rate("bundle: provanchor audit verify (CLI)", n, timed, ok)

            index = root / "index.sqlite"
            fill_index(index, network.chain_id, network.contract, writer, batches)
            with (
                Timed() as timed,
                VerifyContext(network.rpc_url, network.contract, ipfs_api=network.ipfs_api, index_path=index) as ctx,
            ):
                report = verify_agent(ctx, writer.agent)
            rate("index hint: verify agent (library)", n, timed, report.ok)
            print(f"    index hint {report.facts.get('index_hint')}")
            timed, ok = cli(["verify", "agent", writer.agent, *ipfs, "--index", str(index)])
            rate("index hint: provanchor verify agent (CLI)", n, timed, ok)

            if not options.skip_ipfs:
                with (
                    Timed() as timed,
                    VerifyContext(network.rpc_url, network.contract, ipfs_api=network.ipfs_api) as ctx,
                ):
                    report = verify_agent(ctx, writer.agent)
                rate("IPFS only: verify agent (library; Kubo, pipelined block reads)", n, timed, report.ok)
                timed, ok = cli(["verify", "agent", writer.agent, *ipfs])
                rate("IPFS only: provanchor verify agent (CLI)", n, timed, ok)
                # The indexer reads the same blocks, from the chain's events and IPFS alone (issue 13: >= 5,000/s).
                synced = root / "synced.sqlite"
                with Timed() as timed, IndexStore.open(synced, must_exist=False) as store:
                    sync_report = Indexer(store, network).sync()
                rate("index sync from chain + IPFS (library, first sync)", n, timed,
                     sync_report.records == n and sync_report.problems == 0)

            leaves = [merkle.leaf_hash(c.digest) for manifest in writer.manifests for c in manifest.records]
            bench_proofs(leaves, options.proofs)
        finally:
            lifecycle.down(net)


if __name__ == "__main__":
    main()
