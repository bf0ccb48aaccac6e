"""Three hosts of our own and one for the chain, on one machine: a host lost and back.

Each host is a network namespace (tests/helpers/netns.py) running a Kubo
node, an IPFS Cluster peer (CRDT, replication 2) and a capture agent writing
to its own data directory; the chain (anvil) has a host of its own. The
scenario: the three agents record concurrently; one host is cut off mid-run
(its link goes down), then killed; the other two keep anchoring; everything
anchored before the cut is retrievable from the survivors and `verify all`
passes there; the host comes back, its agent drains its spool with no
sequence gap and nothing twice, and the cluster holds every pin on two
members again.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from helpers.agent_service import CLI, Agent
from helpers.netns import HostNetwork, NetHost, unavailable
from helpers.waiting import wait_until

from provanchor.chain.client import LedgerClient
from provanchor.formats.cid import CID
from provanchor.formats.manifest import decode_manifest
from provanchor.home import Home
from provanchor.ipfs.client import IpfsClient
from provanchor.localnet import lifecycle
from provanchor.localnet.cluster import LocalCluster
from provanchor.network import load_network, save_network
from provanchor.records import decode_record

WHY_NOT = unavailable()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"hosts of our own need network namespaces: {WHY_NOT}")

REPLICATION = 2


@dataclass
class Site:
    """One host of the consortium: where it runs, its cluster member index, its agent."""

    net: NetHost
    index: int
    agent: Agent


@dataclass
class Network:
    hosts: HostNetwork
    home: Home
    cluster: LocalCluster
    sites: list[Site]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    hosts = HostNetwork()
    root = tmp_path_factory.mktemp("hosts")
    home = Home(root / "net")
    try:
        chain = hosts.add("chain")
        members = [hosts.add(f"h{i}") for i in range(3)]
        placed = [m.host for m in members]
        lifecycle.up(home, ipfs_peers=3, replication=REPLICATION, chain_host=chain.host, ipfs_hosts=placed)
        cluster = LocalCluster(home.root, placed)
        sites = [Site(member, i, agent_on(home, cluster, member, i, root)) for i, member in enumerate(members)]
        yield Network(hosts, home, cluster, sites)
    finally:
        lifecycle.down(home)
        hosts.close()


def agent_on(net_home: Home, cluster: LocalCluster, member: NetHost, index: int, root: Path) -> Agent:
    """An enrolled agent whose network descriptor names its own host's Kubo node and cluster peer."""
    agent = Agent(net_home, root / member.name, f"agent-{member.name}", "inotify")
    descriptor = load_network(agent.home)
    assert descriptor.ipfs_cluster is not None
    kubo, peer = cluster.kubo(index), cluster.peer(index)
    assert kubo.api_multiaddr is not None and peer.api_url is not None
    # A partitioned agent gives up on replication after 20 s (and retries later) instead of 120.
    own = {**descriptor.ipfs_cluster, "api": peer.api_url, "pin_timeout": 20}
    save_network(
        agent.home, replace(descriptor, ipfs_api=kubo.api_multiaddr, ipfs_repo=str(kubo.repo), ipfs_cluster=own)
    )
    return agent


class Writer(threading.Thread):
    """Creates a new file in an agent's data directory every 50 ms until stopped."""

    def __init__(self, agent: Agent, prefix: str) -> None:
        super().__init__(daemon=True)
        self.agent, self.prefix, self.written = agent, prefix, 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            (self.agent.data / f"{self.prefix}-{self.written:04d}.txt").write_text(f"{self.prefix} {self.written}\n")
            self.written += 1
            time.sleep(0.05)

    def stop(self) -> None:
        self.halt.set()
        self.join()


def spooled(agent: Agent) -> list[int]:
    db = next((agent.home.root / "agents").glob("*/spool.sqlite"))
    with sqlite3.connect(db) as connection:
        return [int(row[0]) for row in connection.execute("SELECT seq FROM records ORDER BY seq")]


def drained(agent: Agent) -> int | None:
    """The log's size once everything spooled is anchored (seqs count from 0), else None."""
    seqs = spooled(agent)
    return len(seqs) if seqs and agent.anchored() == seqs[-1] + 1 else None


def wait_drained(agent: Agent, what: str) -> int:
    try:
        size = wait_until(partial(drained, agent), 180, what)
    except AssertionError as exc:  # say what the agent was doing
        raise AssertionError(
            f"{exc}; spooled {len(spooled(agent))}, anchored {agent.anchored()}, status {agent.status()}"
        ) from exc
    assert size is not None
    return size


def has_anchored(agent: Agent, count: int) -> bool:
    return agent.anchored() >= count


def anchored_log(net_home: Home, agent: Agent, ipfs_api: str) -> tuple[list[CID], list[CID]]:
    """The agent's anchored log read back through `ipfs_api`: (every block it needs, its record CIDs)."""
    network = load_network(net_home)
    ledger = LedgerClient(network.rpc_url, network.contract)
    blocks: list[CID] = []
    records: list[CID] = []
    with IpfsClient(ipfs_api, block_timeout=15) as ipfs:
        for event in ledger.anchor_events(agent.identity.address):
            assert event.manifest is not None
            blocks.append(event.manifest)
            for record_cid in decode_manifest(ipfs.get_block(event.manifest)).records:
                if record_cid in records:
                    continue  # a later checkpoint's manifest repeats the records it extends
                records.append(record_cid)
                blocks.append(record_cid)
                record = decode_record(ipfs.get_block(record_cid))
                if record.after is not None and record.after.cid is not None:
                    blocks.append(record.after.cid)
    return blocks, records


