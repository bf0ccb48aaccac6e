"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing with SHA-256.

Everything except :func:`leaf_hash` works on 32-byte *leaf hashes* (already
``0x00``-prefixed and hashed), so callers can store one hash per record and never
keep the raw data around.

The tree shape is the RFC's left-balanced one: ``MTH(D[n])`` splits at the largest
power of two ``k < n``. Equivalently, the root is obtained by pairing neighbours
level by level and promoting an unpaired last node unchanged, and the tree over
``[0, n)`` is made of one perfect subtree per set bit of ``n`` (the "frontier").
The implementation leans on those equivalences to stay O(n) and allocation-light.

Generators (:func:`root`, :func:`inclusion_proof`, :func:`consistency_proof`,
:class:`CompactRange`) raise ``ValueError`` on bad arguments, because those are
programming errors. Verifiers (:func:`verify_inclusion`, :func:`verify_consistency`)
take attacker-controlled input and therefore never raise: anything malformed is
simply ``False``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from itertools import islice

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Size in bytes of every leaf, node and root hash (SHA-256)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256

EMPTY_ROOT: bytes = _sha256(b"").digest()
"""Root of the empty tree: RFC 9162 §2.1.1 defines MTH({}) = HASH()."""

# Leaves are hashed in aligned blocks of this many (a power of two) with a list
# comprehension: much faster than one Python-level append per leaf, and it bounds the
# temporary memory used while hashing huge inputs.
_CHUNK_HEIGHT = 12
_CHUNK = 1 << _CHUNK_HEIGHT


def leaf_hash(data: bytes) -> bytes:
    """Hash a record as a leaf; the 0x00 prefix keeps leaves distinct from nodes."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two children; the 0x01 prefix prevents second-preimage tricks with leaves."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _largest_pow2_below(n: int) -> int:
    """The RFC split point k: the largest power of two strictly less than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hashes(hashes: Sequence[bytes]) -> None:
    """Reject anything that is not a 32-byte hash, e.g. raw data passed by mistake.

    Checks distinct types and lengths via map/set, which is several times cheaper than
    a per-element Python loop on million-leaf inputs.
    """
    types_ok = all(issubclass(t, bytes | bytearray) for t in set(map(type, hashes)))
    if not types_ok or not set(map(len, hashes)) <= {HASH_SIZE}:
        bad = next(h for h in hashes if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE)
        raise ValueError(f"expected {HASH_SIZE}-byte leaf hashes, got {bad!r:.80}")


def _level_root(level: Sequence[bytes]) -> bytes:
    """MTH of a non-empty, already validated list by pairing neighbours level by level.

    Promoting the unpaired last node of a level unchanged yields exactly the RFC's
    left-balanced tree, without recursion.
    """
    sha = _sha256
    prefix = _NODE_PREFIX
    while len(level) > 1:
        it = iter(level)
        paired = [sha(prefix + a + b).digest() for a, b in zip(it, it, strict=False)]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return bytes(level[0])


