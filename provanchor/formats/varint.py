"""Unsigned LEB128 varints, the one implementation for CIDs, multihashes, CAR framing and protobuf.

Multiformats (CIDs, CAR section lengths) require the minimal encoding and at
most 9 bytes (63 bits); protobuf (dag-pb, UnixFS) allows up to 10 bytes (64
bits) and does not insist on minimality. Both are the same loop with two
limits, so both live here and every decoder reports the same error type,
which each format names in its own words at its own boundary.
"""

from __future__ import annotations

from provanchor.errors import VarintError

__all__ = ["MULTIFORMAT_MAX_BYTES", "PROTOBUF_MAX_BYTES", "decode_varint", "encode_varint"]

MULTIFORMAT_MAX_BYTES = 9
PROTOBUF_MAX_BYTES = 10


def encode_varint(value: int) -> bytes:
    """The minimal encoding of an unsigned integer."""
    if value < 0:
        raise ValueError("varints are unsigned")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(
    data: bytes | bytearray | memoryview,
    offset: int = 0,
    end: int | None = None,
    *,
    max_bytes: int = MULTIFORMAT_MAX_BYTES,
    minimal: bool = True,
) -> tuple[int, int]:
    """(value, offset after it) of the varint at `offset`, reading no further than `end`.

    VarintError when it is cut off, longer than `max_bytes`, or (with `minimal`) not minimally encoded.
    """
    stop = len(data) if end is None else min(end, len(data))
    value = 0
    shift = 0
    for index in range(offset, min(stop, offset + max_bytes)):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if minimal and byte == 0 and index != offset:
                raise VarintError("varint is not minimally encoded")
            return value, index + 1
        shift += 7
    if stop - offset >= max_bytes:
        raise VarintError(f"varint longer than {max_bytes} bytes")
    raise VarintError("varint is truncated")
