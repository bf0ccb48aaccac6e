"""Content identifiers (CIDs), parsed and made without any daemon.

Only what the ledger uses is supported: sha2-256 multihashes; the raw,
dag-pb and dag-cbor codecs; CIDv0 (base58btc `Qm...`) and CIDv1 (base32 `b...`
by default, base58btc `z...` accepted). Keeping this small and local means an
auditor's tooling never has to ask a daemon what a hash is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from functools import lru_cache

from provanchor.errors import InvalidCid, VarintError
from provanchor.formats.varint import decode_varint as _decode_varint
from provanchor.formats.varint import encode_varint

RAW = 0x55
DAG_PB = 0x70
DAG_CBOR = 0x71
SHA2_256 = 0x12
_CODECS = {RAW: "raw", DAG_PB: "dag-pb", DAG_CBOR: "dag-cbor"}
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Return (value, next offset); InvalidCid on truncation or overlong encodings."""
    try:
        return _decode_varint(data, offset)
    except VarintError as exc:
        raise InvalidCid(f"{exc} in CID") from exc


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    while number:
        number, rem = divmod(number, 58)
        chars.append(_B58_ALPHABET[rem])
    leading = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading + "".join(reversed(chars))


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        if char not in _B58_INDEX:
            raise InvalidCid(f"invalid base58 character {char!r}")
        number = number * 58 + _B58_INDEX[char]
    leading = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * leading + body


_SHA256_PREFIX = bytes([SHA2_256, 32])


@lru_cache(maxsize=64)
def _v1_prefix(codec: int) -> bytes:
    return encode_varint(1) + encode_varint(codec) + _SHA256_PREFIX


@dataclass(frozen=True, order=True)
class CID:
    """A CID with a sha2-256 multihash. `digest` is the 32-byte SHA-256 of the block."""

    version: int
    codec: int
    digest: bytes

    def __post_init__(self) -> None:
        if self.version not in (0, 1):
            raise InvalidCid(f"unsupported CID version {self.version}")
        if self.version == 0 and self.codec != DAG_PB:
            raise InvalidCid("CIDv0 is always dag-pb")
        if len(self.digest) != 32:
            raise InvalidCid("a sha2-256 digest is 32 bytes")

    # ------------------------------------------------------------ construction

    @classmethod
    def for_block(cls, codec: int, block: bytes, version: int = 1) -> CID:
        return cls(version, codec, hashlib.sha256(block).digest())

    @classmethod
    def parse(cls, value: str | bytes | CID) -> CID:
        """Parse a CID string (v0 or v1, base32/base58btc) or its binary form."""
        if isinstance(value, CID):
            return value
        if isinstance(value, bytes | bytearray):
            return cls.from_bytes(bytes(value))
        if not isinstance(value, str) or not value:
            raise InvalidCid(f"not a CID: {value!r}")
        text = value.strip()
        if text.startswith("/ipfs/"):
            text = text[len("/ipfs/") :].split("/", 1)[0]
        if not text:
            raise InvalidCid(f"not a CID: {value!r}")
        if len(text) == 46 and text.startswith("Qm"):
            raw = b58decode(text)
            if raw[:2] != bytes([SHA2_256, 32]):
                raise InvalidCid(f"not a CID: {value!r}")
            return cls(0, DAG_PB, raw[2:])
        prefix, body = text[0], text[1:]
        try:
            if prefix == "b":
                padded = body.upper() + "=" * (-len(body) % 8)
                raw = base64.b32decode(padded)
            elif prefix == "z":
                raw = b58decode(body)
            else:
                raise InvalidCid(f"not a CID (unsupported multibase {prefix!r}): {value!r}")
        except (ValueError, binascii.Error) as exc:
            raise InvalidCid(f"not a CID: {value!r}") from exc
        return cls.from_bytes(raw, original=value)

    @classmethod
    def from_bytes(cls, raw: bytes, original: object = None) -> CID:
        # The common case (CIDv1, one-byte codec, sha2-256) without varint decoding: snapshots and
        # replays parse thousands of these.
        if len(raw) == 36 and raw[0] == 1 and raw[2:4] == _SHA256_PREFIX and raw[1] in _CODECS:
            return cls(1, raw[1], raw[4:])
        shown = original if original is not None else "0x" + raw.hex()
        if len(raw) == 34 and raw[:2] == _SHA256_PREFIX:
            return cls(0, DAG_PB, raw[2:])
        version, offset = decode_varint(raw)
        if version != 1:
            raise InvalidCid(f"not a CID (version {version}): {shown}")
        codec, offset = decode_varint(raw, offset)
        if codec not in _CODECS:
            raise InvalidCid(f"unsupported codec 0x{codec:x} in CID {shown}")
        hash_code, offset = decode_varint(raw, offset)
        length, offset = decode_varint(raw, offset)
        if hash_code != SHA2_256 or length != 32 or len(raw) != offset + 32:
            raise InvalidCid(f"CID {shown} is not a sha2-256 CID")
        return cls(1, codec, raw[offset:])

    # ------------------------------------------------------------ output

    @property
    def multihash(self) -> bytes:
        return bytes([SHA2_256, 32]) + self.digest

    def to_bytes(self) -> bytes:
        if self.version == 0:
            return self.multihash
        return _v1_prefix(self.codec) + self.digest

    def encode(self, base: str = "base32") -> str:
        if self.version == 0:
            return b58encode(self.multihash)
        raw = self.to_bytes()
        if base == "base58btc":
            return "z" + b58encode(raw)
        return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")

    def to_v1(self) -> CID:
        return CID(1, self.codec, self.digest)

    @property
    def codec_name(self) -> str:
        return _CODECS[self.codec]

    def matches(self, block: bytes) -> bool:
        return hashlib.sha256(block).digest() == self.digest

    def __str__(self) -> str:
        return self.encode()


# ------------------------------------------------------------------ which CIDs each link may be

RECORD_LINK = frozenset({DAG_CBOR})
"""A record, a manifest, a snapshot manifest, a bundle's proof block: CIDv1 dag-cbor, nothing else."""
CONTENT_LINK = frozenset({RAW, DAG_PB})
"""File content as UnixFS makes it: a raw leaf (small files) or a dag-pb node, CIDv1."""
DIRECTORY_LINK = frozenset({DAG_PB})
"""A UnixFS directory (or HAMT shard): dag-pb, CIDv1."""


def link_problem(cid: CID, allowed: frozenset[int], what: str) -> str | None:
    """Why `cid` cannot be the link `what` (None when it can): only CIDv1 with an allowed codec.

    Comparing digests alone is not enough: a raw-codec CIDv1 or a CIDv0 can
    carry a record's digest, and other IPLD tools would then read opaque bytes
    or fail to pin. Every link a provanchor format defines names exactly one
    kind of block.
    """
    wanted = " or ".join(_CODECS[c] for c in sorted(allowed))
    if cid.version != 1:
        return f"{what} is a CIDv0 ({cid.encode()}): it must be a CIDv1 {wanted} CID"
    if cid.codec not in allowed:
        return f"{what} is a {_CODECS[cid.codec]} CID ({cid.encode()}): it must be a CIDv1 {wanted} CID"
    return None

