"""Past one machine: geth's real block times, and a 3-member IPFS Cluster with replication 2 (issue 17).

Prints, each against its target:

- on geth (dev mode, a block every second), record -> anchored latency at a
  steady 1,000 records/s with a 1 s batch interval: p50 and p95
  (target p95 <= 3 s), beside the same run on anvil in this process;
- on a 3-member cluster with replication 2, three agents recording at once,
  each writing to its own member's Kubo: aggregate records/s end to end
  (target >= 3,000), beside one agent on a single offline Kubo;
- a member lost mid-run: its agent keeps spooling while its node is down;
  when the node returns, how long its spool takes to drain, and on the chain
  0 records lost and 0 duplicated (every seq anchored exactly once).

    python benchmarks/past_one_machine.py [--quick]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import PASSWORD, change, new_agent, run, run_paced

from provanchor.chain.client import LedgerClient
from provanchor.formats.manifest import decode_manifest
from provanchor.home import Home
from provanchor.ipfs.client import IpfsClient
from provanchor.localnet import lifecycle
from provanchor.localnet.cluster import LocalCluster
from provanchor.network import load_network, save_network
from provanchor.pipeline.session import AgentSession
from provanchor.records import decode_record

print = functools.partial(print, flush=True)


def latency_on(engine: str, root: Path, rate: int, seconds: int) -> dict[str, float]:
    (root / engine).mkdir()
    net = Home(root / f"net-{engine}")
    lifecycle.up(net, chain=engine)
    try:
        return run_paced(net, root / engine, rate=rate, seconds=seconds)
    finally:
        lifecycle.down(net)


def agent_on_member(net: Home, root: Path, name: str, member: int) -> Home:
    """An agent whose blocks go to cluster member `member`'s Kubo (as on its own host)."""
    home = new_agent(net, root, name)
    network = load_network(home)
    kubo = LocalCluster(net.root).kubo(member)
    assert network.ipfs_cluster is not None and kubo.api_multiaddr is not None
    save_network(home, replace(network, ipfs_api=kubo.api_multiaddr, ipfs_repo=str(kubo.repo)))
    return home


def cluster_throughput(net: Home, root: Path, count: int) -> float:
    homes = [agent_on_member(net, root, f"agent-{m}", m) for m in range(3)]
    results: list[float] = []
    started = time.perf_counter()

    def one(home: Home, offset: int) -> None:
        with AgentSession.open(home, password=PASSWORD, batch_size=1024, interval=1.0) as session:
            session.start()
            for i in range(count):
                session.submit(change(offset + i))
            while session.spool.anchored_size() < count:
                time.sleep(0.05)
            session.stop()
        results.append(time.perf_counter() - started)

    threads = [threading.Thread(target=one, args=(home, n * count)) for n, home in enumerate(homes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 3 * count / max(results)


def member_lost(net: Home, root: Path, count: int) -> tuple[float, int, int]:
    """Agent on member 2 records while member 2 is down; returns (drain seconds, lost, duplicated)."""
    home = agent_on_member(net, root, "returning", 2)
    cluster = LocalCluster(net.root)
    with AgentSession.open(home, password=PASSWORD, batch_size=256, interval=0.5) as session:
        session.start()
        for i in range(count // 2):
            session.submit(change(10_000_000 + i)).result()
        cluster.peer(2).stop()
        cluster.kubo(2).stop()
        for i in range(count // 2, count):
            session.submit(change(10_000_000 + i)).result()
        restarting = time.perf_counter()
        cluster.start(3)  # returns once every member has heard every other's metrics
        while session.spool.anchored_size() < count:
            time.sleep(0.05)
        drained = time.perf_counter() - restarting
        session.stop()
        agent = session.address
    network = load_network(net)
    ledger = LedgerClient(network.rpc_url, network.contract)
    ipfs = IpfsClient(network.ipfs_api)
    seqs: list[int] = []
    for event in ledger.anchor_events(agent):
        assert event.manifest is not None
        for cid in decode_manifest(ipfs.get_block(event.manifest)).records:
            seqs.append(decode_record(ipfs.get_block(cid)).seq)
    lost = len(set(range(count)) - set(seqs))
    duplicated = len(seqs) - len(set(seqs))
    return drained, lost, duplicated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small runs, for checking the script works")
    args = parser.parse_args()
    os.environ.setdefault("PROVANCHOR_PASSWORD", PASSWORD)
    seconds = 3 if args.quick else 10
    per_agent = 2_000 if args.quick else 20_000
    with tempfile.TemporaryDirectory(prefix="provanchor-past-one-") as tmp:
        root = Path(tmp)
        print(f"record -> anchored at a steady 1,000 records/s for {seconds} s, 1 s interval:")
        for engine in ("anvil", "geth"):
            paced = latency_on(engine, root, 1000, seconds)
            target = " (target p95 <= 3 s)" if engine == "geth" else ""
            print(f"  {engine:5}: p50 {paced['p50']:.2f} s, p95 {paced['p95']:.2f} s{target}")

        single = Home(root / "single")
        lifecycle.up(single)
        try:
            baseline = run(single, root, "single-agent", 3 * per_agent, 1024, 1.0, 4)["rate"]
        finally:
            lifecycle.down(single)
        net = Home(root / "cluster")
        lifecycle.up(net, ipfs_peers=3, replication=2)
        try:
            aggregate = cluster_throughput(net, root, per_agent)
            print(
                f"\n3-member cluster, replication 2, three agents at once ({3 * per_agent:,} records): "
                f"{aggregate:,.0f} records/s aggregate (target >= 3,000); one agent on one offline Kubo "
                f"in this run: {baseline:,.0f} records/s"
            )
            drained, lost, duplicated = member_lost(net, root, 2_000 if args.quick else 10_000)
            print(
                f"member lost mid-run and back: spool drained {drained:.1f} s after its restart began; "
                f"{lost} record(s) lost, {duplicated} duplicated (target 0 and 0)"
            )
        finally:
            lifecycle.down(net)


if __name__ == "__main__":
    main()
