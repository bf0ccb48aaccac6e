"""DSSE envelopes (Dead Simple Signing Envelope, v1) signed with an agent's secp256k1 key.

The signature covers DSSE's pre-authentication encoding (PAE) of the payload
type and the payload bytes, never the JSON around them::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with lengths as ASCII decimal byte counts. provanchor signs ECDSA over
secp256k1 on SHA-256(PAE) and encodes the signature as 65 bytes ``r || s || v``
(``v`` the recovery id, 0 or 1; ``s`` in the lower half of the order). The
``keyid`` is the agent's Ethereum address (lower-case hex): with ``v`` a
verifier recovers the public key from the signature alone and compares its
address with ``keyid``, so it needs no key distribution beyond the chain's
list of authorised agents. Any ECDSA library can check it (tests do so with
coincurve, independently of this module).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass

from provanchor.errors import BadAttestation

__all__ = ["DsseSignature", "Envelope", "pae", "recover_keyid", "sign_envelope"]

_ADDRESS = re.compile(r"0x[0-9a-f]{40}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class DsseSignature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[DsseSignature, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")} for s in self.signatures
            ],
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Parse an envelope strictly: every field present and of its type, base64 that decodes."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise BadAttestation("not a DSSE envelope: the file is not JSON") from None
        if not isinstance(raw, dict):
            raise BadAttestation("not a DSSE envelope: expected a JSON object")
        payload_type, payload, signatures = raw.get("payloadType"), raw.get("payload"), raw.get("signatures")
        if not isinstance(payload_type, str) or not isinstance(payload, str) or not isinstance(signatures, list):
            raise BadAttestation("not a DSSE envelope: payloadType, payload and signatures are required")
        parsed = []
        for entry in signatures:
            if not isinstance(entry, dict) or not isinstance(entry.get("sig"), str):
                raise BadAttestation("not a DSSE envelope: each signature needs a base64 'sig'")
            keyid = entry.get("keyid", "")
            parsed.append(DsseSignature(str(keyid), _b64(entry["sig"], "sig")))
        return cls(payload_type, _b64(payload, "payload"), tuple(parsed))


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # DSSE allows URL-safe base64 too
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise BadAttestation(f"not a DSSE envelope: {what} is not base64") from None


def sign_envelope(payload_type: str, payload: bytes, private_key: bytes) -> Envelope:
    """One signature by `private_key` (32 bytes), its address as keyid."""
    from eth_keys import keys  # type: ignore[attr-defined]

    key = keys.PrivateKey(private_key)
    signature = key.sign_msg_hash(hashlib.sha256(pae(payload_type, payload)).digest())
    keyid = key.public_key.to_checksum_address().lower()
    return Envelope(payload_type, payload, (DsseSignature(keyid, signature.to_bytes()),))


def recover_keyid(envelope: Envelope, signature: DsseSignature) -> str:
    """The address whose key made `signature` over the envelope's PAE; BadAttestation if unusable."""
    from eth_keys import keys  # type: ignore[attr-defined]
    from eth_keys.exceptions import BadSignature, ValidationError  # type: ignore[attr-defined]

    if len(signature.sig) != 65 or signature.sig[64] not in (0, 1):
        raise BadAttestation("the signature is not 65 bytes r || s || v with v 0 or 1")
    digest = hashlib.sha256(pae(envelope.payload_type, envelope.payload)).digest()
    try:
        public = keys.Signature(signature.sig).recover_public_key_from_msg_hash(digest)
    except (BadSignature, ValidationError) as exc:
        raise BadAttestation(f"the signature recovers no key: {exc}") from None
    return str(public.to_checksum_address()).lower()


def is_address(text: str) -> bool:
    return bool(_ADDRESS.fullmatch(text))
