"""The record and manifest checks every verifier shares: the indexer, `verify ...` and `audit verify`.

One implementation, so the index never accepts what `verify` would refuse
(and the reverse). Each function answers with the reason something is wrong,
or None: callers decide whether that becomes an index problem or a failed
check in a report.
"""

from __future__ import annotations

import gc
import hashlib
from dataclasses import dataclass

from provanchor.errors import RecordError, SignatureError
from provanchor.formats import merkle
from provanchor.formats.manifest import Manifest
from provanchor.records import Eip712Domain, Record, decode_record, recover_signer
from provanchor.records.signing import _recover

__all__ = [
    "CHECK_ACTIVE",
    "CHECK_BLOCKS",
    "CHECK_CONSISTENCY",
    "CHECK_CONTENT",
    "CHECK_CONTRACT_INCLUSION",
    "CHECK_FORMAT",
    "CHECK_INCLUSION",
    "CHECK_MANIFEST",
    "CHECK_RECORD_FOUND",
    "CHECK_ROOTS",
    "CHECK_SEQ",
    "CHECK_SIGNATURE",
    "RecordProblem",
    "check_record_bytes",
    "decode_and_check",
    "manifest_mismatch",
    "record_problem",
    "split_proof",
]

# Check names, stable: they are part of the --json output.
CHECK_BLOCKS = "blocks match CIDs"
CHECK_RECORD_FOUND = "record found"
CHECK_FORMAT = "record format"
CHECK_SIGNATURE = "signature"
CHECK_ACTIVE = "agent active at anchoring block"
CHECK_MANIFEST = "manifest matches checkpoint"
CHECK_ROOTS = "checkpoint roots rebuilt"
CHECK_INCLUSION = "inclusion proof"
CHECK_CONTRACT_INCLUSION = "inclusion proof (contract verifyInclusion)"
CHECK_CONSISTENCY = "checkpoint consistency"
CHECK_SEQ = "seq and prev links"
CHECK_CONTENT = "content matches hashes"


@dataclass(frozen=True)
class RecordProblem:
    """Why the record at one log position is not acceptable, and which named check it fails."""

    position: int
    check: str
    reason: str


def manifest_mismatch(
    manifest: Manifest,
    agent: str,
    index: int,
    size: int,
    root: bytes,
    previous_size: int,
    chain_id: int,
    contract: str,
) -> str | None:
    """How a manifest contradicts the checkpoint the chain anchored with it, or None.

    The chain is the trust base: a manifest is only a description of what a
    checkpoint adds, and it must describe exactly that checkpoint of this agent
    in this deployment, continuing where the previous checkpoint ended.
    """
    m = manifest
    checks = [
        (m.agent.lower() == agent.lower(), "names another agent"),
        (m.checkpoint == index, f"names checkpoint {m.checkpoint}, not {index}"),
        (m.size == size, f"gives size {m.size}, the chain {size}"),
        (m.root == root, "gives another root than the chain"),
        (m.start == previous_size, f"starts at {m.start}, not at {previous_size}"),
        (m.chain_id == chain_id and m.contract.lower() == contract.lower(), "belongs to another ledger deployment"),
    ]
    for ok, message in checks:
        if not ok:
            return message
    return None


def record_problem(
    record: Record, agent: str, seq: int, prev: bytes | None, signature: bytes, domain: Eip712Domain
) -> str | None:
    """Why a decoded record cannot be leaf `seq` of `agent`'s log after `prev`, or None."""
    found = _record_problem(record, agent, seq, prev, signature, domain)
    return None if found is None else found[1]


def _record_problem(
    record: Record, agent: str, seq: int, prev: bytes | None, signature: bytes, domain: Eip712Domain
) -> tuple[str, str] | None:
    agent = agent.lower()
    if record.agent != agent:
        return CHECK_SEQ, f"record belongs to agent {record.agent}, not {agent}"
    if record.seq != seq:
        return CHECK_SEQ, f"record has seq {record.seq} where the log has position {seq} (a gap, repeat or swap)"
    if record.prev != prev:
        return CHECK_SEQ, "record's prev does not link to the previous record"
    try:
        signer = recover_signer(domain, record.hash, signature)
    except SignatureError as exc:
        return CHECK_SIGNATURE, f"signature unusable: {exc}"
    if signer.lower() != agent:
        return CHECK_SIGNATURE, f"signature recovers to {signer}, not to the agent"
    return None


