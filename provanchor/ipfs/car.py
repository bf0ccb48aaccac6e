"""CARv1 archives: write them for bulk upload, read them back verifying every block.

A CAR is ``varint(len) header`` followed by sections ``varint(len) CID block``;
the header is the dag-cbor map ``{"roots": [CID...], "version": 1}``. That map
has one fixed shape, so it is encoded and decoded here by hand rather than
through a general dag-cbor codec: the module stays dependency-free and the
reader accepts nothing it does not fully understand.

Reading is trustless: a section whose bytes do not hash to its CID raises
`BlockMismatch` naming that CID, and anything malformed or truncated raises
`CarError`, so a consumer never sees unverified data.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

from provanchor.errors import BlockMismatch, InvalidCid, ProvanchorError
from provanchor.ipfs.cid import CID, encode_varint

__all__ = ["CarError", "car_bytes", "encode_header", "read_car", "write_car"]

#: Largest header or section accepted; a corrupt length prefix must not make the reader allocate gigabytes.
MAX_SECTION = 32 * 1024 * 1024

_CID_TAG = 42
_MAJOR_UINT, _MAJOR_BYTES, _MAJOR_TEXT, _MAJOR_ARRAY, _MAJOR_MAP, _MAJOR_TAG = 0, 2, 3, 4, 5, 6


class CarError(ProvanchorError):
    """Input is not a CARv1 archive this reader accepts, or it is truncated."""


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------


def _cbor_head(major: int, value: int) -> bytes:
    """The shortest CBOR initial byte(s) for ``value``, as dag-cbor's canonical form requires."""
    if value < 24:
        return bytes([major << 5 | value])
    for extra, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * width):
            return bytes([major << 5 | extra]) + value.to_bytes(width, "big")
    raise ValueError("CBOR length out of range")


def encode_header(roots: Sequence[CID]) -> bytes:
    """dag-cbor ``{"roots": [...], "version": 1}`` (keys in dag-cbor order: shorter first)."""
    parts = [_cbor_head(_MAJOR_MAP, 2), _cbor_head(_MAJOR_TEXT, 5), b"roots", _cbor_head(_MAJOR_ARRAY, len(roots))]
    for root in roots:
        payload = b"\x00" + CID.parse(root).to_bytes()  # tag 42 payload: identity multibase prefix + binary CID
        parts += (_cbor_head(_MAJOR_TAG, _CID_TAG), _cbor_head(_MAJOR_BYTES, len(payload)), payload)
    parts += (_cbor_head(_MAJOR_TEXT, 7), b"version", _cbor_head(_MAJOR_UINT, 1))
    return b"".join(parts)


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
    """An unsigned varint length prefix read byte by byte (a CAR has no other framing)."""
    value = 0
    for shift in range(0, 63, 7):
        byte = stream.read(1)
        if not byte:
            if shift == 0 and allow_eof:
                return None
            if shift == 0:
                raise CarError("not a CAR file: empty input")
            raise CarError(f"truncated CAR: {what} length cut off")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            if value == 0:
                raise CarError(f"malformed CAR: {what} has length 0")
            if value > MAX_SECTION:
                raise CarError(f"malformed CAR: {what} length {value} exceeds {MAX_SECTION} bytes")
            return value
    raise CarError(f"malformed CAR: {what} length varint too long")


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
    value = 0
    for shift in range(0, 63, 7):
        if offset >= len(data):
            raise CarError(f"malformed CAR: section {index} CID is truncated")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
    raise CarError(f"malformed CAR: section {index} CID varint too long")


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


class _Cbor:
    """Cursor over the header bytes for the handful of CBOR items a CARv1 header uses."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def head(self) -> tuple[int, int]:
        """(major type, argument) of the next item; definite lengths only, as dag-cbor requires."""
        if self.pos >= len(self.data):
            raise CarError("not a CAR file: header is truncated")
        initial = self.data[self.pos]
        self.pos += 1
        major, extra = initial >> 5, initial & 0x1F
        if extra < 24:
            return major, extra
        width = {24: 1, 25: 2, 26: 4, 27: 8}.get(extra)
        if width is None or self.pos + width > len(self.data):
            raise CarError("not a CAR file: header is not dag-cbor")
        value = int.from_bytes(self.data[self.pos : self.pos + width], "big")
        self.pos += width
        return major, value

    def take(self, length: int) -> bytes:
        if self.pos + length > len(self.data):
            raise CarError("not a CAR file: header is truncated")
        chunk = self.data[self.pos : self.pos + length]
        self.pos += length
        return chunk

    def text(self) -> str:
        major, length = self.head()
        if major != _MAJOR_TEXT:
            raise CarError("not a CAR file: header keys must be strings")
        try:
            return self.take(length).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CarError("not a CAR file: header key is not UTF-8") from exc

    def cid(self) -> CID:
        major, tag = self.head()
        if major != _MAJOR_TAG or tag != _CID_TAG:
            raise CarError("not a CAR file: header roots must be CIDs (tag 42)")
        major, length = self.head()
        if major != _MAJOR_BYTES:
            raise CarError("not a CAR file: tag 42 must wrap a byte string")
        payload = self.take(length)
        if payload[:1] != b"\x00":
            raise CarError("not a CAR file: tag 42 CID lacks the 0x00 multibase prefix")
        try:
            return CID.from_bytes(payload[1:])
        except InvalidCid as exc:
            raise CarError(f"CAR root is not a supported CID: {exc}") from exc


def _decode_header(header: bytes) -> list[CID]:
    cbor = _Cbor(header)
    major, count = cbor.head()
    if major != _MAJOR_MAP:
        raise CarError("not a CAR file: header is not a dag-cbor map")
    roots: list[CID] | None = None
    version: int | None = None
    for _ in range(count):
        key = cbor.text()
        if key == "version":
            major, version = cbor.head()
            if major != _MAJOR_UINT:
                raise CarError("not a CAR file: header version is not an integer")
        elif key == "roots":
            major, length = cbor.head()
            if major != _MAJOR_ARRAY:
                raise CarError("not a CAR file: header roots is not a list")
            if length > len(header):
                raise CarError("not a CAR file: header is truncated")
            roots = [cbor.cid() for _ in range(length)]
        else:
            raise CarError(f"not a CARv1 file: unexpected header key {key!r}")
    if version == 2:
        raise CarError("CARv2 files are not supported: convert to CARv1 first")
    if version != 1:
        raise CarError(f"not a CARv1 file: header version is {version}")
    if roots is None:
        raise CarError("not a CAR file: header has no roots")
    if cbor.pos != len(header):
        raise CarError("not a CAR file: trailing bytes after the header")
    return roots
