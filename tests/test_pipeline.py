"""The recording pipeline against a real anvil and a real Kubo daemon.

Records must be signed, spooled durably, stored on IPFS, appended to the
agent's Merkle log and anchored, with nothing lost or repeated across crashes
at every step and across IPFS or chain outages.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from provanchor.chain.client import LedgerClient
from provanchor.errors import ChainUnavailable, ConfigError, IpfsUnavailable
from provanchor.formats import merkle
from provanchor.formats.cid import CID
from provanchor.formats.manifest import decode_manifest
from provanchor.home import Home
from provanchor.identity import AgentIdentity
from provanchor.ipfs.client import IpfsClient
from provanchor.localnet.devagents import enroll_agent
from provanchor.localnet.devkeys import load_governor_keys
from provanchor.localnet.geth import GethService
from provanchor.localnet.processes import AnvilService, IpfsService
from provanchor.network import load_network
from provanchor.pipeline.faults import POINTS
from provanchor.pipeline.session import AgentSession
from provanchor.records import (
    Capture,
    CaptureBackend,
    Change,
    ContentRef,
    Eip712Domain,
    Op,
    decode_record,
    recover_signer,
)

PASSWORD = "correct horse battery staple"
WORKER = Path(__file__).parent / "helpers" / "pipeline_worker.py"


CHAIN_ENGINES = ("anvil", "geth")  # real block times too (see conftest)
GETH_TESTS = {
    "test_records_are_signed_stored_and_anchored",
    "test_background_anchoring_within_seconds",
    # On geth, the crash points where real block times matter (a sent transaction not yet mined, a receipt
    # seen but not recorded); the others crash before anything reaches the chain, which anvil covers.
    "test_crash_at_every_step_loses_and_repeats_nothing[after-send]",
    "test_crash_at_every_step_loses_and_repeats_nothing[after-receipt]",
    "test_chain_outage_keeps_recording_and_resumes",
    "test_concurrent_recorders_group_commit_without_gaps",
    "test_before_follows_the_last_known_version_even_when_pipelined",
}

def governor(net_home: Home) -> LedgerClient:
    network = load_network(net_home)
    return LedgerClient(network.rpc_url, network.contract, load_governor_keys(net_home)[0])


def agent_home(net_home: Home, root: Path, name: str, approve: bool = True) -> tuple[Home, AgentIdentity]:
    return enroll_agent(net_home, root / name, name, PASSWORD, approve=approve)


def change(i: int, tag: str = "t") -> Change:
    return Change(
        time=time.time_ns(),
        host="test-host",
        location=f"file://test-host/data/{tag}/{i}.txt",
        op=Op.CREATE,
        capture=Capture(backend=CaptureBackend.MANUAL, attributed=False, reason="test"),
        user="alice",
    )


def anchored_log(net_home: Home, agent: str) -> list[tuple[int, bytes, CID, list[bytes]]]:
    """Walk the agent's checkpoints from the chain and IPFS: (seq, hash, cid, signature) per record."""
    network = load_network(net_home)
    ledger = LedgerClient(network.rpc_url, network.contract)
    ipfs = IpfsClient(network.ipfs_api)
    domain = Eip712Domain(network.chain_id, network.contract)
    entries: list[tuple[int, bytes, CID, list[bytes]]] = []
    leaves: list[bytes] = []
    for event in ledger.anchor_events(agent):
        assert event.manifest is not None
        manifest = decode_manifest(ipfs.get_block(event.manifest))
        assert manifest.start == len(leaves) and manifest.size == event.size
        for cid, signature in zip(manifest.records, manifest.signatures, strict=True):
            block = ipfs.get_block(cid)
            record = decode_record(block)
            assert recover_signer(domain, record.hash, signature).lower() == agent.lower()
            leaves.append(merkle.leaf_hash(record.hash))
            entries.append((record.seq, record.hash, cid, [signature]))
        assert merkle.root(leaves) == event.root == manifest.root
    return entries


