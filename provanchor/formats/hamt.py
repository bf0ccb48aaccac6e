"""HAMT-sharded UnixFS directories, byte for byte as Kubo builds them.

A snapshot's root CID must equal `ipfs add -r --cid-version=1 --raw-leaves`
for the same tree, so a large directory must be sharded exactly when and how
Kubo shards it. The rules, read from boxo v0.43.0 (the library Kubo v0.43.1
builds directories with) and checked against the real Kubo in the tests:

- When (`ipld/unixfs/io/directory.go`, default `Import.UnixFSHAMTDirectorySizeEstimation`
  = "links"): a directory becomes a HAMT when the sum over its entries of
  `len(name) + len(cid bytes)` is greater than (not equal to) 256 KiB
  (`Import.UnixFSHAMTDirectorySizeThreshold`). Each directory is decided on
  its own.
- How (`ipld/unixfs/hamt`): fanout 256; an entry's slot at each level is the
  next byte of the 64-bit MurmurHash3 (x64 128-bit variant, seed 0, first
  64 bits, big-endian) of its name, most significant byte first. A slot holds
  either one entry, linked as `"%02X" % slot + name`, or, when two entries
  collide, a child shard built the same way from the next byte, linked as
  `"%02X" % slot` alone. Links are ordered by slot.
- The node: dag-pb, links first, then UnixFS Data {Type: HAMTShard (5),
  Data: the occupied slots as a big-endian 256-bit bitfield without leading
  zero bytes, hashType: 0x22 (murmur3), fanout: 256}. Tsize of a link to a
  child shard is that shard's block size plus its links' Tsizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from provanchor.formats.cid import CID, DAG_PB
from provanchor.formats.dagpb import bytes_field, pb_link, varint_field

__all__ = [
    "FANOUT",
    "HAMT_THRESHOLD",
    "MURMUR3",
    "hamt_directory",
    "murmur3_x64_64",
    "needs_sharding",
]

HAMT_THRESHOLD = 256 * 1024
FANOUT = 256
MURMUR3 = 0x22
_UNIXFS_HAMT_SHARD = 5
_MASK = (1 << 64) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F

Link = tuple[bytes, CID, int]
"""(name, cid, tsize) of one directory entry."""
Emit = Callable[[CID, bytes], None]


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK
    k ^= k >> 33
    return k


def murmur3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """MurmurHash3_x64_128 (Austin Appleby's reference), as two 64-bit halves (h1, h2)."""
    h1 = h2 = seed & _MASK
    length = len(data)
    blocks = length // 16
    for i in range(blocks):
        k1 = int.from_bytes(data[16 * i : 16 * i + 8], "little")
        k2 = int.from_bytes(data[16 * i + 8 : 16 * i + 16], "little")
        k1 = (_rotl((k1 * _C1) & _MASK, 31) * _C2) & _MASK
        h1 ^= k1
        h1 = (_rotl(h1, 27) + h2) & _MASK
        h1 = (h1 * 5 + 0x52DCE729) & _MASK
        k2 = (_rotl((k2 * _C2) & _MASK, 33) * _C1) & _MASK
        h2 ^= k2
        h2 = (_rotl(h2, 31) + h1) & _MASK
        h2 = (h2 * 5 + 0x38495AB5) & _MASK
    tail = data[16 * blocks :]
    k1 = k2 = 0
    if len(tail) > 8:
        k2 = int.from_bytes(tail[8:], "little")
        k2 = (_rotl((k2 * _C2) & _MASK, 33) * _C1) & _MASK
        h2 ^= k2
    if tail:
        k1 = int.from_bytes(tail[:8], "little")
        k1 = (_rotl((k1 * _C1) & _MASK, 31) * _C2) & _MASK
        h1 ^= k1
    h1 ^= length
    h2 ^= length
    h1 = (h1 + h2) & _MASK
    h2 = (h2 + h1) & _MASK
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    h1 = (h1 + h2) & _MASK
    h2 = (h2 + h1) & _MASK
    return h1, h2


def murmur3_x64_64(data: bytes) -> bytes:
    """The 8 hash bytes a HAMT consumes: the first 64 bits of murmur3 x64 128, big-endian (Go's murmur3.New64)."""
    return murmur3_x64_128(data)[0].to_bytes(8, "big")


def needs_sharding(links: Sequence[Link], threshold: int = HAMT_THRESHOLD) -> bool:
    """Whether Kubo would make this directory a HAMT: names plus CID bytes exceed the threshold."""
    return sum(len(name) + len(cid.to_bytes()) for name, cid, _ in links) > threshold


def _shard_node(slots: dict[int, tuple[bytes, CID, int]]) -> bytes:
    """The dag-pb bytes of one shard: its links by slot, then its UnixFS HAMTShard data."""
    bits = 0
    links = []
    for slot in sorted(slots):
        bits |= 1 << slot
        name, cid, tsize = slots[slot]
        links.append(pb_link(name, cid, tsize))
    bitfield = bits.to_bytes((bits.bit_length() + 7) // 8, "big")
    unixfs = (
        varint_field(1, _UNIXFS_HAMT_SHARD)
        + (bytes_field(2, bitfield) if bitfield else b"")
        + varint_field(5, MURMUR3)
        + varint_field(6, FANOUT)
    )
    return b"".join(links) + bytes_field(1, unixfs)


def _build(entries: list[tuple[bytes, bytes, CID, int]], depth: int, emit: Emit) -> tuple[CID, int]:
    """One shard (and its children) from (hash, name, cid, tsize) entries at `depth` bytes into the hash."""
    if depth >= 8:
        raise ValueError("HAMT too deep: two names share all 64 hash bits")
    by_slot: dict[int, list[tuple[bytes, bytes, CID, int]]] = {}
    for entry in entries:
        by_slot.setdefault(entry[0][depth], []).append(entry)
    slots: dict[int, tuple[bytes, CID, int]] = {}
    for slot, members in by_slot.items():
        prefix = b"%02X" % slot
        if len(members) == 1:
            _, name, cid, tsize = members[0]
            slots[slot] = (prefix + name, cid, tsize)
        else:
            child, child_tsize = _build(members, depth + 1, emit)
            slots[slot] = (prefix, child, child_tsize)
    block = _shard_node(slots)
    cid = CID.for_block(DAG_PB, block)
    emit(cid, block)
    return cid, len(block) + sum(tsize for _, _, tsize in slots.values())


def hamt_directory(links: Sequence[Link], emit: Emit) -> tuple[CID, int]:
    """A HAMT-sharded directory of `links`; every shard block goes to `emit`; returns (root CID, Tsize)."""
    entries = [(murmur3_x64_64(name), name, cid, tsize) for name, cid, tsize in links]
    return _build(entries, 0, emit)
