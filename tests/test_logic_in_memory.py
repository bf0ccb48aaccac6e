"""The verifier's and the replay's logic against in-memory sources: a failing check found in milliseconds.

The end-to-end tests run these checks against a real anvil and Kubo; these
feed the same code logs built in memory (signed records, manifests, Merkle
roots) through a `MemorySource` of blocks and an in-memory trust base that
answers the contract's two pure questions (was the agent active, does the
consistency proof verify) the way the contract does. Each tampering a
verifier must catch is one test here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from provanchor.checks.log import (
    CHECK_ACTIVE,
    CHECK_CONSISTENCY,
    CHECK_FORMAT,
    CHECK_MANIFEST,
    CHECK_ROOTS,
    CHECK_SIGNATURE,
)
from provanchor.formats import merkle
from provanchor.formats.cid import CID, DAG_CBOR, RAW
from provanchor.formats.manifest import PreviousCheckpoint, build_manifest
from provanchor.ipfs.sources import MemorySource
from provanchor.records import Capture, CaptureBackend, ContentRef, Eip712Domain, Op, Record, RecordSigner
from provanchor.records.model import encode_record, file_location
from provanchor.replay.source import FileChange
from provanchor.replay.tree import ReplayTree, StepOutcome
from provanchor.verify.log import AgentLog, Anchor, Chain

CHAIN_ID = 31337
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
OTHER_KEY = bytes.fromhex("11" * 32)
HOST = "host-under-test"


@dataclass
class MemoryChain:
    """The trust base in memory: anchors, and the contract's pure views evaluated as the contract does."""

    anchored: list[Anchor]
    window: tuple[int, int] = (0, 10**9)
    chain_id: int = CHAIN_ID
    contract: str = CONTRACT.lower()
    asked: list[str] = field(default_factory=list)

    @property
    def domain(self) -> Eip712Domain:
        return Eip712Domain(self.chain_id, CONTRACT)

    def anchors(self, agent: str) -> list[Anchor]:
        return [a for a in self.anchored if a.agent == agent]

    def call_views(self, calls: list[tuple[str, tuple[Any, ...]]]) -> list[bool]:
        answers = []
        for name, args in calls:
            self.asked.append(name)
            if name == "verifyConsistency":
                size1, size2, root1, root2, proof = args
                answers.append(merkle.verify_consistency(size1, size2, root1, root2, proof))
            elif name == "agentActiveAtBlock":
                answers.append(self.window[0] <= args[1] < self.window[1])
            else:
                raise AssertionError(f"unexpected view {name}")
        return answers


@dataclass
class Log:
    chain: MemoryChain
    source: MemorySource
    agent: str
    blocks: list[tuple[int, bytes]]


def _record(agent: str, seq: int, prev: bytes | None) -> Record:
    content = f"row {seq}\n".encode()
    return Record(
        agent=agent,
        seq=seq,
        prev=prev,
        time=1_700_000_000_000_000_000 + seq,
        user="alice",
        uid=1000,
        host=HOST,
        location=file_location(HOST, f"/data/file{seq}.csv"),
        op=Op.CREATE,
        after=ContentRef(hashlib.sha256(content).digest(), len(content), CID.for_block(RAW, content)),
        capture=Capture(CaptureBackend.FANOTIFY, True),
    )