def _range_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(leaves[lo:hi]) in O(hi - lo) time and O(chunk + log n) memory.

    The range is cut into perfect blocks (full chunks, then one block per set bit of
    the remainder), each hashed in bulk and pushed onto a compact range.
    """
    if hi - lo <= _CHUNK:
        if hi == lo:
            return EMPTY_ROOT
        chunk = leaves[lo:hi]
        _check_hashes(chunk)
        return _level_root(chunk)
    cr = CompactRange()
    start = lo
    height = _CHUNK_HEIGHT
    while start < hi:
        while hi - start < 1 << height:
            height -= 1
        block = leaves[start : start + (1 << height)]
        _check_hashes(block)
        cr._push_subtree(_level_root(block), height)
        start += 1 << height
    return cr.root()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 MTH over leaf hashes: EMPTY_ROOT for none, the hash itself for one."""
    return _range_root(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[n]), leaf-side sibling first.

    Walks down from the root instead of recursing; the siblings together cover n - 1
    leaves, so the proof costs O(n) hashing.
    """
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ValueError(f"index {index} out of range for tree of size {n}")
    siblings: list[bytes] = []
    lo, size, m = 0, n, index
    while size > 1:
        k = _largest_pow2_below(size)
        if m < k:
            siblings.append(_range_root(leaf_hashes, lo + k, lo + size))
            size = k
        else:
            siblings.append(_range_root(leaf_hashes, lo, lo + k))
            lo, size, m = lo + k, size - k, m - k
    _check_hashes([leaf_hashes[lo]])
    siblings.reverse()
    return siblings


def _consistency_walk(
    m: int,
    n: int,
    old_block: Callable[[int, int], bytes],
    new_range: Callable[[int, int], bytes],
) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(m, D[n]) for 0 < m < n, as an explicit walk.

    Every hash the proof needs is one of two kinds, which is what lets
    :meth:`CompactRange.consistency_proof_to` work without old leaves:

    * ``old_block(lo, k)``: MTH(D[lo:lo+k]) where that range is one of the perfect
      subtrees of m's frontier (k a set bit of m, lo the sum of m's higher bits). It
      is emitted when the walk goes right (then m - lo > k and the remainder is < k),
      or at the end, which is only reached after a left step with m - lo == k.
    * ``new_range(lo, hi)``: MTH(D[lo:hi]) with m <= lo, i.e. only new leaves. It is
      the right sibling emitted when the walk goes left, where m - lo <= k.
    """
    out: list[bytes] = []
    lo, size, mm = 0, n, m
    complete = True  # the RFC's flag b: True while we are on the old tree's root path
    while mm != size:
        k = _largest_pow2_below(size)
        if mm <= k:
            out.append(new_range(lo + k, lo + size))
            size = k
        else:
            out.append(old_block(lo, k))
            lo, size, mm, complete = lo + k, size - k, mm - k, False
    if not complete:
        out.append(old_block(lo, size))
    out.reverse()
    return out


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(size1, D[n]) proving D[0:size1] is a prefix of D[n].

    Edge cases: ``size1 == 0`` and ``size1 == n`` give ``[]`` (nothing to prove);
    ``size1`` outside ``[0, n]`` is a ``ValueError``.
    """
    n = len(leaf_hashes)
    if not 0 <= size1 <= n:
        raise ValueError(f"size1 {size1} out of range for tree of size {n}")
    if size1 in (0, n):
        return []
    return _consistency_walk(
        size1,
        n,
        lambda lo, k: _range_root(leaf_hashes, lo, lo + k),
        lambda lo, hi: _range_root(leaf_hashes, lo, hi),
    )


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes | bytearray) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    """A tree size or index: a real int (bools are rejected as almost surely a bug)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _as_hash_list(proof: object, max_len: int) -> list[bytes] | None:
    """The proof as a list of 32-byte hashes, or None if it is anything else.

    ``max_len`` is a bound no honest proof exceeds, so an oversized proof is rejected
    before any per-element work is done on it.
    """
    if isinstance(proof, bytes | bytearray | str) or not isinstance(proof, Sequence):
        return None
    try:
        if len(proof) > max_len:
            return None
        items = list(proof)
    except Exception:  # a hostile Sequence may raise anything; verifiers must not
        return None
    # Fast path for the usual list of bytes (map/set instead of a Python call per element).
    if set(map(type, items)) <= {bytes} and set(map(len, items)) <= {HASH_SIZE}:
        return items
    if not all(_is_hash(p) for p in items):
        return None
    return items


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show ``leaf_hash`` at ``index`` in the tree ``root``?

    Never raises: malformed input is just an invalid proof.
    """
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_count(index) and _is_count(size)):
        return False
    if not 0 <= index < size:
        return False
    # A PATH is at most as long as the tree is deep: ceil(log2(size)).
    path = _as_hash_list(proof, (size - 1).bit_length())
    if path is None:
        return False
    fn, sn = index, size - 1
    r = bytes(leaf_hash)
    sha, prefix = _sha256, _NODE_PREFIX  # node_hash inlined: verifiers run 100,000s of times a second
    for p in path:
        if sn == 0:
            return False  # proof too long
        if fn & 1 or fn == sn:
            r = sha(prefix + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha(prefix + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show tree (size1, root1) is a prefix of (size2, root2)?

    Edge cases (shared with the Solidity verifier): ``size1 < 0`` or ``size2 < size1``
    is False; equal sizes need an empty proof and equal roots; ``size1 == 0`` needs an
    empty proof and ``root1 == EMPTY_ROOT``. Never raises.
    """
    if not (_is_count(size1) and _is_count(size2) and _is_hash(root1) and _is_hash(root2)):
        return False
    if size1 < 0 or size2 < size1:
        return False
    # An honest PROOF has at most one element per level plus one; this bound is looser.
    path = _as_hash_list(proof, 2 * (size2.bit_length() + 1))
    if path is None:
        return False
    if size1 == size2:
        return not path and root1 == root2
    if size1 == 0:
        return not path and root1 == EMPTY_ROOT
    if not path:
        return False
    if size1 & (size1 - 1) == 0:
        path.insert(0, bytes(root1))
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = bytes(path[0])
    for c in path[1:]:
        if sn == 0:
            return False  # proof too long
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0


