"""Strict, canonical DAG-CBOR: the byte format of every provenance record.

A record's canonical bytes are at once its IPFS block and the input of its
hash, so there must be exactly one encoding per value and the decoder must
refuse every other one. Accepting a second spelling of the same record would
give it a second hash, and "one hash names a record everywhere" would break.

Supported values, and nothing else (so that ``decode(encode(x)) == x``):

=================  ==============================================================
Python             CBOR
=================  ==============================================================
``None``           simple value 22 (``0xf6``)
``bool``           simple values 20/21 (``0xf4``/``0xf5``)
``int``            major 0 (0 ... 2**64-1) or major 1 (-2**64 ... -1)
``str``            major 3, UTF-8
``bytes``          major 2
``list``           major 4
``dict``           major 5, ``str`` keys only
``CID``            tag 42 around a byte string ``0x00 || binary CID``
=================  ==============================================================

Floats are refused on purpose: IEEE values have several encodings and invite
rounding disputes; records carry numbers as integers or strings instead.
Canonical rules (RFC 8949 §4.2.3 "length-first" order, as DAG-CBOR requires):
every head uses the shortest form, lengths are always definite, map keys are
sorted by the length of their encoded form then bytewise, and never repeat.
"""

from __future__ import annotations

from provanchor.errors import DagCborError, InvalidCid
from provanchor.formats.cid import CID

__all__ = ["MAX_DEPTH", "DagCborError", "decode", "encode"]

MAX_DEPTH = 64
"""Deepest nesting of lists/maps accepted; bounds recursion on hostile input."""

_UINT64_MAX = 0xFFFF_FFFF_FFFF_FFFF
_CID_TAG = 42
_TAG_CID_HEAD = b"\xd8\x2a"
_NULL, _FALSE, _TRUE = 0xF6, 0xF4, 0xF5

# Map-key order is the hot spot of encoding records (all 20 keys every time), so
# the sorted, pre-encoded keys are cached per key tuple. Bounded: payload maps
# with arbitrary keys must not grow it without limit.
_KEY_CACHE_MAX = 4096
_key_cache: dict[tuple[str, ...], tuple[tuple[bytes, str], ...]] = {}


# --------------------------------------------------------------------- encoding


def encode(obj: object) -> bytes:
    """Return the canonical DAG-CBOR bytes of ``obj`` (raise DagCborError if unsupported)."""
    out = bytearray()
    _encode(obj, out, 0)
    return bytes(out)


def _head(out: bytearray, major: int, n: int) -> None:
    """Append a head in its shortest form; `major` is already shifted (0x00, 0x20 ... 0xc0)."""
    if n < 24:
        out.append(major | n)
    elif n < 0x100:
        out.append(major | 24)
        out.append(n)
    elif n < 0x1_0000:
        out.append(major | 25)
        out += n.to_bytes(2, "big")
    elif n < 0x1_0000_0000:
        out.append(major | 26)
        out += n.to_bytes(4, "big")
    else:
        out.append(major | 27)
        out += n.to_bytes(8, "big")


def _sorted_keys(obj: dict[object, object]) -> tuple[tuple[bytes, str], ...]:
    keys = tuple(obj)
    cached = _key_cache.get(keys)  # type: ignore[arg-type]
    if cached is not None:
        return cached
    entries = []
    for key in keys:
        if type(key) is not str and not isinstance(key, str):
            raise DagCborError(f"map keys must be strings, got {type(key).__name__}: {key!r:.60}")
        raw = _utf8(key)
        head = bytearray()
        _head(head, 0x60, len(raw))
        entries.append((bytes(head) + raw, key))
    entries.sort(key=lambda entry: (len(entry[0]), entry[0]))
    result = tuple(entries)
    if len(_key_cache) >= _KEY_CACHE_MAX:
        _key_cache.clear()
    _key_cache[keys] = result  # type: ignore[index]
    return result


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DagCborError(f"string is not valid Unicode (lone surrogate?): {text!r:.60}") from exc


def _small_heads(major: int) -> tuple[bytes, ...]:
    return tuple(bytes((major | n,)) if n < 24 else bytes((major | 24, n)) for n in range(256))


# Heads for arguments below 256, ready to append: the common case for every
# string, byte string, list, map and small integer in a record.
_UINT_HEADS, _BYTES_HEADS, _TEXT_HEADS, _LIST_HEADS, _MAP_HEADS = map(_small_heads, (0x00, 0x40, 0x60, 0x80, 0xA0))