def assert_exactly_once(entries: list[tuple[int, bytes, CID, list[bytes]]], count: int) -> None:
    assert [seq for seq, *_ in entries] == list(range(count))
    assert len({h for _, h, *_ in entries}) == count


def test_records_are_signed_stored_and_anchored(net_home: Home, tmp_path: Path) -> None:
    home, identity = agent_home(net_home, tmp_path, "basic")
    with AgentSession.open(home, password=PASSWORD, batch_size=8) as session:
        refs = [session.record(change(i)) for i in range(20)]
        assert [r.seq for r in refs] == list(range(20))
        status = session.flush()
    assert status is not None and status.size == 20 and status.checkpoint == 2  # batches of 8, 8, 4
    entries = anchored_log(net_home, identity.address)
    assert_exactly_once(entries, 20)
    assert [cid for _, _, cid, _ in entries] == [r.cid for r in refs]
    # prev links chain the records; the contract agrees on inclusion.
    ipfs = IpfsClient(load_network(net_home).ipfs_api)
    records = [decode_record(ipfs.get_block(r.cid)) for r in refs]
    assert records[0].prev is None and all(b.prev == a.hash for a, b in itertools.pairwise(records))
    leaves = [merkle.leaf_hash(r.hash) for r in records]
    ledger = governor(net_home)
    proof = merkle.inclusion_proof(leaves, 13)
    assert ledger.verify_inclusion(leaves[13], 13, 20, proof, merkle.root(leaves))


def test_background_anchoring_within_seconds(net_home: Home, tmp_path: Path) -> None:
    home, identity = agent_home(net_home, tmp_path, "background")
    with AgentSession.open(home, password=PASSWORD, batch_size=64, interval=0.3) as session:
        session.start()
        started = time.monotonic()
        for i in range(10):
            session.record(change(i))
        while session.spool.stats()["anchored_size"] < 10 and time.monotonic() - started < 10:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        assert session.spool.stats()["anchored_size"] == 10, session.last_error
    assert elapsed < 5
    assert governor(net_home).checkpoint_count(identity.address) >= 1


