"""Python's RFC 9162 code and the contract's must agree on every proof, honest or tampered."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from eth_account.signers.local import LocalAccount

from provanchor.chain.client import LedgerClient
from provanchor.formats import merkle

RNG_SEED = 9162


@pytest.fixture(scope="module")
def ledger(deploy: Callable[..., tuple[LedgerClient, list[LocalAccount]]]) -> LedgerClient:
    client, _ = deploy(1, 1)
    return client


@pytest.fixture(scope="module")
def log() -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(300)]


def flip(proof: list[bytes], position: int) -> list[bytes]:
    tampered = list(proof)
    tampered[position] = bytes([tampered[position][0] ^ 0x80]) + tampered[position][1:]
    return tampered


def test_inclusion_every_size_and_every_small_index(ledger: LedgerClient, log: list[bytes]) -> None:
    rng = random.Random(RNG_SEED)
    checked = 0
    for size in range(1, 301):
        tree = log[:size]
        root = merkle.root(tree)
        indices = range(size) if size <= 24 else rng.sample(range(size), 3)
        for index in indices:
            proof = merkle.inclusion_proof(tree, index)
            assert merkle.verify_inclusion(tree[index], index, size, proof, root)
            assert ledger.verify_inclusion(tree[index], index, size, proof, root)
            checked += 1
    assert checked > 600


def test_inclusion_rejections_agree(ledger: LedgerClient, log: list[bytes]) -> None:
    rng = random.Random(RNG_SEED + 1)
    for _ in range(60):
        size = rng.randint(2, 300)
        index = rng.randrange(size)
        tree = log[:size]
        root = merkle.root(tree)
        proof = merkle.inclusion_proof(tree, index)
        cases = [
            (tree[index], index, size, flip(proof, rng.randrange(len(proof))), root),
            (tree[(index + 1) % size], index, size, proof, root),
            (tree[index], (index + 1) % size, size, proof, root),
            (tree[index], index, size, proof[:-1], root),
            (tree[index], index, size, [*proof, root], root),
            (tree[index], index, size, proof, merkle.leaf_hash(b"other")),
            (tree[index], size, size, proof, root),
        ]
        for case in cases:
            assert merkle.verify_inclusion(*case) == ledger.verify_inclusion(*case)
            assert not ledger.verify_inclusion(*case)
        # A neighbouring size may share the proof's shape (RFC 9162 binds size only through the
        # root): the two implementations must still give the same answer.
        other_size = (tree[index], index, size + 1, proof, root)
        assert merkle.verify_inclusion(*other_size) == ledger.verify_inclusion(*other_size)
    # The empty tree includes nothing.
    assert not ledger.verify_inclusion(log[0], 0, 0, [], merkle.EMPTY_ROOT)
    assert not merkle.verify_inclusion(log[0], 0, 0, [], merkle.EMPTY_ROOT)


def consistency_pairs() -> list[tuple[int, int]]:
    rng = random.Random(RNG_SEED + 2)
    pairs = [(m, n) for n in range(1, 18) for m in range(1, n + 1)]
    pairs += [(rng.randint(1, 299), 300) for _ in range(40)]
    pairs += sorted({tuple(sorted((rng.randint(1, 300), rng.randint(1, 300)))) for _ in range(120)})  # type: ignore[misc]
    return pairs


def test_consistency_pairs_agree(ledger: LedgerClient, log: list[bytes]) -> None:
    for size1, size2 in consistency_pairs():
        root1, root2 = merkle.root(log[:size1]), merkle.root(log[:size2])
        proof = merkle.consistency_proof(log[:size2], size1)
        assert merkle.verify_consistency(size1, size2, root1, root2, proof)
        assert ledger.verify_consistency(size1, size2, root1, root2, proof), (size1, size2)


def test_consistency_rejections_agree(ledger: LedgerClient, log: list[bytes]) -> None:
    rng = random.Random(RNG_SEED + 3)
    for _ in range(80):
        size2 = rng.randint(2, 300)
        size1 = rng.randint(1, size2 - 1)
        root1, root2 = merkle.root(log[:size1]), merkle.root(log[:size2])
        proof = merkle.consistency_proof(log[:size2], size1)
        forged = list(log[:size2])
        forged[rng.randrange(size1)] = merkle.leaf_hash(b"rewrite")
        cases = [
            (size1, size2, root1, root2, flip(proof, rng.randrange(len(proof)))),
            (size1, size2, root1, merkle.root(forged), merkle.consistency_proof(forged, size1)),
            (size1, size2, root2, root1, proof),
            (size2, size1, root2, root1, proof),
            (size1, size2, root1, root2, proof[:-1]),
            (size1, size2, root1, root2, [*proof, root1]),
            (size1, size2, root1, root2, []),
        ]
        for case in cases:
            python = merkle.verify_consistency(*case)
            solidity = ledger.verify_consistency(*case)
            assert python == solidity, case[:2]
            assert not solidity
        other_size = (size1, size2 + 1, root1, root2, proof)
        assert merkle.verify_consistency(*other_size) == ledger.verify_consistency(*other_size)
    # Edge cases: equal sizes, and the empty tree.
    r5 = merkle.root(log[:5])
    for case in [
        (5, 5, r5, r5, []),
        (5, 5, r5, r5, [r5]),
        (5, 5, r5, merkle.root(log[:4]), []),
        (0, 5, merkle.EMPTY_ROOT, r5, []),
        (0, 5, r5, r5, []),
        (0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, []),
    ]:
        assert merkle.verify_consistency(*case) == ledger.verify_consistency(*case), case[:2]