def build_log(
    sizes: tuple[int, ...] = (3, 2, 4),
    *,
    sign_with: dict[int, bytes] | None = None,
    manifest_order: dict[int, list[int]] | None = None,
    blocks_at: dict[int, int] | None = None,
    skip_checkpoints: tuple[int, ...] = (),
) -> Log:
    """A log of checkpoints of `sizes` records, honest unless told otherwise.

    `sign_with` signs a position with another key; `manifest_order` lists a
    checkpoint's positions in another order; `blocks_at` anchors a checkpoint
    in another block; `skip_checkpoints` leaves checkpoints off the chain.
    """
    signer = RecordSigner(KEY, Eip712Domain(CHAIN_ID, CONTRACT))
    agent = signer.address.lower()
    source = MemorySource(description="memory")
    cids: list[CID] = []
    signatures: list[bytes] = []
    blocks: list[tuple[int, bytes]] = []
    for position in range(sum(sizes)):
        record = _record(agent, position, cids[-1].digest if cids else None)
        data = encode_record(record)
        cid = CID.for_block(DAG_CBOR, data)
        key = (sign_with or {}).get(position, KEY)
        signatures.append(RecordSigner(key, Eip712Domain(CHAIN_ID, CONTRACT)).sign(record.hash))
        source.add(cid, data, hashed=True)
        cids.append(cid)
        blocks.append((position, data))
    leaves = [merkle.leaf_hash(c.digest) for c in cids]
    anchors: list[Anchor] = []
    previous: PreviousCheckpoint | None = None
    start = 0
    for index, size in enumerate(sizes):
        end = start + size
        order = (manifest_order or {}).get(index, list(range(start, end)))
        root = merkle.root(leaves[:end])
        manifest = build_manifest(
            agent, CHAIN_ID, CONTRACT.lower(), index, start, root,
            [cids[p] for p in order], [signatures[p] for p in order], previous,
        )
        data = manifest.encode()
        manifest_cid = CID.for_block(DAG_CBOR, data)
        source.add(manifest_cid, data, hashed=True)
        block = (blocks_at or {}).get(index, 100 + index)
        if index not in skip_checkpoints:
            anchors.append(Anchor(agent, index, end, root, manifest_cid, block, bytes(32)))
        previous = PreviousCheckpoint(index, end, root, manifest_cid)
        start = end
    return Log(MemoryChain(anchors), source, agent, blocks)


def walk(log: Log) -> tuple[AgentLog, dict[str, list[str]], list[tuple[str, str]]]:
    """Walk every checkpoint and check every record: (the log, failures by check, record problems)."""
    agent_log = AgentLog(cast(Chain, log.chain), log.source, log.agent)
    agent_log.walk()
    failures = {name: tally.failures for name, tally in agent_log.tallies.items() if tally.failures}
    problems = [(p.check, p.reason) for p in agent_log.check_records(log.blocks, workers=1)]
    return agent_log, failures, problems


def test_an_honest_log_passes_every_check_and_asks_the_contract() -> None:
    agent_log, failures, problems = walk(build_log())
    assert failures == {} and problems == []
    assert agent_log.rebuilt_size == 9
    assert {name: t.count for name, t in agent_log.tallies.items()}[CHECK_ROOTS] == 3
    asked = cast(MemoryChain, agent_log.chain).asked
    assert asked.count("agentActiveAtBlock") == 3 and asked.count("verifyConsistency") == 2


def test_a_manifest_listing_records_out_of_order_does_not_rebuild_its_root() -> None:
    _, failures, _ = walk(build_log(manifest_order={1: [4, 3]}))
    assert any("do not rebuild the anchored root" in f for f in failures[CHECK_ROOTS])


def test_a_record_signed_by_another_key_is_named() -> None:
    _, failures, problems = walk(build_log(sign_with={4: OTHER_KEY}))
    assert failures == {}
    assert [check for check, _ in problems] == [CHECK_SIGNATURE]
    assert "not to the agent" in problems[0][1]


def test_a_checkpoint_anchored_outside_the_agents_window_fails_the_window_check() -> None:
    log = build_log(blocks_at={2: 5000})
    log.chain.window = (0, 1000)
    _, failures, _ = walk(log)
    assert list(failures) == [CHECK_ACTIVE] and "block 5000" in failures[CHECK_ACTIVE][0]


def test_a_missing_checkpoint_is_reported_and_the_rest_cannot_be_rebuilt() -> None:
    _, failures, _ = walk(build_log(skip_checkpoints=(1,)))
    assert any("one is missing" in f for f in failures[CHECK_MANIFEST])
    assert CHECK_ROOTS in failures or CHECK_CONSISTENCY in failures