def _encode(obj: object, out: bytearray, depth: int) -> None:
    # Exact-type dispatch first (fast path), subclasses (e.g. StrEnum) afterwards.
    kind = type(obj)
    if kind is str:
        raw = _utf8(obj)  # type: ignore[arg-type]
        n = len(raw)
        if n < 256:
            out += _TEXT_HEADS[n]
        else:
            _head(out, 0x60, n)
        out += raw
    elif kind is int:
        if 0 <= obj < 256:  # type: ignore[operator]
            out += _UINT_HEADS[obj]  # type: ignore[call-overload]
        else:
            _encode_int(obj, out)  # type: ignore[arg-type]
    elif obj is None:
        out.append(_NULL)
    elif kind is dict:
        if depth >= MAX_DEPTH:
            raise DagCborError(f"nesting deeper than {MAX_DEPTH} levels")
        entries = _sorted_keys(obj)  # type: ignore[arg-type]
        n = len(entries)
        if n < 256:
            out += _MAP_HEADS[n]
        else:
            _head(out, 0xA0, n)
        depth += 1
        for raw_key, key in entries:
            out += raw_key
            _encode(obj[key], out, depth)  # type: ignore[index]
    elif kind is bytes:
        n = len(obj)  # type: ignore[arg-type]
        if n < 256:
            out += _BYTES_HEADS[n]
        else:
            _head(out, 0x40, n)
        out += obj  # type: ignore[arg-type]
    elif kind is bool:
        out.append(_TRUE if obj else _FALSE)
    elif kind is list:
        if depth >= MAX_DEPTH:
            raise DagCborError(f"nesting deeper than {MAX_DEPTH} levels")
        n = len(obj)  # type: ignore[arg-type]
        if n < 256:
            out += _LIST_HEADS[n]
        else:
            _head(out, 0x80, n)
        depth += 1
        for item in obj:  # type: ignore[attr-defined]
            _encode(item, out, depth)
    elif kind is CID:
        _encode_cid(obj, out)  # type: ignore[arg-type]
    else:
        _encode_other(obj, out, depth)


def _encode_int(value: int, out: bytearray) -> None:
    if value >= 0:
        if value > _UINT64_MAX:
            raise DagCborError(f"integer {value} is above 2**64-1")
        _head(out, 0x00, value)
    else:
        n = -1 - value
        if n > _UINT64_MAX:
            raise DagCborError(f"integer {value} is below -2**64")
        _head(out, 0x20, n)


def _encode_cid(cid: CID, out: bytearray) -> None:
    raw = cid.to_bytes()
    out += _TAG_CID_HEAD
    _head(out, 0x40, len(raw) + 1)
    out.append(0)
    out += raw


def _encode_other(obj: object, out: bytearray, depth: int) -> None:
    """Subclasses of the supported types, and precise refusals for everything else."""
    if isinstance(obj, float):
        raise DagCborError("floats are not allowed in canonical records; use an integer or a string")
    if isinstance(obj, str):
        raw = _utf8(obj)
        _head(out, 0x60, len(raw))
        out += raw
    elif isinstance(obj, int):
        _encode_int(int(obj), out)
    elif isinstance(obj, CID):
        _encode_cid(obj, out)
    else:
        # bytes/list/dict subclasses, tuples, bytearrays... are refused so that a
        # round trip always returns the very types that were encoded.
        raise DagCborError(f"cannot encode {type(obj).__name__} as DAG-CBOR: {obj!r:.60}")


# --------------------------------------------------------------------- decoding


def decode(data: bytes | bytearray | memoryview) -> object:
    """Decode exactly one canonical DAG-CBOR value; anything else raises DagCborError."""
    if not isinstance(data, bytes):
        if not isinstance(data, bytearray | memoryview):
            raise DagCborError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
    if not data:
        raise DagCborError("empty input")
    try:
        value, pos = _decode(data, 0, 0)
    except IndexError:
        raise DagCborError("truncated input") from None
    if pos != len(data):
        raise DagCborError(f"{len(data) - pos} trailing byte(s) after the value at offset {pos}")
    return value


