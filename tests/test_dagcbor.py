"""Tests for the strict DAG-CBOR codec: RFC 8949 vectors, round trips, and every refusal."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provanchor.formats import dagcbor
from provanchor.formats.cid import CID, DAG_CBOR, DAG_PB, RAW
from provanchor.formats.dagcbor import MAX_DEPTH, DagCborError, decode, encode

# RFC 8949 Appendix A examples that are valid DAG-CBOR (no floats, tags, bignums,
# indefinite lengths, undefined or simple values).
RFC8949_VECTORS: list[tuple[object, str]] = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (bytes.fromhex("01020304"), "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "a56161614161626142616361436164614461656145"),
]


@pytest.mark.parametrize(("value", "hex_bytes"), RFC8949_VECTORS, ids=[h for _, h in RFC8949_VECTORS])
def test_rfc8949_vectors(value: object, hex_bytes: str) -> None:
    assert encode(value).hex() == hex_bytes
    decoded = decode(bytes.fromhex(hex_bytes))
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize(
    ("value", "hex_prefix"),
    [
        (255, "18ff"),
        (256, "190100"),
        (65535, "19ffff"),
        (65536, "1a00010000"),
        (4294967295, "1affffffff"),
        (4294967296, "1b0000000100000000"),
        (-24, "37"),
        (-25, "3818"),
        (-257, "390100"),
        ("x" * 23, "77"),
        ("x" * 24, "7818"),
        ("x" * 300, "79012c"),
        (b"\0" * 70000, "5a00011170"),
        ([None] * 256, "990100"),
    ],
)
def test_head_boundaries(value: object, hex_prefix: str) -> None:
    data = encode(value)
    assert data.hex().startswith(hex_prefix)
    assert decode(data) == value


def test_map_keys_are_sorted_length_first_then_bytewise() -> None:
    value = {"aa": 1, "b": 2, "a": 3, "": 4, "ab": 5, "\u00fc": 6}
    data = encode(value)
    # "" < "a" < "b" (1 byte) < "aa" < "ab" < "\u00fc" (2 UTF-8 bytes, 0xc3 > 0x61)
    assert data.hex() == "a6" + "6004" + "616103" + "616202" + "62616101" + "62616205" + "62c3bc06"
    assert list(decode(data)) == ["", "a", "b", "aa", "ab", "\u00fc"]  # type: ignore[call-overload]
    assert encode(dict(reversed(value.items()))) == data


def test_cids_use_tag_42_with_identity_multibase_prefix() -> None:
    cid = CID.for_block(DAG_CBOR, b"block")
    data = encode(cid)
    assert data[:2] == b"\xd8\x2a"
    assert data[2:4] == bytes([0x58, 37])  # byte string of 1 + 36 bytes
    assert data[4] == 0
    assert data[5:] == cid.to_bytes()
    assert decode(data) == cid
    v0 = CID(0, DAG_PB, hashlib.sha256(b"x").digest())
    assert decode(encode(v0)) == v0
    raw = CID.for_block(RAW, b"x")
    assert decode(encode({"c": [raw, None]})) == {"c": [raw, None]}


def test_subclasses_of_str_and_int_encode_as_their_values() -> None:
    from enum import IntEnum, StrEnum

    class Color(StrEnum):
        RED = "red"

    class Level(IntEnum):
        HIGH = 300

    assert encode(Color.RED) == encode("red")
    assert encode(Level.HIGH) == encode(300)
    assert encode({Color.RED: 1}) == encode({"red": 1})


# ------------------------------------------------------------------ round trips

_json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.text()
    | st.binary()
    | st.builds(lambda d: CID(1, DAG_CBOR, d), st.binary(min_size=32, max_size=32)),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_json_like)
def test_round_trip(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_decode_either_refuses_or_is_canonical(data: bytes) -> None:
    """Random bytes: the decoder never crashes, and whatever it accepts re-encodes identically."""
    try:
        value = decode(data)
    except DagCborError:
        return
    assert encode(value) == data


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("hex_bytes", "why"),
    [
        ("", "empty input"),
        ("1817", "non-minimal int (1 byte for 23)"),
        ("1900ff", "non-minimal int (2 bytes for 255)"),
        ("1a0000ffff", "non-minimal int (4 bytes)"),
        ("1b00000000ffffffff", "non-minimal int (8 bytes)"),
        ("3817", "non-minimal negative int"),
        ("780161", "non-minimal string length"),
        ("59000161", "non-minimal string length (2 bytes)"),
        ("980101", "non-minimal array length"),
        ("b8010000", "non-minimal map length"),
        ("a2616201616102", "unsorted map keys"),
        ("a26261610161620a", "longer key before shorter key"),
        ("a2616101616102", "duplicate map keys"),
        ("a10102", "integer map key"),
        ("a1410102", "byte-string map key"),
        ("f90000", "half float"),
        ("fa47c35000", "single float"),
        ("fb3ff199999999999a", "double float"),
        ("f7", "undefined"),
        ("f0", "simple value"),
        ("f818", "one-byte simple value"),
        ("ff", "break"),
        ("5f42010243030405ff", "indefinite byte string"),
        ("7f657374726561646d696e67ff", "indefinite text string"),
        ("9fff", "indefinite array"),
        ("bf6161f5ff", "indefinite map"),
        ("c074323031332d30332d32315432303a30343a30305a", "tag 0 (date)"),
        ("c249010000000000000000", "bignum tag"),
        ("d82a6161", "tag 42 around a text string"),
        ("d82a4401020304", "tag 42 without 0x00 prefix"),
        ("d82a420001", "tag 42 with an invalid CID"),
        ("d90018" + "00", "non-minimal tag number"),
        ("1c", "reserved additional information"),
        ("0000", "trailing byte"),
        ("a0a0", "trailing map"),
        ("18", "truncated int"),
        ("1901", "truncated 2-byte int"),
        ("6261", "truncated string"),
        ("8201", "truncated array"),
        ("a16161", "truncated map"),
        ("62c328", "invalid UTF-8"),
        ("a162c32801", "invalid UTF-8 key"),
        ("63eda080", "UTF-8 encoded surrogate"),
        ("9b7fffffffffffffff", "absurd array length"),
    ],
)
def test_decode_refuses_non_canonical_or_unsupported(hex_bytes: str, why: str) -> None:
    with pytest.raises(DagCborError):
        decode(bytes.fromhex(hex_bytes))


def test_decode_refuses_non_canonical_cid_encoding() -> None:
    cid = CID.for_block(DAG_CBOR, b"x")
    data = bytearray(encode(cid))
    data[5:6] = b"\x81\x00"  # version 1 as a non-minimal varint
    data[3] += 1
    with pytest.raises(DagCborError):
        decode(bytes(data))


def test_nesting_limit() -> None:
    ok = bytes([0x81]) * (MAX_DEPTH - 1) + b"\x80"
    assert decode(ok) is not None
    with pytest.raises(DagCborError, match="nesting"):
        decode(bytes([0x81]) * MAX_DEPTH + b"\x80")
    deep: list[object] = []
    for _ in range(MAX_DEPTH):
        deep = [deep]
    with pytest.raises(DagCborError, match="nesting"):
        encode(deep)


def test_decode_accepts_bytearray_and_refuses_other_types() -> None:
    assert decode(bytearray(b"\x01")) == 1
    with pytest.raises(DagCborError):
        decode("01")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        0.0,
        float("nan"),
        2**64,
        -(2**64) - 1,
        (1, 2),
        {1, 2},
        bytearray(b"x"),
        {1: "a"},
        {b"k": "a"},
        "\ud800",
        {"k": [1.0]},
        object(),
    ],
    # An object's repr holds its address: name it by type, so every process collects the same ids.
    ids=lambda value: type(value).__name__ if type(value) is object else repr(value),
)
def test_encode_refuses_unsupported_values(value: object) -> None:
    with pytest.raises(DagCborError):
        encode(value)


def test_float_refusal_explains_the_alternative() -> None:
    with pytest.raises(DagCborError, match="floats are not allowed"):
        encode({"loss": 0.25})


def test_key_cache_is_bounded() -> None:
    for i in range(dagcbor._KEY_CACHE_MAX + 10):
        encode({f"k{i}": i})
    assert len(dagcbor._key_cache) <= dagcbor._KEY_CACHE_MAX


def test_dagcbor_error_is_bad_input_with_its_exit_code() -> None:
    from provanchor.errors import BadInput, UsageError

    assert issubclass(DagCborError, BadInput) and not issubclass(DagCborError, UsageError)
    assert DagCborError("x").exit_code == 65