def test_a_block_that_is_not_a_record_is_a_format_problem() -> None:
    log = build_log()
    log.blocks[2] = (2, b"\xa0")  # the empty dag-cbor map: bytes, but no record
    _, _, problems = walk(log)
    assert [check for check, _ in problems] == [CHECK_FORMAT]


# ------------------------------------------------------------------ replay


def _change(seq: int, op: Op, path: str, before: bytes | None, after: bytes | None, **more: Any) -> FileChange:
    def ref(data: bytes | None) -> ContentRef | None:
        return None if data is None else ContentRef(hashlib.sha256(data).digest(), len(data))

    fields: dict[str, Any] = {
        "record_hash": hashlib.sha256(f"record {seq}".encode()).digest(),
        "agent": "0x" + "aa" * 20,
        "seq": seq,
        "time": seq,
        "op": op,
        "location": file_location(HOST, f"/data/{path}"),
        "from_location": None,
        "before": ref(before),
        "after": ref(after),
        "mode": None,
    }
    fields.update(more)
    return FileChange(**fields)


def test_replay_applies_a_consistent_history() -> None:
    tree = ReplayTree()
    steps = [
        tree.apply(_change(0, Op.CREATE, "a", None, b"one"), "a", None, False),
        tree.apply(_change(1, Op.WRITE, "a", b"one", b"two"), "a", None, False),
        tree.apply(_change(2, Op.RENAME, "b", b"two", b"two"), "b", "a", False),
        tree.apply(_change(3, Op.CHMOD, "b", b"two", b"two", mode=0o100600), "b", None, False),
    ]
    assert [s.outcome for s in steps] == [StepOutcome.APPLIED] * 4
    assert set(tree.nodes) == {"b"}
    assert tree.nodes["b"].sha256 == hashlib.sha256(b"two").digest() and tree.nodes["b"].mode == 0o600


def test_replay_names_a_break_when_a_record_does_not_follow_from_the_one_before() -> None:
    tree = ReplayTree()
    tree.apply(_change(0, Op.CREATE, "a", None, b"one"), "a", None, False)
    broken = tree.apply(_change(1, Op.WRITE, "a", b"something else", b"three"), "a", None, False)
    assert broken.outcome is StepOutcome.BREAK and broken.detail
    # The replay goes on from the record's own statement of the result.
    assert tree.nodes["a"].sha256 == hashlib.sha256(b"three").digest()


@pytest.mark.parametrize("before_snapshot_end", [True, False])
def test_a_record_whose_result_the_snapshot_already_holds_is_not_a_break(before_snapshot_end: bool) -> None:
    tree = ReplayTree()
    tree.apply(_change(0, Op.CREATE, "a", None, b"two"), "a", None, False)  # the snapshot's state
    tree.touched.clear()
    step = tree.apply(_change(1, Op.WRITE, "a", b"one", b"two"), "a", None, before_snapshot_end)
    assert step.outcome is StepOutcome.ALREADY


def test_a_delete_removes_and_a_second_delete_breaks() -> None:
    tree = ReplayTree()
    tree.apply(_change(0, Op.CREATE, "a", None, b"one"), "a", None, False)
    assert tree.apply(_change(1, Op.DELETE, "a", b"one", None), "a", None, False).outcome is StepOutcome.APPLIED
    assert "a" not in tree.nodes
    again = tree.apply(_change(2, Op.DELETE, "a", b"one", None), "a", None, False)
    assert again.outcome is StepOutcome.BREAK


def test_the_memory_chain_answers_like_the_contract() -> None:
    """The double itself: a wrong consistency proof is refused, as verifyConsistency refuses it."""
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(5)]
    chain = MemoryChain([])
    good = merkle.consistency_proof(leaves, 3)
    args = (3, 5, merkle.root(leaves[:3]), merkle.root(leaves), good)
    assert chain.call_views([("verifyConsistency", args)]) == [True]
    assert chain.call_views([("verifyConsistency", replace_root(args))]) == [False]


def replace_root(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0], args[1], b"\x01" * 32, args[3], args[4])

