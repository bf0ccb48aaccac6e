"""Third-party verification of honest logs against a real chain and IPFS: library and CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provanchor.home import Home
from provanchor.index.store import IndexStore
from provanchor.index.sync import Indexer
from provanchor.ipfs.cid import CID
from provanchor.ipfs.unixfs import cid_for_bytes
from provanchor.localnet.devagents import enroll_agent
from provanchor.network import NetworkDescriptor, load_network
from provanchor.pipeline.session import AgentSession
from provanchor.records import Capture, CaptureBackend, Change, ContentRef, Op, file_location
from provanchor.verify.api import VerifyContext, verify_agent, verify_record

PASSWORD = "verify-test"
CLI = [sys.executable, "-m", "provanchor.cli.main"]
T0 = 1_700_000_000 * 10**9


def content_change(location: str, data: bytes, t: int, op: Op = Op.WRITE, run: str | None = None) -> Change:
    return Change(
        time=t,
        host="h1",
        location=location,
        op=op,
        user="alice",
        run=run,
        capture=Capture(backend=CaptureBackend.MANUAL, attributed=False, reason="test"),
        after=ContentRef(hashlib.sha256(data).digest(), len(data), CID.parse(cid_for_bytes(data))),
    )


@pytest.fixture(scope="module")
def network(net_home: Home) -> NetworkDescriptor:
    return load_network(net_home)


@pytest.fixture(scope="module")
def honest(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One agent, 10 records in 3 checkpoints, every record with content on IPFS."""
    root = tmp_path_factory.mktemp("honest")
    home, _ = enroll_agent(net_home, root / "agent", "honest", PASSWORD)
    ids: list[str] = []
    with AgentSession.open(home, password=PASSWORD, batch_size=4) as session:
        for i in range(10):
            data = f"content {i}\n".encode()
            ref = session.record(content_change(f"file://h1/data/f{i % 3}", data, T0 + i * 10**9), data)
            ids.append(ref.record_id)
        session.flush()
        agent = session.address.lower()
    return {"agent": agent, "ids": ids}


def context(network: NetworkDescriptor, **kwargs: object) -> VerifyContext:
    return VerifyContext(network.rpc_url, network.contract, ipfs_api=network.ipfs_api, **kwargs)  # type: ignore[arg-type]


def test_verify_record_passes_every_named_check(network: NetworkDescriptor, honest: dict[str, object]) -> None:
    ids = honest["ids"]
    assert isinstance(ids, list)
    with context(network) as ctx:
        for record_id in (ids[0], ids[5], ids[9]):
            report = verify_record(ctx, record_id)
            assert report.ok, report.render()
            names = {c.name for c in report.checks}
            assert names >= {
                "blocks match CIDs",
                "record format",
                "signature",
                "agent active at anchoring block",
                "inclusion proof",
                "inclusion proof (contract verifyInclusion)",
                "seq and prev links",
                "content matches hashes",
            }
        # Later checkpoints also check the consistency of the ones before.
        last = verify_record(ctx, ids[9])
        assert any(c.name == "checkpoint consistency" and c.ok for c in last.checks)
        assert last.facts["checkpoint"] == 2


def test_verify_agent_whole_log_with_and_without_index_hint(
    network: NetworkDescriptor, honest: dict[str, object], tmp_path: Path
) -> None:
    agent = str(honest["agent"])
    with context(network) as ctx:
        report = verify_agent(ctx, agent, with_content=True)
        assert report.ok, report.render()
        assert report.facts["records"] == 10 and report.facts["checkpoints"] == 3
    index = tmp_path / "index.sqlite"
    with IndexStore.open(index, must_exist=False) as store:
        Indexer(store, network).sync()
    with context(network, index_path=index) as ctx:
        report = verify_agent(ctx, agent)
        assert report.ok, report.render()
        assert report.facts["index_hint"] == {"served": 10, "refused": 0}