def pin_replicas(cluster_api: str) -> dict[str, int]:
    """Every pin of the cluster and how many members report it pinned, as one member sees it."""
    import urllib.request

    with urllib.request.urlopen(f"{cluster_api}/pins", timeout=10) as reply:
        rows = [json.loads(line) for line in reply.read().splitlines() if line.strip()]
    found: dict[str, int] = {}
    for row in rows:
        peers: dict[str, Any] = row.get("peer_map") or {}
        found[str(row["cid"])] = sum(1 for info in peers.values() if info.get("status") == "pinned")
    return found


def test_a_host_cut_off_and_killed_loses_nothing_and_comes_back(network: Network) -> None:
    first, second, lost = network.sites
    for site in network.sites:
        site.agent.spawn(*site.net.wrap())
    for site in network.sites:
        site.agent.wait_running()
    writers = {site.index: Writer(site.agent, site.net.name) for site in network.sites}
    for writer in writers.values():
        writer.start()

    # Recording on three hosts until each has anchored something.
    for site in network.sites:
        wait_until(partial(has_anchored, site.agent, 10), 90, f"{site.net.name} to anchor")
    anchored_before_cut = lost.agent.anchored()
    network.hosts.cut(lost.net)
    survivors_at_cut = {site.index: site.agent.anchored() for site in (first, second)}
    time.sleep(2)  # the lost host's agent goes on capturing, and cannot anchor
    writers[lost.index].stop()
    time.sleep(1.5)  # past the agent's settle time: the last files are spooled
    network.hosts.kill(lost.net)
    assert lost.agent.process is not None and lost.agent.process.wait(timeout=10) != 0
    spooled_at_kill = spooled(lost.agent)
    assert spooled_at_kill == list(range(len(spooled_at_kill)))
    assert len(spooled_at_kill) > anchored_before_cut  # records were waiting when the host went

    time.sleep(2)
    for index in (first.index, second.index):
        writers[index].stop()
    # The survivors keep anchoring, everything they captured after the cut included.
    for site in (first, second):
        last = wait_drained(site.agent, f"{site.net.name} to anchor with a host gone")
        assert last > survivors_at_cut[site.index]

    # Everything the lost host anchored before the cut is still retrievable from each survivor.
    for site in (first, second):
        kubo_api = network.cluster.kubo(site.index).api_multiaddr
        assert kubo_api is not None
        blocks, records = anchored_log(network.home, lost.agent, kubo_api)
        assert len(records) >= anchored_before_cut
        with IpfsClient(kubo_api, block_timeout=15) as ipfs:
            for cid in blocks:
                assert ipfs.get_block(cid), cid  # the client hashes each block against its CID

    # An auditor on a survivor, with that host's own node: the whole ledger verifies.
    env = {**first.agent.env(), "PROVANCHOR_HOME": str(first.agent.home.root)}
    done = subprocess.run(
        first.net.wrap(*CLI, "verify", "all", "--json"), capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr or done.stdout
    report = json.loads(done.stdout)
    assert report["ok"] is True, report

    # The host comes back: its daemons, then its agent, which drains its spool.
    network.hosts.restore(lost.net)
    back = time.monotonic()
    network.cluster.start(3)
    lost.agent.spawn(*lost.net.wrap())
    lost.agent.wait_running()
    last = wait_drained(lost.agent, "the returning host to drain its spool")
    print(f"returning host drained {last - anchored_before_cut} records in {time.monotonic() - back:.1f} s")
    assert spooled(lost.agent) == list(range(last))  # no seq gap
    assert last >= len(spooled_at_kill)  # nothing spooled before the kill is lost
    kubo_api = network.cluster.kubo(lost.index).api_multiaddr
    assert kubo_api is not None
    _, records = anchored_log(network.home, lost.agent, kubo_api)
    assert len(records) == last and len(set(records)) == last  # every seq anchored once
    paths = [str(decode_record(block).location) for block in _blocks(kubo_api, records)]
    assert len(paths) == len(set(paths))  # each file written once is recorded once

    # The cluster holds every pin on the replication factor's worth of members again.
    cluster_api = network.cluster.peer(first.index).api_url
    assert cluster_api is not None

    def replicated() -> dict[str, int] | None:
        replicas = pin_replicas(cluster_api)
        return replicas if replicas and min(replicas.values()) >= REPLICATION else None

    wait_until(replicated, 120, f"every pin to be held by {REPLICATION} members")
    for site in (first, second):
        assert site.agent.process is not None
        site.agent.stop()
    lost.agent.stop()


def _blocks(ipfs_api: str, cids: list[CID]) -> list[bytes]:
    with IpfsClient(ipfs_api, block_timeout=15) as ipfs:
        return [ipfs.get_block(cid) for cid in cids]