def decode_and_check(
    items: list[tuple[int, bytes | str, bytes, bytes | None]], agent: str, chain_id: int, contract: str
) -> list[tuple[int, Record | None, str | None]]:
    """(seq, Record if acceptable, reason if not) for (seq, bytes or why none, signature, expected prev).

    The bytes must already be verified against their CIDs. A plain function of
    picklable arguments, so the indexer can run it in worker processes: strict
    decoding and signature recovery are nearly all of a sync's CPU.
    """
    domain = Eip712Domain(chain_id, contract)
    enabled = gc.isenabled()
    gc.disable()  # records are acyclic
    try:
        out: list[tuple[int, Record | None, str | None]] = []
        for seq, data, signature, prev in items:
            if isinstance(data, str):
                out.append((seq, None, f"record unusable: {data}"))
                continue
            try:
                record = decode_record(data)
            except RecordError as exc:
                out.append((seq, None, f"record unusable: {exc}"))
                continue
            reason = record_problem(record, agent, seq, prev, signature, domain)
            out.append((seq, record if reason is None else None, reason))
        return out
    finally:
        if enabled:
            gc.enable()


def split_proof(blob: bytes) -> list[bytes]:
    """A proof stored as its hashes concatenated, as a list (a ragged tail makes it fail to verify)."""
    return [blob[i : i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)]


def check_record_bytes(
    items: list[tuple[int, bytes, bytes, bytes | None]],
    agent: str,
    chain_id: int,
    contract: str,
    proofs: tuple[int, bytes, list[bytes]] | None = None,
) -> list[RecordProblem]:
    """Check many (position, canonical bytes, signature, expected prev) of one agent's log.

    The bytes must already be verified against the CIDs the anchored manifest
    lists (the caller's block source does that). A plain function of picklable
    arguments, so large logs can be checked in worker processes. With
    ``proofs`` = (tree size, root, one inclusion proof per item, its hashes
    concatenated), each record's
    leaf is also proven against that root. The signer is
    compared by address bytes, skipping the checksum formatting of
    `recover_signer`: at 100,000 records that formatting alone costs a second.
    """
    enabled = gc.isenabled()
    gc.disable()  # records are acyclic: collecting while decoding thousands of them only costs time
    try:
        return _check_record_bytes(items, agent, chain_id, contract, proofs)
    finally:
        if enabled:
            gc.enable()


def _check_record_bytes(
    items: list[tuple[int, bytes, bytes, bytes | None]],
    agent: str,
    chain_id: int,
    contract: str,
    proofs: tuple[int, bytes, list[bytes]] | None,
) -> list[RecordProblem]:
    domain = Eip712Domain(chain_id, contract)
    wanted = bytes.fromhex(agent.lower()[2:])
    problems: list[RecordProblem] = []
    if proofs is not None:
        size, root, paths = proofs
        for (position, data, _, _), path in zip(items, paths, strict=True):
            leaf = merkle.leaf_hash(hashlib.sha256(data).digest())
            if not merkle.verify_inclusion(leaf, position, size, split_proof(path), root):
                reason = f"its proof does not verify against the root of the tree of size {size}"
                problems.append(RecordProblem(position, CHECK_INCLUSION, reason))
    for position, data, signature, prev in items:
        try:
            record = decode_record(data)
        except RecordError as exc:
            problems.append(RecordProblem(position, CHECK_FORMAT, f"record unusable: {exc}"))
            continue
        if record.agent != agent.lower() or record.seq != position or record.prev != prev:
            found = _record_problem(record, agent, position, prev, signature, domain)
            if found is not None:
                problems.append(RecordProblem(position, *found))
                continue
        try:
            signer = _recover(domain, record.hash, signature)
        except SignatureError as exc:
            problems.append(RecordProblem(position, CHECK_SIGNATURE, f"signature unusable: {exc}"))
            continue
        if signer != wanted:
            reason = f"signature recovers to 0x{signer.hex()}, not to the agent"
            problems.append(RecordProblem(position, CHECK_SIGNATURE, reason))
    return problems
