"""Past one machine: geth's real block times, and a 3-member IPFS Cluster with replication 2 (issue 17).

Prints, each against its target:

- on geth (dev mode, a block every second), record -> anchored latency at a
  steady 1,000 records/s with a 1 s batch interval: p50 and p95
  (target p95 <= 3 s), beside the same run on anvil in this process;
- on a 3-member cluster with replication 2, three agents recording at once,
  each writing to its own member's Kubo and pinning through its own member's
  cluster peer: aggregate records/s end to end (target >= 3,000), beside one
  agent on a single offline Kubo. As root the members and the chain run on
  hosts of our own (network namespaces joined by veth pairs, the harness of
  tests/test_hosts.py); elsewhere on this machine's loopback;
- a member lost mid-run: its agent keeps spooling while its node is down;
  when the node returns, how long its spool takes to drain, and on the chain
  0 records lost and 0 duplicated (every seq anchored exactly once).

    python benchmarks/past_one_machine.py [--quick]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import replace
from multiprocessing.queues import Queue
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.netns import HostNetwork, unavailable
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
    """An agent whose blocks go to cluster member `member`'s Kubo and whose pins go through its peer."""
    home = new_agent(net, root, name)
    network = load_network(home)
    cluster = LocalCluster(net.root)
    kubo, peer = cluster.kubo(member), cluster.peer(member)
    assert network.ipfs_cluster is not None and kubo.api_multiaddr is not None and peer.api_url is not None
    own = {**network.ipfs_cluster, "api": peer.api_url}
    save_network(home, replace(network, ipfs_api=kubo.api_multiaddr, ipfs_repo=str(kubo.repo), ipfs_cluster=own))
    return home


def record_on(home: Path, offset: int, count: int, results: Queue[tuple[float, float, dict[str, float]]]) -> None:
    """One agent process: submit `count` records, wait until all are anchored; (start, end, metrics), the
    metrics with `submitted_seconds` (until the last record was durable in the spool) added."""
    os.environ.setdefault("PROVANCHOR_PASSWORD", PASSWORD)
    with AgentSession.open(Home(home), password=PASSWORD, batch_size=1024, interval=1.0) as session:
        session.start()
        started = time.time()
        futures = [session.submit(change(offset + i)) for i in range(count)]
        for future in futures:
            future.result()
        submitted = time.time() - started
        while session.spool.anchored_size() < count:
            time.sleep(0.05)
        ended = time.time()
        metrics = {**session.anchorer.metrics, "submitted_seconds": submitted}
        session.stop()
    results.put((started, ended, metrics))


def cluster_throughput(net: Home, root: Path, count: int) -> tuple[float, dict[str, float]]:
    """Three agents, each in its own process (as on its own host); aggregate records/s over the span
    from the first start to the last anchor, and the agents' summed anchoring metrics."""
    homes = [agent_on_member(net, root, f"agent-{m}", m) for m in range(3)]
    context = multiprocessing.get_context("spawn")
    results: Queue[tuple[float, float, dict[str, float]]] = context.Queue()
    workers = [
        context.Process(target=record_on, args=(home.root, n * count, count, results)) for n, home in enumerate(homes)
    ]
    for worker in workers:
        worker.start()
    finished = [results.get(timeout=1800) for _ in workers]
    for worker in workers:
        worker.join()
    span = max(end for _, end, _ in finished) - min(start for start, _, _ in finished)
    summed: dict[str, float] = {}
    for _, _, metrics in finished:
        for key, value in metrics.items():
            summed[key] = summed.get(key, 0.0) + value
    return 3 * count / span, summed


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
    parser.add_argument("--cluster-only", action="store_true", help="skip the latency runs on anvil and geth")
    args = parser.parse_args()
    os.environ.setdefault("PROVANCHOR_PASSWORD", PASSWORD)
    seconds = 3 if args.quick else 10
    per_agent = 2_000 if args.quick else 20_000
    with tempfile.TemporaryDirectory(prefix="provanchor-past-one-") as tmp:
        root = Path(tmp)
        print(f"record -> anchored at a steady 1,000 records/s for {seconds} s, 1 s interval:")
        for engine in () if args.cluster_only else ("anvil", "geth"):
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
        why_not = unavailable()
        hosts = HostNetwork() if why_not is None else None
        where = "on 3 hosts of our own (network namespaces)" if hosts else f"on loopback ({why_not})"
        try:
            if hosts is not None:
                chain = hosts.add("chain")
                members = [hosts.add(f"h{i}").host for i in range(3)]
                lifecycle.up(net, ipfs_peers=3, replication=2, chain_host=chain.host, ipfs_hosts=members)
            else:
                lifecycle.up(net, ipfs_peers=3, replication=2)
            aggregate, metrics = cluster_throughput(net, root, per_agent)
            print(
                f"\n3-member cluster {where}, replication 2, three agents at once ({3 * per_agent:,} records): "
                f"{aggregate:,.0f} records/s aggregate (target >= 3,000); one agent on one offline Kubo "
                f"in this run: {baseline:,.0f} records/s"
            )
            spent = ", ".join(f"{k.removesuffix('_seconds')} {v:.1f} s" for k, v in metrics.items() if "seconds" in k)
            print(f"  the three agents' anchorers, summed: {spent}")
            drained, lost, duplicated = member_lost(net, root, 2_000 if args.quick else 10_000)
            print(
                f"member lost mid-run and back: spool drained {drained:.1f} s after its restart began; "
                f"{lost} record(s) lost, {duplicated} duplicated (target 0 and 0)"
            )
        finally:
            lifecycle.down(net)
            if hosts is not None:
                hosts.close()


if __name__ == "__main__":
    main()
