"""in-toto Statements v1 with SLSA provenance v1 predicates, as provanchor writes and reads them.

A statement says "these artifacts (subjects, by digest) came out of this
build (predicate)". provanchor's attestations name, in
``runDetails.byproducts``, the anchored record that makes the claim (a
``provanchor run`` record or an ML model record) as ``ipfs://RECORD_CID``;
``provanchor verify attestation`` holds every subject against that record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from provanchor.errors import BadAttestation

__all__ = [
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "RECORD_BYPRODUCT",
    "STATEMENT_TYPE",
    "Statement",
    "Subject",
    "parse_statement",
    "statement_bytes",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
RECORD_BYPRODUCT = "provanchor record"
"""The name of the byproduct that names the anchored record behind the statement."""
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Subject:
    name: str
    sha256: str


@dataclass(frozen=True)
class Statement:
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]

    @property
    def record_uri(self) -> str | None:
        """The ``ipfs://CID`` of the anchored record the statement names, if it names one."""
        details = self.predicate.get("runDetails")
        byproducts = details.get("byproducts") if isinstance(details, dict) else None
        for entry in byproducts if isinstance(byproducts, list) else []:
            if isinstance(entry, dict) and entry.get("name") == RECORD_BYPRODUCT and isinstance(entry.get("uri"), str):
                return str(entry["uri"])
        return None

    @property
    def builder_id(self) -> str | None:
        details = self.predicate.get("runDetails")
        builder = details.get("builder") if isinstance(details, dict) else None
        value = builder.get("id") if isinstance(builder, dict) else None
        return value if isinstance(value, str) else None


def statement_bytes(statement: dict[str, Any]) -> bytes:
    """The payload bytes: compact JSON with sorted keys, so the same statement signs the same bytes."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_statement(payload: bytes) -> Statement:
    try:
        raw = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadAttestation("the envelope's payload is not a JSON in-toto statement") from None
    if not isinstance(raw, dict) or raw.get("_type") != STATEMENT_TYPE:
        raise BadAttestation(f"the payload is not an in-toto Statement v1 (_type must be {STATEMENT_TYPE})")
    entries = raw.get("subject")
    if not isinstance(entries, list) or not entries:
        raise BadAttestation("the statement has no subjects")
    subjects = []
    for entry in entries:
        digest = entry.get("digest") if isinstance(entry, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        sha256 = digest.get("sha256") if isinstance(digest, dict) else None
        if not isinstance(name, str) or not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise BadAttestation(f"a subject needs a name and a sha256 digest (64 hex digits): {entry!r:.80}")
        subjects.append(Subject(name, sha256))
    predicate_type, predicate = raw.get("predicateType"), raw.get("predicate")
    if not isinstance(predicate_type, str) or not isinstance(predicate, dict):
        raise BadAttestation("the statement needs a predicateType and a predicate object")
    return Statement(tuple(subjects), predicate_type, predicate)