def _argument(data: bytes, pos: int, info: int) -> tuple[int, int]:
    """Read a head's argument (info = low 5 bits) after the initial byte at `pos`."""
    if info < 24:
        return info, pos + 1
    if info == 24:
        value = data[pos + 1]
        if value < 24:
            raise DagCborError(f"non-minimal encoding at offset {pos}")
        return value, pos + 2
    if info == 31:
        raise DagCborError(f"indefinite length at offset {pos}")
    if info > 27:
        raise DagCborError(f"reserved additional information {info} at offset {pos}")
    size = 1 << (info - 24)  # 25 -> 2, 26 -> 4, 27 -> 8 bytes
    end = pos + 1 + size
    if end > len(data):
        raise IndexError
    value = int.from_bytes(data[pos + 1 : end], "big")
    if value < 1 << (4 * size):  # would have fit in half the bytes
        raise DagCborError(f"non-minimal encoding at offset {pos}")
    return value, end


def _decode(data: bytes, pos: int, depth: int) -> tuple[object, int]:
    initial = data[pos]
    major = initial >> 5
    if major == 7:
        if initial == _NULL:
            return None, pos + 1
        if initial == _FALSE:
            return False, pos + 1
        if initial == _TRUE:
            return True, pos + 1
        if 0xF9 <= initial <= 0xFB:
            raise DagCborError(f"float at offset {pos}: floats are not allowed")
        if initial == 0xFF:
            raise DagCborError(f"unexpected break (indefinite length) at offset {pos}")
        raise DagCborError(f"unsupported simple value 0x{initial:02x} at offset {pos}")
    info = initial & 31
    if info < 24:
        arg = info
        pos += 1
    else:
        arg, pos = _argument(data, pos, info)
    if major == 3:
        end = pos + arg
        if end > len(data):
            raise IndexError
        try:
            return data[pos:end].decode("utf-8"), end
        except UnicodeDecodeError:
            raise DagCborError(f"invalid UTF-8 in text string at offset {pos}") from None
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major == 2:
        end = pos + arg
        if end > len(data):
            raise IndexError
        return data[pos:end], end
    if major == 4:
        if depth >= MAX_DEPTH:
            raise DagCborError(f"nesting deeper than {MAX_DEPTH} levels")
        if arg > len(data) - pos:
            raise IndexError
        items = []
        for _ in range(arg):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        if depth >= MAX_DEPTH:
            raise DagCborError(f"nesting deeper than {MAX_DEPTH} levels")
        return _decode_map(data, pos, arg, depth)
    # major == 6: a tag
    if arg != _CID_TAG:
        raise DagCborError(f"unsupported tag {arg} at offset {pos}: only tag 42 (CID) is allowed")
    return _decode_cid(data, pos)


def _decode_map(data: bytes, pos: int, count: int, depth: int) -> tuple[dict[str, object], int]:
    if 2 * count > len(data) - pos:
        raise IndexError
    result: dict[str, object] = {}
    previous = b""
    depth += 1
    for _ in range(count):
        start = pos
        initial = data[pos]
        if initial >> 5 != 3:
            raise DagCborError(f"map key at offset {pos} is not a text string")
        if initial < 0x78:  # short key: inline, this loop is the decoder's hot spot
            pos += 1 + (initial & 31)
            if pos > len(data):
                raise IndexError
            raw_key = data[start:pos]
            try:
                key = raw_key[1:].decode("utf-8")
            except UnicodeDecodeError:
                raise DagCborError(f"invalid UTF-8 in map key at offset {start}") from None
        else:
            key, pos = _decode(data, pos, depth)  # type: ignore[assignment]
            raw_key = data[start:pos]
        if previous:
            if raw_key == previous:
                raise DagCborError(f"duplicate map key {key!r} at offset {start}")
            if len(raw_key) < len(previous) or (len(raw_key) == len(previous) and raw_key < previous):
                raise DagCborError(f"map keys out of canonical order at offset {start} ({key!r})")
        previous = raw_key
        result[key], pos = _decode(data, pos, depth)
    return result, pos


def _decode_cid(data: bytes, pos: int) -> tuple[CID, int]:
    if data[pos] >> 5 != 2:
        raise DagCborError(f"tag 42 at offset {pos} must wrap a byte string")
    raw, end = _decode(data, pos, 0)
    assert isinstance(raw, bytes)
    if not raw or raw[0] != 0:
        raise DagCborError(f"CID at offset {pos} lacks the 0x00 multibase prefix")
    try:
        cid = CID.from_bytes(raw[1:])
    except InvalidCid as exc:
        raise DagCborError(f"invalid CID at offset {pos}: {exc}") from None
    if cid.to_bytes() != raw[1:]:
        raise DagCborError(f"non-canonical CID at offset {pos}")
    return cid, end