def run_worker(home: Home, *args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROVANCHOR_PASSWORD": PASSWORD}
    env.pop("PROVANCHOR_CRASH_AT", None)
    if crash:
        env["PROVANCHOR_CRASH_AT"] = crash
    return subprocess.run(
        [sys.executable, str(WORKER), str(home.root), *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize("point", POINTS)
def test_crash_at_every_step_loses_and_repeats_nothing(net_home: Home, tmp_path: Path, point: str) -> None:
    home, identity = agent_home(net_home, tmp_path, f"crash-{point}")
    if point == "after-spool-commit":
        killed = run_worker(home, "record", "3", "a", crash=point)
        assert killed.returncode == -9 and killed.stdout == ""  # died before acknowledging anything
        survivors = 1
    else:
        done = run_worker(home, "record", "10", "a")
        assert done.returncode == 0, done.stderr
        survivors = 10
        killed = run_worker(home, "flush", crash=point)
        assert killed.returncode == -9, killed.stderr
    more = run_worker(home, "record", "3", "b")
    assert more.returncode == 0, more.stderr
    assert [int(x) for x in more.stdout.split()] == [survivors, survivors + 1, survivors + 2]
    flushed = run_worker(home, "flush")
    assert flushed.returncode == 0, flushed.stderr
    total = survivors + 3
    assert int(flushed.stdout) == total
    entries = anchored_log(net_home, identity.address)
    assert_exactly_once(entries, total)
    ledger = governor(net_home)
    # Exactly one checkpoint per batch, even though a flush died halfway.
    with AgentSession.open(home, password=PASSWORD) as session:
        batches = session.spool.batches()
        assert all(b.state == "anchored" for b in batches)
        assert ledger.checkpoint_count(identity.address) == len(batches)
        sizes = [ledger.checkpoint(identity.address, b.checkpoint_index).size for b in batches]
        assert sizes == [b.size for b in batches]


def test_ipfs_outage_keeps_recording_and_resumes(net_home: Home, tmp_path: Path) -> None:
    home, identity = agent_home(net_home, tmp_path, "ipfs-outage")
    ipfs = IpfsService(net_home.root)
    with AgentSession.open(home, password=PASSWORD, batch_size=4) as session:
        for i in range(3):
            session.record(change(i))
        session.flush()
        ipfs.stop()
        try:
            for i in range(3, 9):
                session.record(change(i))  # the spool does not need IPFS
            with pytest.raises(IpfsUnavailable):
                session.flush(timeout=10)
            assert session.spool.stats()["records"] == 9
        finally:
            ipfs.start()
        status = session.flush()
    assert status is not None and status.size == 9
    assert_exactly_once(anchored_log(net_home, identity.address), 9)


def test_chain_outage_keeps_recording_and_resumes(
    net_home: Home, tmp_path: Path, chain_service: AnvilService | GethService
) -> None:
    home, identity = agent_home(net_home, tmp_path, "chain-outage")
    anvil = chain_service
    with AgentSession.open(home, password=PASSWORD, batch_size=4) as session:
        session.record(change(0))
        session.flush()
        anvil.stop()
        try:
            for i in range(1, 7):
                session.record(change(i))
            with pytest.raises(ChainUnavailable):
                session.flush(timeout=10)
            assert session.spool.stats()["records"] == 7
        finally:
            anvil.start()
        status = session.flush()
    assert status is not None and status.size == 7
    assert_exactly_once(anchored_log(net_home, identity.address), 7)


def test_background_thread_survives_an_outage(net_home: Home, tmp_path: Path) -> None:
    home, _ = agent_home(net_home, tmp_path, "bg-outage")
    ipfs = IpfsService(net_home.root)
    errors: list[Exception] = []
    with AgentSession.open(home, password=PASSWORD, batch_size=4, interval=0.2) as session:
        ipfs.stop()
        try:
            session.start(on_error=errors.append)
            for i in range(5):
                session.record(change(i))
            time.sleep(1.0)
            assert session.spool.stats()["anchored_size"] == 0
        finally:
            ipfs.start()
        deadline = time.monotonic() + 15
        while session.spool.stats()["anchored_size"] < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session.spool.stats()["anchored_size"] == 5
    assert any(isinstance(e, IpfsUnavailable) for e in errors)


def cli(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROVANCHOR_HOME": str(home.root), "PROVANCHOR_PASSWORD": PASSWORD}
    return subprocess.run(
        [sys.executable, "-m", "provanchor.cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_unregistered_and_revoked_agents_cannot_anchor_and_keep_their_records(net_home: Home, tmp_path: Path) -> None:
    home, identity = agent_home(net_home, tmp_path, "stranger", approve=False)
    data = tmp_path / "file.txt"
    data.write_text("content\n")
    recorded = cli(home, "record", "--location", str(data), "--op", "create", "--json")
    assert recorded.returncode == 0, recorded.stderr
    refused = cli(home, "anchor", "--flush")
    assert refused.returncode != 0
    assert refused.stderr.strip().count("\n") == 0 and "NotActiveAgent" in refused.stderr
    with AgentSession.open(home, password=PASSWORD) as session:
        assert session.spool.stats()["records"] == 1

    # Approved, it anchors what it kept; revoked, it is refused again and keeps the rest.
    assert governor(net_home).propose_add_agent(identity.address, "stranger").executed
    assert cli(home, "anchor", "--flush").returncode == 0
    assert governor(net_home).propose_revoke_agent(identity.address).executed
    assert cli(home, "record", "--location", str(data), "--op", "write").returncode == 0
    refused = cli(home, "anchor", "--flush")
    assert refused.returncode != 0 and "NotActiveAgent" in refused.stderr
    with AgentSession.open(home, password=PASSWORD) as session:
        stats = session.spool.stats()
    assert stats["records"] == 2 and stats["anchored_size"] == 1


def test_concurrent_recorders_group_commit_without_gaps(net_home: Home, tmp_path: Path) -> None:
    home, identity = agent_home(net_home, tmp_path, "threads")
    with AgentSession.open(home, password=PASSWORD, batch_size=256) as session:
        seqs: list[int] = []
        lock = threading.Lock()

        def work(t: int) -> None:
            for i in range(50):
                ref = session.record(change(i, tag=f"thread{t}"))
                with lock:
                    seqs.append(ref.seq)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(seqs) == list(range(400))
        session.flush()
    assert_exactly_once(anchored_log(net_home, identity.address), 400)


def test_a_bad_change_fails_alone(net_home: Home, tmp_path: Path) -> None:
    home, _ = agent_home(net_home, tmp_path, "bad")
    with AgentSession.open(home, password=PASSWORD) as session:
        good = session.recorder.submit(change(0))
        bad = session.recorder.submit(
            Change(
                time=-1,
                host="h",
                location="file://h/x",
                op=Op.CREATE,
                capture=Capture(backend=CaptureBackend.MANUAL, attributed=False, reason="x"),
            )
        )
        assert good.result().seq == 0
        with pytest.raises(Exception, match="time"):
            bad.result()
        assert session.record(change(1)).seq == 1


def test_contract_error_is_named_for_wrong_network(net_home: Home, tmp_path: Path) -> None:
    """A spool bound to one ledger refuses another deployment."""
    home, _ = agent_home(net_home, tmp_path, "bound")
    with AgentSession.open(home, password=PASSWORD) as session:
        session.record(change(0))
    other = load_network(home).to_json() | {"contract": "0x" + "11" * 20}
    home.network_file.write_text(json.dumps(other))
    with pytest.raises(ConfigError, match="belongs to contract"):
        AgentSession.open(home, password=PASSWORD)


def test_before_follows_the_last_known_version_even_when_pipelined(net_home: Home, tmp_path: Path) -> None:
    home, _ = agent_home(net_home, tmp_path, "before")

    def content(text: bytes) -> ContentRef:
        return ContentRef(sha256=hashlib.sha256(text).digest(), size=len(text), cid=None)

    def write(op: Op, text: bytes | None, location: str = "file://test-host/data/f", **extra: object) -> Change:
        return Change(
            time=time.time_ns(),
            host="test-host",
            location=location,
            op=op,
            capture=Capture(backend=CaptureBackend.MANUAL, attributed=False, reason="test"),
            after=content(text) if text is not None else None,
            **extra,
        )  # type: ignore[arg-type]

    with AgentSession.open(home, password=PASSWORD) as session:
        futures = [
            session.submit(write(Op.CREATE, b"one")),
            session.submit(write(Op.WRITE, b"two")),
            session.submit(
                write(Op.RENAME, b"two", location="file://test-host/data/g", from_location="file://test-host/data/f")
            ),
            session.submit(write(Op.DELETE, None, location="file://test-host/data/g")),
            session.submit(write(Op.CREATE, b"three", location="file://test-host/data/g")),
        ]
        refs = [f.result() for f in futures]
        records = [decode_record(session.spool.record_by_seq(r.seq).data) for r in refs]  # type: ignore[union-attr]
    assert records[0].before is None
    assert records[1].before is not None and records[1].before.sha256 == hashlib.sha256(b"one").digest()
    assert records[2].before is not None and records[2].before.sha256 == hashlib.sha256(b"two").digest()
    assert records[3].before is not None and records[3].before.sha256 == hashlib.sha256(b"two").digest()
    assert records[4].before is None  # deleted in between: the new file has no past
