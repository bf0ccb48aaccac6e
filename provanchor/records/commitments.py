"""Salted commitments: hide a field's value in a public record, reveal it later on demand.

Records are public (IPFS, anchored on chain) but who did what, on which host,
to which path can be sensitive. The operator may therefore put, in place of the
``user``, ``uid``, ``host``, ``location``, ``from`` or ``code`` value::

    {"commitment": SHA-256(salt || canonical DAG-CBOR of the plain value)}

keeping the 32-byte random ``salt`` and the plain value off-ledger. Showing both
later proves what the record said; without the salt, guessing a low-entropy
value (a user name) is infeasible. The commitment is made *before* the record is
hashed and signed: the signed record is the committed one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from provanchor.errors import RecordError
from provanchor.formats.dagcbor import DagCborError, encode

__all__ = ["SALT_SIZE", "Commitment", "commit", "is_commitment_wire", "new_salt", "open_commitment"]

SALT_SIZE = 32


@runtime_checkable
class _Wire(Protocol):
    def to_wire(self) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True)
class Commitment:
    """A committed field value; on the wire, the map ``{"commitment": digest}``."""

    digest: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.digest, bytes) or len(self.digest) != 32:
            raise RecordError(f"a commitment is 32 bytes, got {self.digest!r:.80}", field="commitment")

    def to_wire(self) -> dict[str, object]:
        return {"commitment": self.digest}

    @classmethod
    def from_wire(cls, wire: object) -> Commitment:
        if not is_commitment_wire(wire):
            raise RecordError(f"not a commitment map: {wire!r:.80}", field="commitment")
        return cls(wire["commitment"])  # type: ignore[index]

    @classmethod
    def of(cls, value: object, salt: bytes) -> Commitment:
        """Commit to a plain value (a wire value, or an object with ``to_wire()`` such as CodeIdentity)."""
        return cls(_digest(value, salt))


def is_commitment_wire(wire: object) -> bool:
    """True for a map whose only key is "commitment" (how decoders tell it from a plain value)."""
    return isinstance(wire, Mapping) and len(wire) == 1 and "commitment" in wire


def new_salt() -> bytes:
    """32 fresh random bytes: one salt per committed value, never reused."""
    return os.urandom(SALT_SIZE)


def _digest(value: object, salt: bytes) -> bytes:
    if not isinstance(salt, bytes) or len(salt) != SALT_SIZE:
        raise RecordError(f"a commitment salt is {SALT_SIZE} random bytes", field="salt")
    if isinstance(value, _Wire):
        value = value.to_wire()
    try:
        return hashlib.sha256(salt + encode(value)).digest()
    except DagCborError as exc:
        raise RecordError(f"cannot commit to this value: {exc}", field="commitment") from exc


def commit(value: object, salt: bytes) -> dict[str, bytes]:
    """The wire map ``{"commitment": sha256(salt || dag-cbor(value))}`` hiding ``value``."""
    return {"commitment": _digest(value, salt)}


def open_commitment(commitment: Commitment | Mapping[str, object], value: object, salt: bytes) -> bool:
    """True iff ``value`` with ``salt`` is what ``commitment`` hides (False for malformed input)."""
    if isinstance(commitment, Commitment):
        digest: object = commitment.digest
    elif is_commitment_wire(commitment):
        digest = commitment["commitment"]
    else:
        return False
    if not isinstance(digest, bytes) or len(digest) != 32:
        return False
    if not isinstance(salt, bytes) or len(salt) != SALT_SIZE:
        return False
    try:
        expected = _digest(value, salt)
    except RecordError:
        return False
    return hmac.compare_digest(digest, expected)
