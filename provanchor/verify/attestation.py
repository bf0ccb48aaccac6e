"""`provanchor verify attestation FILE`: an in-toto statement in a DSSE envelope, held against the chain.

Each check is named so that a failure says which claim broke:

- **payload type**: the envelope carries an in-toto statement
  (``application/vnd.in-toto+json``); a signature over another type proves
  nothing about a statement, even if it verifies.
- **envelope signature**: a signature over DSSE's PAE recovers the key its
  ``keyid`` names.
- **statement**: the payload is an in-toto Statement v1 naming its anchored
  record (``runDetails.byproducts``, ``provanchor record``).
- every check of that record against its agent's anchored log (found by CID,
  EIP-712 signature, agent active at the anchoring block, inclusion...).
- **signer**: the envelope's signer is the agent that recorded and anchored
  the record (so it was authorised when the record was anchored), and it has
  not been revoked since: a revoked key can still sign, so nothing it signs
  after the fact is taken on trust.
- **subjects**: every subject's sha256 equals what the anchored record says
  of that artifact (a run record's outputs; a model record's parameters
  file), and every subject is one the record names.
"""

from __future__ import annotations

from provanchor.errors import BadAttestation, BlockMismatch, BlockNotFound, RecordError
from provanchor.formats.cid import CID, DAG_CBOR
from provanchor.formats.dsse import Envelope, recover_keyid
from provanchor.formats.intoto import PAYLOAD_TYPE, PREDICATE_TYPE, RECORD_BYPRODUCT, Statement, parse_statement
from provanchor.records import Op, Record, decode_record
from provanchor.verify.api import VerifyContext, check_anchored_record
from provanchor.verify.report import Report

__all__ = [
    "CHECK_ENVELOPE_SIGNATURE",
    "CHECK_PAYLOAD_TYPE",
    "CHECK_SIGNER",
    "CHECK_STATEMENT",
    "CHECK_SUBJECTS",
    "expected_subjects",
    "verify_attestation",
]

CHECK_PAYLOAD_TYPE = "payload type"
CHECK_ENVELOPE_SIGNATURE = "envelope signature"
CHECK_STATEMENT = "statement"
CHECK_SIGNER = "signer"
CHECK_SUBJECTS = "subjects"


def verify_attestation(ctx: VerifyContext, data: bytes, name: str = "attestation") -> Report:
    envelope = Envelope.from_bytes(data)
    report = Report(name)
    if envelope.payload_type != PAYLOAD_TYPE:
        report.failed(CHECK_PAYLOAD_TYPE, f"payloadType is {envelope.payload_type!r:.80}, not {PAYLOAD_TYPE}")
    else:
        report.passed(CHECK_PAYLOAD_TYPE, PAYLOAD_TYPE)
    signer = _signer(report, envelope)
    try:
        statement = parse_statement(envelope.payload)
    except BadAttestation as exc:
        report.failed(CHECK_STATEMENT, str(exc))
        return report
    record = _record(ctx, report, statement)
    if record is None:
        return report
    check_anchored_record(ctx, report, record, content=False)
    _check_signer(ctx, report, signer, record, statement)
    _check_subjects(report, statement, record)
    return report


def _signer(report: Report, envelope: Envelope) -> str | None:
    if not envelope.signatures:
        report.failed(CHECK_ENVELOPE_SIGNATURE, "the envelope carries no signature")
        return None
    problems = []
    for signature in envelope.signatures:
        try:
            recovered = recover_keyid(envelope, signature)
        except BadAttestation as exc:
            problems.append(str(exc))
            continue
        if signature.keyid.lower() not in ("", recovered):
            problems.append(f"the signature recovers {recovered}, not its keyid {signature.keyid:.60}")
            continue
        report.passed(CHECK_ENVELOPE_SIGNATURE, f"ECDSA secp256k1 over the DSSE PAE, by {recovered}")
        return recovered
    report.failed(CHECK_ENVELOPE_SIGNATURE, "; ".join(problems))
    return None


