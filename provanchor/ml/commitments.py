"""Commitments to inference inputs and outputs: prove later what a model saw and said, without publishing it.

An inference receipt is public (IPFS, anchored), but the prompt or image a
model was given, and its answer, usually are not. The receipt therefore
carries, for the input and the output each, a commitment map::

    {"mode": "sha256" | "salted" | "hmac", "digest": bytes32, "key_id": bytes8 | null, "data": bytes | null}

* ``sha256``: ``SHA-256(data)``. Anyone holding the data can confirm it; anyone
  can also confirm a *guess*, so use it only for high-entropy data.
* ``salted``: the record format's own field commitment
  (docs/record-format.md section 7): ``SHA-256(salt || DAG-CBOR(data))`` with a
  fresh 32-byte salt per value, returned to the caller and never stored. Opening
  one value discloses only that value.
* ``hmac``: ``HMAC-SHA256(key, data)`` with a key the operator holds. One key
  covers every receipt (no per-receipt secret to keep), and only the key holder
  can confirm or test guesses. ``key_id`` (the first 8 bytes of
  ``SHA-256("provanchor.ml.hmac-key-id" || key)``) says which key, so a
  verifier with the wrong key is told so rather than "data differs".

``data`` holds the raw bytes only when the caller asked to store them.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from provanchor.errors import UnsupportedCommitment
from provanchor.records.commitments import Commitment, new_salt, open_commitment

__all__ = [
    "KEY_ID_SIZE",
    "MAX_STORED_BYTES",
    "CommitMode",
    "DataCommitment",
    "commit_data",
    "hmac_key_id",
    "parse_mode",
]

KEY_ID_SIZE = 8
MAX_STORED_BYTES = 64 * 1024
"""Raw data kept in a receipt when asked: receipts are records, and records should stay small."""

_KEY_ID_DOMAIN = b"provanchor.ml.hmac-key-id"
_MIN_KEY = 16


class CommitMode(StrEnum):
    SHA256 = "sha256"
    SALTED = "salted"
    HMAC = "hmac"


def parse_mode(mode: object) -> CommitMode:
    """A commitment mode from its name; anything else is an UnsupportedCommitment naming the choices."""
    try:
        return CommitMode(mode if isinstance(mode, str) else "")
    except ValueError:
        choices = ", ".join(m.value for m in CommitMode)
        raise UnsupportedCommitment(f"unsupported commitment mode {mode!r:.40}: use one of {choices}") from None


def hmac_key_id(key: bytes) -> bytes:
    """Which key an HMAC commitment used, without revealing the key."""
    return hashlib.sha256(_KEY_ID_DOMAIN + key).digest()[:KEY_ID_SIZE]


@dataclass(frozen=True)
class DataCommitment:
    """One committed value as stored in a receipt; ``salt`` never leaves the caller."""

    mode: CommitMode
    digest: bytes
    key_id: bytes | None = None
    data: bytes | None = None
    salt: bytes | None = None

    def to_wire(self) -> dict[str, object]:
        return {"mode": self.mode.value, "digest": self.digest, "key_id": self.key_id, "data": self.data}

    @classmethod
    def from_wire(cls, wire: object) -> DataCommitment:
        """Parse a receipt's commitment map strictly (a malformed one is UnsupportedCommitment)."""
        if not isinstance(wire, dict) or set(wire) != {"mode", "digest", "key_id", "data"}:
            raise UnsupportedCommitment(f"not a commitment map: {wire!r:.80}")
        mode = parse_mode(wire["mode"])
        digest, key_id, data = wire["digest"], wire["key_id"], wire["data"]
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise UnsupportedCommitment("a commitment digest is 32 bytes")
        if (mode is CommitMode.HMAC) != isinstance(key_id, bytes) or (
            isinstance(key_id, bytes) and len(key_id) != KEY_ID_SIZE
        ):
            raise UnsupportedCommitment(f"key_id must be {KEY_ID_SIZE} bytes for hmac and null otherwise")
        if data is not None and not isinstance(data, bytes):
            raise UnsupportedCommitment("stored data must be bytes or null")
        return cls(mode, digest, key_id, data)

    def verify(self, data: bytes, *, key: bytes | None = None, salt: bytes | None = None) -> bool:
        """True iff ``data`` is what this commitment hides (HMAC needs the right key, salted the salt).

        Never raises on wrong secrets: a verifier gets a yes or a no.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            return False
        data = bytes(data)
        if self.mode is CommitMode.SHA256:
            return hmac.compare_digest(self.digest, hashlib.sha256(data).digest())
        if self.mode is CommitMode.SALTED:
            salt = salt if salt is not None else self.salt
            return salt is not None and open_commitment(Commitment(self.digest), data, salt)
        if key is None or self.key_id is None or not hmac.compare_digest(self.key_id, hmac_key_id(key)):
            return False
        return hmac.compare_digest(self.digest, hmac.digest(key, data, "sha256"))


def commit_data(
    data: bytes, mode: CommitMode | str, *, key: bytes | None = None, store: bool = False
) -> DataCommitment:
    """Commit to ``data``; with ``store`` the raw bytes ride along in the receipt (up to 64 KiB)."""
    chosen = parse_mode(mode)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UnsupportedCommitment(f"inference input and output must be bytes, got {type(data).__name__}")
    raw = bytes(data)
    if store and len(raw) > MAX_STORED_BYTES:
        raise UnsupportedCommitment(f"cannot store {len(raw)} bytes in a receipt (at most {MAX_STORED_BYTES})")
    kept = raw if store else None
    if chosen is CommitMode.SHA256:
        return DataCommitment(chosen, hashlib.sha256(raw).digest(), data=kept)
    if chosen is CommitMode.SALTED:
        salt = new_salt()
        return DataCommitment(chosen, Commitment.of(raw, salt).digest, data=kept, salt=salt)
    if key is None or len(key) < _MIN_KEY:
        raise UnsupportedCommitment(f"hmac commitments need an operator key of at least {_MIN_KEY} bytes")
    return DataCommitment(chosen, hmac.digest(key, raw, "sha256"), key_id=hmac_key_id(key), data=kept)