class CompactRange:
    """Append-only Merkle log state in O(log n) memory: the frontier of [0, size).

    The frontier holds one perfect-subtree root per set bit of ``size``, largest (left)
    first. That is all that is needed to append, to compute the root and to prove
    consistency with a later size, so a log of tens of millions of leaves can be kept
    as at most 64 hashes (e.g. in one SQLite row) instead of all its levels.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_state(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Restore persisted state, checking it has the shape a frontier of ``size`` must have."""
        if not _is_count(size) or size < 0:
            raise ValueError(f"invalid size {size!r}")
        if len(hashes) != size.bit_count():
            raise ValueError(f"size {size} needs {size.bit_count()} frontier hashes, got {len(hashes)}")
        _check_hashes(hashes)
        cr = cls()
        cr._size = size
        cr._hashes = [bytes(h) for h in hashes]
        return cr

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> list[bytes]:
        """A copy of the frontier, largest subtree first (persist it with :attr:`size`)."""
        return list(self._hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"

    def _push_subtree(self, subtree_root: bytes, height: int) -> None:
        """Append a perfect subtree of 2**height leaves; size must be a multiple of it.

        Merging mirrors binary addition: each trailing set bit of the size above
        ``height`` is a frontier subtree of the same height to combine with.
        """
        hashes = self._hashes
        carry = self._size >> height
        h = subtree_root
        while carry & 1:
            h = node_hash(hashes.pop(), h)
            carry >>= 1
        hashes.append(h)
        self._size += 1 << height

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash: amortised one node hash, at most log2(size)."""
        if not isinstance(leaf_hash, bytes | bytearray) or len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"expected a {HASH_SIZE}-byte leaf hash, got {leaf_hash!r:.80}")
        hashes = self._hashes
        carry = self._size
        h = bytes(leaf_hash)
        while carry & 1:
            h = _sha256(_NODE_PREFIX + hashes.pop() + h).digest()
            carry >>= 1
        hashes.append(h)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes, hashing aligned blocks in bulk for speed.

        On a ValueError the leaves before the bad one may already have been appended.
        """
        it = iter(leaf_hashes)
        if self._size % _CHUNK:
            # Single appends until the size is chunk-aligned, so bulk blocks are perfect subtrees.
            for h in islice(it, _CHUNK - self._size % _CHUNK):
                self.append(h)
        while True:
            chunk = list(islice(it, _CHUNK))
            if len(chunk) < _CHUNK:
                for h in chunk:
                    self.append(h)
                return
            _check_hashes(chunk)
            self._push_subtree(_level_root(chunk), _CHUNK_HEIGHT)

    def root(self) -> bytes:
        """RFC 9162 root of the current tree: fold the frontier from the right."""
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = node_hash(h, r)
        return r

    def _copy(self) -> CompactRange:
        cr = CompactRange()
        cr._size = self._size
        cr._hashes = list(self._hashes)
        return cr

    def new_root_after(self, new_leaf_hashes: Iterable[bytes]) -> bytes:
        """Root the log would have after appending ``new_leaf_hashes``; self is unchanged."""
        cr = self._copy()
        cr.extend(new_leaf_hashes)
        return cr.root()

    def consistency_proof_to(self, new_leaf_hashes: Sequence[bytes]) -> list[bytes]:
        """RFC 9162 consistency proof from ``size`` to ``size + len(new_leaf_hashes)``.

        Needs no old leaves: the proof only uses perfect subtrees of the current
        frontier and subtrees made purely of new leaves (see :func:`_consistency_walk`).
        Returns ``[]`` when size is 0 or nothing is added, like :func:`consistency_proof`.
        """
        m = self._size
        n = m + len(new_leaf_hashes)
        if m == 0 or n == m:
            _check_hashes(new_leaf_hashes)
            return []
        # Frontier entry for block size k is the one after all of m's higher set bits.
        by_size: dict[int, bytes] = {}
        bits = [1 << b for b in range(m.bit_length() - 1, -1, -1) if m >> b & 1]
        for bit, h in zip(bits, self._hashes, strict=True):
            by_size[bit] = h

        def old_block(lo: int, k: int) -> bytes:
            # Guaranteed by the walk; checked anyway because a wrong hash would be silent.
            if k not in by_size or lo != m & ~((k << 1) - 1):
                raise AssertionError(f"block [{lo}, {lo + k}) is not a frontier subtree of {m}")
            return by_size[k]

        def new_range(lo: int, hi: int) -> bytes:
            return _range_root(new_leaf_hashes, lo - m, hi - m)

        # The emitted new ranges cover all of [m, n), so every new leaf gets validated.
        return _consistency_walk(m, n, old_block, new_range)
