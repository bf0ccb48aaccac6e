"""IPFS Cluster as the data plane, for real: three Kubo nodes, three cluster peers (CRDT), replication 2.

Anchored batches are replicated before their checkpoint is anchored, so the
writer's own node can disappear and every record stays retrievable from the
others; a member down does not stop anchoring; a replication that cannot be
met keeps the records spooled until it can; bad configurations are one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers.waiting import wait_until

from provanchor.errors import IpfsUnavailable
from provanchor.formats.cid import CID
from provanchor.formats.manifest import decode_manifest
from provanchor.formats.unixfs import cid_for_bytes
from provanchor.home import Home
from provanchor.ipfs.client import IpfsClient
from provanchor.localnet import lifecycle
from provanchor.localnet.cluster import LocalCluster
from provanchor.localnet.devagents import enroll_agent
from provanchor.network import load_network, save_network
from provanchor.pipeline.session import AgentSession
from provanchor.records import Capture, CaptureBackend, Change, ContentRef, Op, file_location

PASSWORD = "cluster-test"
CLI = [sys.executable, "-m", "provanchor.cli.main"]


@pytest.fixture(scope="module")
def cluster_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    home = Home(tmp_path_factory.mktemp("cluster-net"))
    lifecycle.up(home, ipfs_peers=3)
    try:
        yield home
    finally:
        lifecycle.down(home)


def change(i: int) -> tuple[Change, bytes]:
    """A create with its content (a 1-block file): the content is stored, and replicated, with its batch."""
    data = f"content {i}\n".encode()
    built = Change(
        time=1_700_000_000_000_000_000 + i,
        host="cluster-host",
        location=file_location("cluster-host", f"/data/f{i}.txt"),
        op=Op.CREATE,
        capture=Capture(CaptureBackend.MANUAL, True),
        user="tester",
        uid=1000,
        after=ContentRef(hashlib.sha256(data).digest(), len(data), CID.parse(cid_for_bytes(data))),
    )
    return built, data


def record_and_flush(home: Home, first: int, count: int) -> None:
    with AgentSession.open(home, password=PASSWORD, batch_size=4) as session:
        for i in range(first, first + count):
            built, data = change(i)
            session.record(built, data)
        session.flush(timeout=120)


def log_blocks(network_home: Home, agent: str) -> list[CID]:
    """Every manifest, record and content CID of the agent's anchored log, from the chain's events."""
    from provanchor.chain.client import LedgerClient
    from provanchor.records import decode_record

    network = load_network(network_home)
    ledger = LedgerClient(network.rpc_url, network.contract)
    ipfs = IpfsClient(network.ipfs_api)
    cids: list[CID] = []
    for event in ledger.anchor_events(agent):
        assert event.manifest is not None
        cids.append(event.manifest)
        for record_cid in decode_manifest(ipfs.get_block(event.manifest)).records:
            cids.append(record_cid)
            record = decode_record(ipfs.get_block(record_cid))
            if record.after is not None and record.after.cid is not None:
                cids.append(record.after.cid)
    return cids


def test_node_up_builds_the_cluster_and_status_lists_its_peers(cluster_home: Home) -> None:
    network = load_network(cluster_home)
    assert network.ipfs_cluster is not None and network.ipfs_cluster["replication"] == 2
    status = lifecycle.status(cluster_home)
    peers = status["ipfs_peers"]
    assert status["replication"] == 2 and len(peers) == 3
    assert all(p["state"] == "online" and p["id"] and p["api"] for p in peers)
    secret = LocalCluster(cluster_home.root).secret_file
    assert secret.stat().st_mode & 0o777 == 0o600


def test_anchored_records_survive_the_loss_of_the_writers_node(cluster_home: Home, tmp_path: Path) -> None:
    home, identity = enroll_agent(cluster_home, tmp_path / "agent", "writer", PASSWORD)
    record_and_flush(home, 0, 10)  # three batches, each replicated on two members before its anchor
    cids = log_blocks(cluster_home, identity.address)
    assert len(cids) == 3 + 10 + 10
    cluster = LocalCluster(cluster_home.root)
    survivors = cluster.members()[1:]
    cluster.peer(0).stop()
    cluster.kubo(0).stop()
    try:
        for cid in cids:  # each block from a survivor, hashed against its CID by the client
            held = 0
            for member in survivors:
                with IpfsClient(member.kubo_api, block_timeout=10) as client:
                    held += client.get_block(cid) is not None
            assert held == 2, cid
    finally:
        cluster.start(3)


def test_a_member_down_does_not_stop_anchoring(cluster_home: Home, tmp_path: Path) -> None:
    home, identity = enroll_agent(cluster_home, tmp_path / "agent", "one-down", PASSWORD)
    cluster = LocalCluster(cluster_home.root)
    cluster.peer(2).stop()
    cluster.kubo(2).stop()
    try:
        def member_2_gone() -> dict[str, Any] | None:
            status = lifecycle.status(cluster_home)
            return status if status["ipfs_peers"][2]["state"] != "online" else None

        status = wait_until(member_2_gone, 30, "the cluster to see member 2 gone")
        assert [p["state"] for p in status["ipfs_peers"]][:2] == ["online", "online"]
        record_and_flush(home, 100, 6)
        assert len(log_blocks(cluster_home, identity.address)) == 2 + 6 + 6
    finally:
        cluster.start(3)


def test_a_replication_that_cannot_be_met_keeps_records_spooled(cluster_home: Home, tmp_path: Path) -> None:
    home, identity = enroll_agent(cluster_home, tmp_path / "agent", "starved", PASSWORD)
    network = load_network(cluster_home)
    assert network.ipfs_cluster is not None
    # The agent's copy of the network descriptor waits 5 s for replicas instead of 120.
    save_network(home, replace(load_network(home), ipfs_cluster={**network.ipfs_cluster, "pin_timeout": 5}))
    cluster = LocalCluster(cluster_home.root)
    for index in (1, 2):
        cluster.peer(index).stop()
        cluster.kubo(index).stop()
    try:
        with AgentSession.open(home, password=PASSWORD, batch_size=4) as session:
            for i in range(3):
                built, data = change(200 + i)
                session.record(built, data)
            with pytest.raises(IpfsUnavailable, match="not pinned on 2 member"):
                session.flush(timeout=30)
            stats = session.spool.stats()
            assert stats["records"] == 3 and stats["anchored_size"] == 0
    finally:
        cluster.start(3)
    with AgentSession.open(home, password=PASSWORD, batch_size=4) as session:
        status = session.flush(timeout=120)
    assert status is not None and status.size == 3
    assert len(log_blocks(cluster_home, identity.address)) == 1 + 3 + 3


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROVANCHOR_HOME": str(home)}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=180)


def one_line(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_bad_cluster_configurations_are_one_line(cluster_home: Home, tmp_path: Path) -> None:
    one_line(run(tmp_path / "a", "node", "up", "--ipfs-peers", "2", "--replication", "3"), "--replication 3")
    one_line(run(tmp_path / "b", "node", "up", "--replication", "2"), "--ipfs-peers")
    one_line(run(cluster_home.root, "node", "up", "--ipfs-peers", "2"), "3 member(s)")
    # A cluster peer whose secret is not this network's: refused, naming the remedy.
    home = tmp_path / "c"
    assert run(home, "node", "up", "--ipfs-peers", "1", "--json").returncode == 0
    try:
        assert run(home, "node", "down").returncode == 0
        LocalCluster(home).secret_file.write_text("ab" * 32 + "\n")
        one_line(run(home, "node", "up"), "another cluster secret", "--reset")
    finally:
        lifecycle.down(Home(home))


def test_the_cluster_rest_api_is_what_status_reports(cluster_home: Home) -> None:
    network = load_network(cluster_home)
    assert network.ipfs_cluster is not None
    with urllib.request.urlopen(f"{network.ipfs_cluster['api']}/id", timeout=5) as reply:
        identity = json.loads(reply.read())
    assert identity["id"] == lifecycle.status(cluster_home)["ipfs_peers"][0]["id"]


def test_a_snapshot_is_replicated_before_it_is_anchored(cluster_home: Home, tmp_path: Path) -> None:
    from provanchor.hostid import default_host_id
    from provanchor.ipfs.cluster import ClusterClient, ClusterConfig
    from provanchor.snapshot.service import take_snapshot

    home, _ = enroll_agent(cluster_home, tmp_path / "agent", "snapshotter", PASSWORD)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(300_000))  # two chunks: a multi-block file
    with AgentSession.open(home, password=PASSWORD) as session:
        result = take_snapshot(session, str(tree), default_host_id())
    network = load_network(cluster_home)
    assert network.ipfs_cluster is not None
    cluster = ClusterClient(ClusterConfig.from_json(network.ipfs_cluster))
    assert cluster.pinned_on(CID.parse(result.snapshot_id)) >= 2
