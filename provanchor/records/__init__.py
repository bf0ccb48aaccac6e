"""Provenance records: the model, its canonical encoding, code identity, signatures, commitments.

See docs/record-format.md for the byte-level specification auditors implement.
"""

from __future__ import annotations

from provanchor.records.codehash import (
    CodeFile,
    CodeIdentity,
    code_hash,
    identify_command,
    resolve_module,
    sha256_file,
)
from provanchor.records.commitments import Commitment, commit, new_salt, open_commitment
from provanchor.records.model import (
    COMMITTABLE_FIELDS,
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
    WIRE_FIELDS,
    WIRE_FIELDS_V1,
    Capture,
    CaptureBackend,
    Change,
    ContentRef,
    Op,
    Record,
    decode_record,
    encode_record,
    file_location,
    parse_file_location,
    record_cid,
    record_hash,
    record_leaf_hash,
)
from provanchor.records.signing import (
    Eip712Domain,
    RecordSigner,
    recover_signer,
    sign_record_hash,
    signing_digest,
    verify_signature,
)

__all__ = [
    "COMMITTABLE_FIELDS",
    "SCHEMA_VERSION",
    "SCHEMA_VERSIONS",
    "WIRE_FIELDS",
    "WIRE_FIELDS_V1",
    "Capture",
    "CaptureBackend",
    "Change",
    "CodeFile",
    "CodeIdentity",
    "Commitment",
    "ContentRef",
    "Eip712Domain",
    "Op",
    "Record",
    "RecordSigner",
    "code_hash",
    "commit",
    "decode_record",
    "encode_record",
    "file_location",
    "identify_command",
    "new_salt",
    "open_commitment",
    "parse_file_location",
    "record_cid",
    "record_hash",
    "record_leaf_hash",
    "recover_signer",
    "resolve_module",
    "sha256_file",
    "sign_record_hash",
    "signing_digest",
    "verify_signature",
]
