"""Anchoring against a real anvil: who may anchor, what proofs are accepted, checkpoint views."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from eth_account.signers.local import LocalAccount

from provanchor.chain.client import LedgerClient
from provanchor.errors import ContractError
from provanchor.formats import merkle

CID = bytes.fromhex("01711220") + bytes(range(32))  # a CIDv1 dag-cbor sha2-256 in binary


CHAIN_ENGINES = ("anvil", "geth")  # real block times too (see conftest)
GETH_TESTS = {
    "test_mined_revert_is_decoded_when_gas_is_given",
    "test_checkpoint_sequence_and_views",
    "test_wrong_consistency_proofs_and_rewrites_are_refused",
    "test_snapshot_anchors",
}

def leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(salt + i.to_bytes(8, "big")) for i in range(n)]


def test_unregistered_account_cannot_anchor(
    deploy: Callable[..., tuple[LedgerClient, list[LocalAccount]]], new_account: Callable[[], LocalAccount]
) -> None:
    client, _ = deploy(1, 1)
    stranger = client.with_account(new_account())
    with pytest.raises(ContractError) as err:
        stranger.anchor(1, merkle.root(leaves(1)), CID, [])
    assert err.value.name == "NotActiveAgent"
    assert "NotActiveAgent" in str(err.value)


def test_revoked_agent_cannot_anchor(
    deploy: Callable[..., tuple[LedgerClient, list[LocalAccount]]], new_account: Callable[[], LocalAccount]
) -> None:
    client, _ = deploy(1, 1)
    agent = new_account()
    client.propose_add_agent(agent.address, "a")
    as_agent = client.with_account(agent)
    log = leaves(4)
    as_agent.anchor(2, merkle.root(log[:2]), CID, [])
    client.propose_revoke_agent(agent.address)
    with pytest.raises(ContractError) as err:
        as_agent.anchor(4, merkle.root(log), CID, merkle.consistency_proof(log, 2))
    assert err.value.name == "NotActiveAgent"
    assert client.checkpoint_count(agent.address) == 1


def test_mined_revert_is_decoded_when_gas_is_given(
    approved_agent: Callable[[], tuple[LedgerClient, LocalAccount]],
) -> None:
    """With an explicit gas limit nothing is estimated: the error comes from replaying the failed tx."""
    client, _ = approved_agent()
    log = leaves(3)
    client.anchor(3, merkle.root(log), CID, [], gas=400_000)
    with pytest.raises(ContractError) as err:
        client.anchor(3, merkle.root(log), CID, [], gas=400_000)
    assert err.value.name == "SizeNotIncreasing"


def test_checkpoint_sequence_and_views(approved_agent: Callable[[], tuple[LedgerClient, LocalAccount]]) -> None:
    client, agent = approved_agent()
    assert client.latest_checkpoint(agent.address) is None
    log = leaves(40)
    sizes = [1, 2, 3, 7, 8, 9, 16, 17, 31, 32, 33, 40]
    previous = 0
    results = []
    for size in sizes:
        proof = merkle.consistency_proof(log[:size], previous) if previous else []
        results.append(client.anchor(size, merkle.root(log[:size]), CID, proof))
        previous = size
    assert [r.index for r in results] == list(range(len(sizes)))
    assert client.checkpoint_count(agent.address) == len(sizes)
    for i, size in enumerate(sizes):
        cp = client.checkpoint(agent.address, i)
        assert (cp.size, cp.root) == (size, merkle.root(log[:size]))
    latest = client.latest_checkpoint(agent.address)
    assert latest is not None and (latest.index, latest.size) == (len(sizes) - 1, 40)
    info = client.agent_info(agent.address)
    assert (info.checkpoint_count, info.latest_size) == (len(sizes), 40)
    # Binary search by time: at the latest checkpoint's time we get the last one anchored then.
    found = client.checkpoint_at_or_before(agent.address, latest.timestamp)
    assert found is not None and found.index == len(sizes) - 1
    first = client.checkpoint(agent.address, 0)
    assert client.checkpoint_at_or_before(agent.address, first.timestamp - 1) is None
    at_first_time = client.checkpoint_at_or_before(agent.address, first.timestamp)
    assert at_first_time is not None and at_first_time.timestamp == first.timestamp
    with pytest.raises(ContractError) as err:
        client.checkpoint(agent.address, len(sizes))
    assert err.value.name == "UnknownCheckpoint"
    # The manifest CID travels in the event, with the tx that anchored it.
    events = client.anchor_events(agent.address)
    assert [e.size for e in events] == sizes
    assert all(e.manifest_cid == CID for e in events)
    assert events[-1].mined.tx_hex == results[-1].tx
    assert [e.agent for e in events] == [agent.address.lower()] * len(sizes)


def test_equal_and_smaller_sizes_are_refused(approved_agent: Callable[[], tuple[LedgerClient, LocalAccount]]) -> None:
    client, _ = approved_agent()
    log = leaves(10)
    client.anchor(5, merkle.root(log[:5]), CID, [])
    for size in (5, 4, 0):
        with pytest.raises(ContractError) as err:
            client.anchor(size, merkle.root(log[:size]), CID, merkle.consistency_proof(log[:5], size) if size else [])
        assert err.value.name == "SizeNotIncreasing"


def test_wrong_consistency_proofs_and_rewrites_are_refused(
    approved_agent: Callable[[], tuple[LedgerClient, LocalAccount]],
) -> None:
    client, agent = approved_agent()
    log = leaves(20)
    client.anchor(6, merkle.root(log[:6]), CID, [])
    good = merkle.consistency_proof(log[:13], 6)

    # A first checkpoint carries no proof, a later one must carry the right one.
    with pytest.raises(ContractError) as err:
        client.anchor(13, merkle.root(log[:13]), CID, [])
    assert err.value.name == "InvalidConsistencyProof"
    for position in range(len(good)):
        tampered = list(good)
        tampered[position] = bytes([tampered[position][0] ^ 1]) + tampered[position][1:]
        with pytest.raises(ContractError) as err:
            client.anchor(13, merkle.root(log[:13]), CID, tampered)
        assert err.value.name == "InvalidConsistencyProof"
    with pytest.raises(ContractError):
        client.anchor(13, merkle.root(log[:13]), CID, good[:-1])
    with pytest.raises(ContractError):
        client.anchor(13, merkle.root(log[:13]), CID, [*good, os.urandom(32)])

    # History rewrite: the agent replaces record 3 and claims a consistent extension.
    rewritten = list(log[:13])
    rewritten[3] = merkle.leaf_hash(b"forged")
    forged_proof = merkle.consistency_proof(rewritten, 6)
    with pytest.raises(ContractError) as err:
        client.anchor(13, merkle.root(rewritten), CID, forged_proof)
    assert err.value.name == "InvalidConsistencyProof"
    # ...and the honest extension still goes through afterwards.
    client.anchor(13, merkle.root(log[:13]), CID, good)
    assert client.checkpoint_count(agent.address) == 2


def test_cid_must_be_present(approved_agent: Callable[[], tuple[LedgerClient, LocalAccount]]) -> None:
    client, _ = approved_agent()
    with pytest.raises(ContractError) as err:
        client.anchor(1, merkle.root(leaves(1)), b"", [])
    assert err.value.name == "InvalidCid"


def test_snapshot_anchors(approved_agent: Callable[[], tuple[LedgerClient, LocalAccount]]) -> None:
    client, agent = approved_agent()
    resource = bytes.fromhex("aa" * 32)
    with pytest.raises(ContractError) as err:
        client.anchor_snapshot(resource, CID, b"\x01" * 32, 0)
    assert err.value.name == "UnknownCheckpoint"
    client.anchor(1, merkle.root(leaves(1)), CID, [])
    client.anchor_snapshot(resource, CID, b"\x02" * 32, 0)
    assert client.snapshot_count(resource) == 1
    snap = client.snapshot(resource, 0)
    assert (snap.agent, snap.cid, snap.state_root, snap.checkpoint_index) == (agent.address, CID, b"\x02" * 32, 0)


def test_checkpoint_index_makes_retries_fail_cleanly(
    approved_agent: Callable[[], tuple[LedgerClient, LocalAccount]],
) -> None:
    client, agent = approved_agent()
    log = leaves(8)
    client.anchor(4, merkle.root(log[:4]), CID, [], index=0)
    # A retried transaction for a checkpoint that already landed is refused by name.
    with pytest.raises(ContractError) as err:
        client.anchor(4, merkle.root(log[:4]), CID, [], index=0)
    assert err.value.name == "CheckpointExists"
    # Skipping an index is refused too.
    with pytest.raises(ContractError) as err:
        client.anchor(8, merkle.root(log), CID, merkle.consistency_proof(log, 4), index=2)
    assert err.value.name == "CheckpointMissing"
    with pytest.raises(ContractError) as err:
        client.anchor(8, bytes(32), CID, merkle.consistency_proof(log, 4), index=1)
    assert err.value.name == "ZeroRoot"
    client.anchor(8, merkle.root(log), CID, merkle.consistency_proof(log, 4), index=1)
    assert client.checkpoint_count(agent.address) == 2
