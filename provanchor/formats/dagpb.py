"""dag-pb encoding of the nodes Kubo writes for directories, HAMT shards and symlinks.

One set of encoders so that a plain directory, a sharded one and a symlink
come out byte-for-byte as `ipfs add -r` makes them: links first (Hash, Name,
Tsize in that order), then the UnixFS Data field. (File nodes are written by
`provanchor.formats.unixfs`, which precomputes their framing for speed.)
"""

from __future__ import annotations

from functools import lru_cache

from provanchor.formats.cid import CID
from provanchor.formats.unixfs import UNIXFS_DIRECTORY, UNIXFS_SYMLINK
from provanchor.formats.varint import encode_varint

__all__ = ["bytes_field", "directory_node", "pb_link", "symlink_node", "varint_field"]

def bytes_field(field_number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return encode_varint(field_number << 3 | 2) + encode_varint(len(payload)) + payload


def varint_field(field_number: int, value: int) -> bytes:
    """A varint protobuf field."""
    return encode_varint(field_number << 3) + encode_varint(value)


@lru_cache(maxsize=1 << 16)
def pb_link(name: bytes, cid: CID, tsize: int) -> bytes:
    """One encoded PBLink (field 2 of PBNode); cached because a periodic snapshot re-encodes the same links."""
    return bytes_field(2, bytes_field(1, cid.to_bytes()) + bytes_field(2, name) + varint_field(3, tsize))


def directory_node(links: list[tuple[bytes, CID, int]]) -> bytes:
    """PBNode{Links (sorted by name bytes), Data: UnixFS{Type: Directory}} from (name, cid, tsize)."""
    parts = [pb_link(name, cid, tsize) for name, cid, tsize in sorted(links, key=lambda link: link[0])]
    parts.append(bytes_field(1, varint_field(1, UNIXFS_DIRECTORY)))
    return b"".join(parts)


def symlink_node(target: bytes) -> bytes:
    """PBNode{Data: UnixFS{Type: Symlink, Data: target}}, as ``ipfs add`` stores a symlink."""
    return bytes_field(1, varint_field(1, UNIXFS_SYMLINK) + bytes_field(2, target))
