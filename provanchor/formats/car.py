"""CARv1 archives: write them for bulk upload, read them back verifying every block.

A CAR is ``varint(len) header`` followed by sections ``varint(len) CID block``;
the header is the dag-cbor map ``{"roots": [CID...], "version": 1}``, written
and read with the one dag-cbor codec (`provanchor.formats.dagcbor`), which
accepts only canonical bytes; the reader then accepts exactly that shape.

Reading is trustless: a section whose bytes do not hash to its CID raises
`BlockMismatch` naming that CID, and anything malformed or truncated raises
`CarError`, so a consumer never sees unverified data.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

from provanchor.errors import BlockMismatch, CarError, DagCborError, InvalidCid, VarintError
from provanchor.formats import dagcbor
from provanchor.formats.cid import CID
from provanchor.formats.varint import decode_varint, encode_varint

__all__ = ["CarError", "car_bytes", "encode_header", "read_car", "write_car"]

#: Largest header or section accepted; a corrupt length prefix must not make the reader allocate gigabytes.
MAX_SECTION = 32 * 1024 * 1024



# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------


def encode_header(roots: Sequence[CID]) -> bytes:
    """dag-cbor ``{"roots": [...], "version": 1}``."""
    return dagcbor.encode({"roots": [CID.parse(root) for root in roots], "version": 1})


def write_car(roots: Sequence[CID], blocks: Iterable[tuple[CID, bytes]], out: BinaryIO) -> None:
    """Stream a CARv1 with ``roots`` and ``blocks`` (in the given order) to ``out``.

    Blocks are written as given, not re-hashed: the writer is fed by code that
    just computed the CIDs, and the reader (and any daemon) verifies anyway.
    """
    header = encode_header(roots)
    out.write(encode_varint(len(header)))
    out.write(header)
    for cid, block in blocks:
        cid_bytes = cid.to_bytes()
        out.write(encode_varint(len(cid_bytes) + len(block)))
        out.write(cid_bytes)
        out.write(block)


def car_bytes(roots: Sequence[CID], blocks: Iterable[tuple[CID, bytes]]) -> bytes:
    """`write_car` into memory."""
    buffer = io.BytesIO()
    write_car(roots, blocks, buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------


def read_car(source: bytes | bytearray | memoryview | BinaryIO) -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Parse a CARv1: the header now (CarError if it is not a CAR), the blocks lazily.

    The iterator verifies each block against its CID (BlockMismatch naming the
    CID) and raises CarError for a truncated or malformed section. A file object
    is read sequentially and not closed.
    """
    stream: BinaryIO = io.BytesIO(bytes(source)) if isinstance(source, bytes | bytearray | memoryview) else source
    length = _read_length(stream, what="header", allow_eof=False)
    if length is None:  # pragma: no cover - allow_eof=False never returns None
        raise CarError("not a CAR file: empty input")
    header = _read_exact(stream, length, "header")
    roots = _decode_header(header)
    return roots, _iter_sections(stream)


def _iter_sections(stream: BinaryIO) -> Iterator[tuple[CID, bytes]]:
    index = 0
    while True:
        length = _read_length(stream, what=f"section {index}", allow_eof=True)
        if length is None:
            return
        section = _read_exact(stream, length, f"section {index}")
        cid, offset = _split_cid(section, index)
        block = section[offset:]
        if not cid.matches(block):
            raise BlockMismatch(str(cid), f"CAR block {cid} does not match its CID: refusing to use it")
        yield cid, block
        index += 1


def _read_length(stream: BinaryIO, what: str, allow_eof: bool) -> int | None:
    """An unsigned varint length prefix, read a byte at a time (a CAR has no other framing)."""
    prefix = bytearray()
    while not prefix or prefix[-1] & 0x80:
        byte = stream.read(1)
        if not byte:
            if not prefix and allow_eof:
                return None
            if not prefix:
                raise CarError("not a CAR file: empty input")
            raise CarError(f"truncated CAR: {what} length cut off")
        prefix += byte
        if len(prefix) > 9:
            break
    try:
        value, _ = decode_varint(prefix)
    except VarintError as exc:
        raise CarError(f"malformed CAR: {what} length: {exc}") from exc
    if value == 0:
        raise CarError(f"malformed CAR: {what} has length 0")
    if value > MAX_SECTION:
        raise CarError(f"malformed CAR: {what} length {value} exceeds {MAX_SECTION} bytes")
    return value


def _read_exact(stream: BinaryIO, length: int, what: str) -> bytes:
    data = stream.read(length)
    if len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = stream.read(length - got)
        if not more:
            raise CarError(f"truncated CAR: {what} has {got} of {length} bytes")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _section_varint(data: bytes, offset: int, index: int) -> tuple[int, int]:
    try:
        return decode_varint(data, offset)
    except VarintError as exc:
        raise CarError(f"malformed CAR: section {index} CID: {exc}") from exc


def _split_cid(section: bytes, index: int) -> tuple[CID, int]:
    """The CID at the start of a section and where the block begins."""
    if section[:2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
        end = 34
    else:
        offset = 0
        for _ in range(3):  # version, codec, multihash code
            _, offset = _section_varint(section, offset, index)
        digest_len, offset = _section_varint(section, offset, index)
        end = offset + digest_len
    if end > len(section):
        raise CarError(f"malformed CAR: section {index} CID is truncated")
    try:
        return CID.from_bytes(section[:end]), end
    except InvalidCid as exc:
        raise CarError(f"malformed CAR: section {index}: {exc}") from exc


def _decode_header(header: bytes) -> list[CID]:
    try:
        value = dagcbor.decode(header)
    except DagCborError as exc:
        raise CarError(f"not a CAR file: header is not canonical dag-cbor ({exc})") from exc
    if not isinstance(value, dict):
        raise CarError("not a CAR file: header is not a dag-cbor map")
    unexpected = sorted(set(value) - {"roots", "version"})
    if unexpected:
        raise CarError(f"not a CARv1 file: unexpected header key {unexpected[0]!r}")
    version = value.get("version")
    if version == 2:
        raise CarError("CARv2 files are not supported: convert to CARv1 first")
    if type(version) is not int or version != 1:
        raise CarError(f"not a CARv1 file: header version is {version!r}")
    roots = value.get("roots")
    if roots is None:
        raise CarError("not a CAR file: header has no roots")
    if not isinstance(roots, list):
        raise CarError("not a CAR file: header roots is not a list")
    if not all(isinstance(root, CID) for root in roots):
        raise CarError("not a CAR file: header roots must be CIDs (tag 42)")
    return list(roots)