def _record(ctx: VerifyContext, report: Report, statement: Statement) -> Record | None:
    uri = statement.record_uri
    if uri is None or not uri.startswith("ipfs://"):
        report.failed(CHECK_STATEMENT, f"the statement names no anchored record (byproduct {RECORD_BYPRODUCT!r})")
        return None
    try:
        cid = CID.parse(uri.removeprefix("ipfs://"))
    except Exception:
        report.failed(CHECK_STATEMENT, f"the record URI {uri:.100} holds no CID")
        return None
    if cid.codec != DAG_CBOR:
        report.failed(CHECK_STATEMENT, f"{uri:.100} names raw content, not a record")
        return None
    if statement.predicate_type != PREDICATE_TYPE:
        report.failed(CHECK_STATEMENT, f"predicateType is {statement.predicate_type:.80}, not {PREDICATE_TYPE}")
        return None
    report.passed(CHECK_STATEMENT, f"in-toto Statement v1, SLSA provenance v1, naming record {cid}")
    report.facts["record_id"] = cid.encode()
    try:
        record = decode_record(ctx.source.get(cid))
    except (BlockNotFound, BlockMismatch) as exc:
        report.failed("record found", f"{ctx.source.description} cannot produce {cid}: {exc}")
        return None
    except RecordError as exc:
        report.failed("record format", f"{cid} is not a valid record: {exc}")
        return None
    return record


def _check_signer(
    ctx: VerifyContext, report: Report, signer: str | None, record: Record, statement: Statement
) -> None:
    if signer is None:
        report.failed(CHECK_SIGNER, "no usable envelope signature, so no signer")
        return
    if signer != record.agent:
        report.failed(CHECK_SIGNER, f"signed by {signer}, but the record was signed and anchored by {record.agent}")
        return
    info = ctx.chain.ledger.agent_info(signer)
    if not info.active:
        when = f"in block {info.revoked_block}" if info.revoked_at else "(never approved)"
        report.failed(CHECK_SIGNER, f"the signer {signer} is revoked {when}: its signatures are no longer trusted")
        return
    builder = statement.builder_id
    if builder is not None and builder.lower() != f"urn:provanchor:agent:{signer}":
        report.failed(CHECK_SIGNER, f"runDetails.builder.id {builder:.80} does not name the signer {signer}")
        return
    report.passed(CHECK_SIGNER, f"{signer} recorded and anchored the record, and is an active agent now")


def expected_subjects(record: Record) -> dict[str, bytes]:
    """What an anchored record says of its artifacts: location -> sha256."""
    if record.op is Op.RUN:
        outputs = (record.payload or {}).get("outputs")
        found = {}
        for entry in outputs if isinstance(outputs, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("location"), str):
                digest = entry.get("sha256")
                if isinstance(digest, bytes):
                    found[str(entry["location"])] = digest
        return found
    if record.op is Op.MODEL and record.after is not None and isinstance(record.location, str):
        return {record.location: record.after.sha256}
    return {}


def _check_subjects(report: Report, statement: Statement, record: Record) -> None:
    expected = expected_subjects(record)
    if not expected:
        report.failed(CHECK_SUBJECTS, f"a {record.op.value} record names no artifacts an attestation could cover")
        return
    problems = []
    for subject in statement.subjects:
        digest = expected.get(subject.name)
        if digest is None:
            problems.append(f"{subject.name:.100} is not among the record's artifacts")
        elif digest.hex() != subject.sha256:
            anchored = digest.hex()[:16]
            problems.append(f"{subject.name:.100}: sha256 {subject.sha256[:16]}... is not the anchored {anchored}...")
    if problems:
        report.failed(CHECK_SUBJECTS, "; ".join(problems))
    else:
        report.passed(CHECK_SUBJECTS, f"{len(statement.subjects)} subject(s), each the anchored sha256 of its artifact")
