"""Tests for provanchor.formats.merkle against naive references written straight from RFC 9162."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provanchor.formats.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# ---------------------------------------------------------------------------
# Naive references: direct transcriptions of RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1.
# They take tuples of leaf hashes, so results can be memoised across tests.
# ---------------------------------------------------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@cache
def ref_mth(d: tuple[bytes, ...]) -> bytes:
    n = len(d)
    if n == 0:
        return _h(b"")
    if n == 1:
        return d[0]  # inputs are already leaf hashes
    k = _k(n)
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: tuple[bytes, ...]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: tuple[bytes, ...], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: tuple[bytes, ...]) -> list[bytes]:
    if m in (0, len(d)):
        return []
    return ref_subproof(m, d, True)


LEAVES: list[bytes] = [leaf_hash(i.to_bytes(4, "big")) for i in range(6000)]
T = tuple(LEAVES)


def path_shape(i: int, n: int) -> tuple[bool, ...] | None:
    """Sides (True = sibling on the right) of PATH(i, D[n]), leaf first, from the RFC recursion.

    The verifiers only see hashes, so a proof is also valid for any other (index, size)
    with the same shape; wrong-size tests must expect exactly that.
    """
    if not 0 <= i < n:
        return None
    sides: list[bool] = []
    while n > 1:
        k = _k(n)
        sides.append(i < k)
        if i < k:
            n = k
        else:
            i, n = i - k, n - k
    return tuple(reversed(sides))


def proof_shape(m: int, n: int) -> tuple[bool, tuple[bool, ...]] | None:
    """Shape of PROOF(m, D[n]) from the RFC recursion: (starts at old root, sides)."""
    if not 0 < m < n:
        return None
    sides: list[bool] = []
    lo_m = m
    while lo_m != n:
        k = _k(n)
        sides.append(lo_m <= k)
        if lo_m <= k:
            n = k
        else:
            lo_m, n = lo_m - k, n - k
    return (m & (m - 1) == 0, tuple(reversed(sides)))


def flip(b: bytes, bit: int = 0) -> bytes:
    return bytes([b[0] ^ (1 << bit)]) + b[1:]


# ---------------------------------------------------------------------------
# Absolute known answers
# ---------------------------------------------------------------------------

CT_DATA = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
CT_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
CT_LEAVES = [leaf_hash(bytes.fromhex(x)) for x in CT_DATA]


def test_empty_root() -> None:
    sha256_of_nothing = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert EMPTY_ROOT.hex() == sha256_of_nothing
    assert root([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


def test_leaf_and_node_hash_prefixes() -> None:
    assert leaf_hash(b"abc") == _h(b"\x00abc")
    a, b = LEAVES[0], LEAVES[1]
    assert node_hash(a, b) == _h(b"\x01" + a + b)
    assert leaf_hash(b"") == bytes.fromhex(CT_ROOTS[1])


@pytest.mark.parametrize("size", sorted(CT_ROOTS))
def test_ct_vectors_roots(size: int) -> None:
    expected = bytes.fromhex(CT_ROOTS[size])
    assert root(CT_LEAVES[:size]) == expected
    assert ref_mth(tuple(CT_LEAVES[:size])) == expected
    cr = CompactRange()
    cr.extend(CT_LEAVES[:size])
    assert cr.root() == expected


def test_ct_vectors_proofs() -> None:
    # PATH(0, D[8]) and PROOF(6, D[8]) from the CT test data set above.
    path0 = [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    assert [p.hex() for p in inclusion_proof(CT_LEAVES, 0)] == path0
    proof68 = [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]
    assert [p.hex() for p in consistency_proof(CT_LEAVES, 6)] == proof68
    r6, r8 = bytes.fromhex(CT_ROOTS[6]), bytes.fromhex(CT_ROOTS[8])
    assert verify_consistency(6, 8, r6, r8, [bytes.fromhex(x) for x in proof68])
    assert verify_inclusion(CT_LEAVES[0], 0, 8, [bytes.fromhex(x) for x in path0], r8)


# ---------------------------------------------------------------------------
# Generators vs. naive references
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 71))
def test_root_and_inclusion_match_reference(n: int) -> None:
    d = T[:n]
    r = root(LEAVES[:n])
    assert r == ref_mth(d)
    for i in range(n):
        proof = inclusion_proof(LEAVES[:n], i)
        assert proof == ref_path(i, d)
        assert verify_inclusion(LEAVES[i], i, n, proof, r)


@pytest.mark.parametrize("n", range(1, 71))
def test_consistency_matches_reference(n: int) -> None:
    d = T[:n]
    r2 = ref_mth(d)
    for m in range(0, n + 1):
        proof = consistency_proof(LEAVES[:n], m)
        assert proof == ref_proof(m, d)
        assert verify_consistency(m, n, ref_mth(T[:m]), r2, proof)


def test_root_accepts_tuples_and_large_chunked_sizes() -> None:
    # Sizes straddling the internal bulk-hashing chunk (4096) take different code paths.
    for n in (4095, 4096, 4097, 5000, 6000):
        expected = ref_mth(T[:n])
        assert root(LEAVES[:n]) == expected
        assert root(T[:n]) == expected
    big = LEAVES[:6000]
    for i in (0, 4095, 4096, 5999):
        assert inclusion_proof(big, i) == ref_path(i, T[:6000])
    for m in (1, 4095, 4096, 4097, 5999):
        assert consistency_proof(big, m) == ref_proof(m, T[:6000])


def test_generator_argument_errors() -> None:
    with pytest.raises(ValueError):
        inclusion_proof([], 0)
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES[:3], 3)
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES[:3], -1)
    with pytest.raises(ValueError):
        consistency_proof(LEAVES[:3], 4)
    with pytest.raises(ValueError):
        consistency_proof(LEAVES[:3], -1)
    assert consistency_proof(LEAVES[:3], 0) == []
    assert consistency_proof(LEAVES[:3], 3) == []
    assert consistency_proof([], 0) == []
    # Raw data instead of leaf hashes is caught rather than hashed into a bogus root.
    with pytest.raises(ValueError):
        root([b"not a hash"])
    with pytest.raises(ValueError):
        root([*LEAVES[:5000], b"short"])
    with pytest.raises(ValueError):
        inclusion_proof([LEAVES[0], b"x"], 0)


# ---------------------------------------------------------------------------
# Verifiers: rejection of everything dishonest or malformed
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 33])
def test_verify_inclusion_rejects_tampering(n: int) -> None:
    leaves = LEAVES[:n]
    r = root(leaves)
    for i in range(n):
        proof = inclusion_proof(leaves, i)
        assert verify_inclusion(leaves[i], i, n, proof, r)
        for pos in range(len(proof)):
            for bit in (0, 7):
                bad = list(proof)
                bad[pos] = flip(bad[pos], bit)
                assert not verify_inclusion(leaves[i], i, n, bad, r)
        assert not verify_inclusion(flip(leaves[i]), i, n, proof, r)
        assert not verify_inclusion(leaves[i], i, n, proof, flip(r))
        for j in range(n):
            if j != i:
                assert not verify_inclusion(leaves[i], j, n, proof, r)
        for n2 in range(0, 2 * n + 3):
            if n2 != n:
                same_shape = path_shape(i, n2) == path_shape(i, n)
                assert verify_inclusion(leaves[i], i, n2, proof, r) == same_shape, n2
        assert not verify_inclusion(leaves[i], i, n, [*proof, LEAVES[99]], r)
        assert not verify_inclusion(leaves[i], i, n, [LEAVES[99], *proof], r)
        if proof:
            assert not verify_inclusion(leaves[i], i, n, proof[:-1], r)
            assert not verify_inclusion(leaves[i], i, n, proof[1:], r)
        assert not verify_inclusion(leaves[i], n, n, proof, r)
        assert not verify_inclusion(leaves[i], n + i, n, proof, r)


def test_verify_inclusion_size_zero_and_malformed() -> None:
    leaves = LEAVES[:5]
    r = root(leaves)
    proof = inclusion_proof(leaves, 2)
    good: dict[str, Any] = {"leaf_hash": leaves[2], "index": 2, "size": 5, "proof": proof, "root": r}
    assert verify_inclusion(**good)
    bad_variants: list[dict[str, Any]] = [
        {"size": 0, "index": 0, "proof": []},
        {"size": 0},
        {"index": -1},
        {"size": -5},
        {"index": 2.0},
        {"size": "5"},
        {"index": None},
        {"index": True},
        {"proof": [*proof[:-1], proof[-1][:31]]},
        {"proof": [*proof[:-1], proof[-1] + b"\x00"]},
        {"proof": [*proof[:-1], None]},
        {"proof": [*proof[:-1], proof[-1].hex()]},
        {"proof": None},
        {"proof": 42},
        {"proof": b"".join(proof)},
        {"proof": "".join(p.hex() for p in proof)},
        {"leaf_hash": leaves[2][:31]},
        {"leaf_hash": None},
        {"root": r[:16]},
        {"root": None},
        {"proof": [leaves[0]] * 10_000},
        {"index": 2**200, "size": 2**200 + 5},
    ]
    for change in bad_variants:
        assert not verify_inclusion(**{**good, **change}), change
    # A single-leaf tree: empty proof, root is the leaf hash itself.
    assert verify_inclusion(leaves[0], 0, 1, [], leaves[0])
    assert not verify_inclusion(leaves[0], 0, 1, [leaves[1]], leaves[0])
    # Equivalent containers are fine.
    assert verify_inclusion(leaves[2], 2, 5, tuple(proof), r)
    ba: Any = bytearray  # outside the declared types, but harmless and accepted
    assert verify_inclusion(ba(leaves[2]), 2, 5, [ba(p) for p in proof], ba(r))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 31, 32, 33])
def test_verify_consistency_rejects_tampering(n: int) -> None:
    r2 = root(LEAVES[:n])
    for m in range(1, n):
        r1 = root(LEAVES[:m])
        proof = consistency_proof(LEAVES[:n], m)
        assert proof
        assert verify_consistency(m, n, r1, r2, proof)
        for pos in range(len(proof)):
            for bit in (0, 7):
                bad = list(proof)
                bad[pos] = flip(bad[pos], bit)
                assert not verify_consistency(m, n, r1, r2, bad)
        assert not verify_consistency(m, n, flip(r1), r2, proof)
        assert not verify_consistency(m, n, r1, flip(r2), proof)
        assert not verify_consistency(m, n, r2, r1, proof)
        for m2 in range(-1, 2 * n + 3):
            for n2 in range(-1, 2 * n + 3):
                if (m2, n2) != (m, n):
                    same_shape = proof_shape(m2, n2) == proof_shape(m, n)
                    assert verify_consistency(m2, n2, r1, r2, proof) == same_shape, (m2, n2)
        assert not verify_consistency(m, n, r1, r2, [*proof, LEAVES[99]])
        assert not verify_consistency(m, n, r1, r2, [LEAVES[99], *proof])
        assert not verify_consistency(m, n, r1, r2, proof[:-1])
        assert not verify_consistency(m, n, r1, r2, proof[1:])
        assert not verify_consistency(m, n, r1, r2, [])
        assert not verify_consistency(n, m, r2, r1, proof)  # size1 > size2


def test_verify_consistency_edge_cases() -> None:
    r3, r5 = root(LEAVES[:3]), root(LEAVES[:5])
    # Equal sizes: empty proof and equal roots.
    assert verify_consistency(5, 5, r5, r5, [])
    assert not verify_consistency(5, 5, r5, r3, [])
    assert not verify_consistency(5, 5, r5, r5, [r5])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 0, r5, r5, [])  # rule: equal sizes only compare roots
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    # size1 == 0: the empty tree is a prefix of everything, with an empty proof.
    assert verify_consistency(0, 5, EMPTY_ROOT, r5, [])
    assert not verify_consistency(0, 5, r3, r5, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, r5, [r5])
    # Ordering and sign.
    assert not verify_consistency(5, 3, r5, r3, consistency_proof(LEAVES[:5], 3))
    assert not verify_consistency(-1, 5, EMPTY_ROOT, r5, [])
    assert not verify_consistency(-1, -1, r5, r5, [])
    assert not verify_consistency(3, -5, r3, r5, [])


class _HostileProof(Sequence[bytes]):
    """A proof object whose iteration blows up, as attacker-supplied objects might."""

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        raise RuntimeError("boom")


def test_verifiers_survive_hostile_sequences() -> None:
    r5 = root(LEAVES[:5])
    assert not verify_inclusion(LEAVES[0], 0, 5, _HostileProof(3), r5)
    assert not verify_consistency(3, 5, root(LEAVES[:3]), r5, _HostileProof(2))
    assert not verify_consistency(3, 5, root(LEAVES[:3]), r5, _HostileProof(10**9))


def test_verify_consistency_malformed_never_raises() -> None:
    r3, r5 = root(LEAVES[:3]), root(LEAVES[:5])
    proof = consistency_proof(LEAVES[:5], 3)
    good: dict[str, Any] = {"size1": 3, "size2": 5, "root1": r3, "root2": r5, "proof": proof}
    assert verify_consistency(**good)
    ba: Any = bytearray
    assert verify_consistency(3, 5, ba(r3), ba(r5), [ba(p) for p in proof])
    bad_variants: list[dict[str, Any]] = [
        {"proof": [*proof[:-1], proof[-1][:31]]},
        {"proof": [*proof[:-1], proof[-1] + b"\x00"]},
        {"proof": [*proof[:-1], b""]},
        {"proof": [None, *proof]},
        {"proof": None},
        {"proof": 7},
        {"proof": b"".join(proof)},
        {"proof": [r5] * 10_000},
        {"size1": None},
        {"size2": 5.0},
        {"size1": True},
        {"size1": "3"},
        {"root1": r3[:31]},
        {"root2": None},
        {"root1": r3.hex()},
        {"size1": 2**200, "size2": 2**201},
        {"size1": 3, "size2": 2**70},
    ]
    for change in bad_variants:
        assert not verify_consistency(**{**good, **change}), change


# ---------------------------------------------------------------------------
# CompactRange
# ---------------------------------------------------------------------------


def test_compact_range_root_after_each_append() -> None:
    cr = CompactRange()
    assert cr.size == 0 and cr.hashes == [] and cr.root() == EMPTY_ROOT
    for n in range(1, 301):
        cr.append(LEAVES[n - 1])
        assert cr.size == n
        assert len(cr.hashes) == n.bit_count()
        assert cr.root() == ref_mth(T[:n])


def test_compact_range_frontier_is_perfect_subtree_roots() -> None:
    cr = CompactRange()
    cr.extend(LEAVES[:13])  # 13 = 8 + 4 + 1
    assert cr.hashes == [ref_mth(T[0:8]), ref_mth(T[8:12]), T[12]]


def test_compact_range_from_state_round_trip() -> None:
    for n in [0, 1, 2, 3, 7, 64, 100, 4095, 4096, 4097, 5000]:
        cr = CompactRange()
        cr.extend(LEAVES[:n])
        restored = CompactRange.from_state(cr.size, cr.hashes)
        assert restored.size == n and restored.hashes == cr.hashes and restored.root() == cr.root()
        restored.extend(LEAVES[n : n + 37])
        assert restored.root() == ref_mth(T[: n + 37])
        # hashes is a copy: mutating it does not corrupt the range.
        h = cr.hashes
        h.clear()
        assert cr.root() == ref_mth(T[:n])


def test_compact_range_from_state_rejects_bad_state() -> None:
    cr = CompactRange()
    cr.extend(LEAVES[:5])
    with pytest.raises(ValueError):
        CompactRange.from_state(7, cr.hashes)  # 7 needs three frontier hashes, 5 has two
    with pytest.raises(ValueError):
        CompactRange.from_state(-1, [])
    with pytest.raises(ValueError):
        CompactRange.from_state(1, [b"short"])
    with pytest.raises(ValueError):
        CompactRange.from_state(0, [LEAVES[0]])


def test_compact_range_append_rejects_non_hashes() -> None:
    cr = CompactRange()
    with pytest.raises(ValueError):
        cr.append(b"raw data, not a hash")
    with pytest.raises(ValueError):
        cr.extend([LEAVES[0], b"x"])
    with pytest.raises(ValueError):
        cr.extend([*LEAVES[:4096], b"x", *LEAVES[:4096]])  # bad leaf inside a bulk chunk
    bad: Any = [LEAVES[0], None, LEAVES[1]]
    with pytest.raises(ValueError):
        CompactRange().extend(bad)  # None is a bad leaf, not an end-of-input marker


def test_compact_range_extend_matches_append() -> None:
    # Start unaligned so extend mixes single appends with bulk chunks, and feed a generator.
    for start in (0, 1, 3, 4095):
        a = CompactRange()
        a.extend(LEAVES[:start])
        b = CompactRange.from_state(a.size, a.hashes)
        for h in LEAVES[start:6000]:
            a.append(h)
        b.extend(h for h in LEAVES[start:6000])
        assert a.hashes == b.hashes and a.size == b.size == 6000
    assert b.root() == ref_mth(T[:6000])


def test_consistency_proof_to_exhaustive_small() -> None:
    for m in range(0, 71):
        cr = CompactRange()
        cr.extend(LEAVES[:m])
        for n in range(m, 141):
            new = LEAVES[m:n]
            proof = cr.consistency_proof_to(new)
            assert proof == consistency_proof(LEAVES[:n], m)
            assert cr.new_root_after(new) == ref_mth(T[:n])
        assert cr.size == m  # proofs and previews do not mutate the range


def test_consistency_proof_to_verifies() -> None:
    for m in range(1, 40):
        cr = CompactRange()
        cr.extend(LEAVES[:m])
        for n in range(m + 1, 80):
            new = LEAVES[m:n]
            proof = cr.consistency_proof_to(new)
            assert verify_consistency(m, n, cr.root(), cr.new_root_after(new), proof)


def test_consistency_proof_to_random_larger() -> None:
    rng = random.Random(9162)
    for _ in range(15):
        n = rng.randrange(2, 6000)
        m = rng.randrange(1, n)
        cr = CompactRange()
        cr.extend(LEAVES[:m])
        proof = cr.consistency_proof_to(LEAVES[m:n])
        assert proof == ref_proof(m, T[:n])
        assert verify_consistency(m, n, ref_mth(T[:m]), ref_mth(T[:n]), proof)


def test_consistency_proof_to_rejects_non_hashes() -> None:
    cr = CompactRange()
    cr.extend(LEAVES[:5])
    with pytest.raises(ValueError):
        cr.consistency_proof_to([LEAVES[5], b"x", LEAVES[6]])
    with pytest.raises(ValueError):
        CompactRange().consistency_proof_to([b"x"])


@settings(max_examples=60, deadline=None)
@given(
    size1=st.integers(min_value=0, max_value=5000),
    extra=st.integers(min_value=0, max_value=1000),
    split=st.integers(min_value=0, max_value=5000),
)
def test_property_compact_range(size1: int, extra: int, split: int) -> None:
    n = min(size1 + extra, len(LEAVES))
    old: Sequence[bytes] = LEAVES[:size1]
    cr = CompactRange()
    cr.extend(old[: min(split, size1)])
    cr = CompactRange.from_state(cr.size, cr.hashes)  # persisted mid-way
    cr.extend(old[min(split, size1) :])
    r1 = cr.root()
    assert r1 == root(old)
    new = LEAVES[size1:n]
    proof = cr.consistency_proof_to(new)
    assert proof == consistency_proof(LEAVES[:n], size1)
    r2 = cr.new_root_after(new)
    assert r2 == root(LEAVES[:n])
    assert verify_consistency(size1, n, r1, r2, proof)
    if n > 0:
        i = split % n
        assert verify_inclusion(LEAVES[i], i, n, inclusion_proof(LEAVES[:n], i), r2)
