"""Verification as a library: every claim checked against the chain, with untrusted blocks.

The trust base is a `VerifyContext`: a chain RPC URL and the ledger
contract's address, plus where blocks come from (an IPFS API, a gateway, or
an audit bundle); an index, if given, is only a hint. Each ``verify_*``
function answers with a `Report` of named checks (see `provanchor.checks.log`
for the names); a verification that cannot complete adds a failed check, so
it never reads as a pass. Bad input (an unparsable id, a contract without
code, an RPC that does not answer) raises a `ProvanchorError` instead.

Other modules (``provanchor ml verify``) build on `VerifyContext` and
`verify_record`; keep their names and signatures stable.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from provanchor.chain.client import checksum
from provanchor.checks.log import (
    CHECK_ACTIVE,
    CHECK_BLOCKS,
    CHECK_CONSISTENCY,
    CHECK_CONTENT,
    CHECK_CONTRACT_INCLUSION,
    CHECK_FORMAT,
    CHECK_INCLUSION,
    CHECK_MANIFEST,
    CHECK_RECORD_FOUND,
    CHECK_ROOTS,
    CHECK_SEQ,
    CHECK_SIGNATURE,
    RecordProblem,
)
from provanchor.errors import (
    BlockMismatch,
    BlockNotFound,
    ConfigError,
    InvalidCid,
    RecordError,
    SignatureError,
    UsageError,
)
from provanchor.formats import merkle
from provanchor.formats.cid import CID, DAG_CBOR
from provanchor.formats.unixfs import UnixFSError
from provanchor.index.store import IndexStore
from provanchor.ipfs.sources import BlockSource, GatewaySource, IpfsSource, content_bytes
from provanchor.progress import ProgressFn
from provanchor.records import ContentRef, Record, decode_record, recover_signer
from provanchor.verify.log import AgentLog, Anchor, Chain, Tally, tally_problems
from provanchor.verify.report import Report

__all__ = [
    "VerifyContext",
    "parse_record_id",
    "verify_agent",
    "verify_record",
]


class VerifyContext:
    """What a verification trusts (chain + contract) and where it reads blocks (never trusted).

    Give exactly one of ``ipfs_api`` (an IPFS RPC API address), ``gateway``
    (a trustless HTTP gateway URL) or ``source`` (any `BlockSource`, e.g. an
    audit bundle's blocks). ``index_path`` names a provanchor index used only
    to find things faster: what it says is verified like everything else.
    Connecting checks the chain answers and the address holds a ledger.
    """

    def __init__(
        self,
        rpc_url: str,
        contract: str,
        ipfs_api: str | None = None,
        gateway: str | None = None,
        index_path: str | os.PathLike[str] | None = None,
        *,
        source: BlockSource | None = None,
        workers: int | None = None,
        fetch_timeout: float = 5.0,
    ) -> None:
        given = [x for x in (ipfs_api, gateway, source) if x is not None]
        if len(given) != 1:
            raise UsageError("give exactly one block source: --ipfs API or --gateway URL")
        self.rpc_url = rpc_url
        self.chain = Chain(rpc_url, contract)
        self.contract = self.chain.contract
        if source is not None:
            self.source: BlockSource = source
        elif ipfs_api is not None:
            self.source = IpfsSource(ipfs_api, block_timeout=fetch_timeout)
        else:
            assert gateway is not None
            self.source = GatewaySource(gateway, timeout=fetch_timeout)
        self.workers = workers
        self.index: IndexStore | None = None
        if index_path is not None:
            self.index = _open_hint(Path(index_path), self.chain)
        self._logs: dict[str, AgentLog] = {}
        self.hint_served = 0
        self.hint_refused = 0

    @property
    def chain_id(self) -> int:
        return self.chain.chain_id

    def log(self, agent: str) -> AgentLog:
        """The agent's log (walked lazily, shared by every verification in this context)."""
        key = checksum(agent).lower()
        found = self._logs.get(key)
        if found is None:
            found = self._logs[key] = AgentLog(self.chain, self.source, key)
        return found

    def record_blocks(
        self, log: AgentLog, positions: Sequence[int]
    ) -> tuple[list[tuple[int, bytes]], list[tuple[int, str]]]:
        """Verified record bytes at log positions: from the index hint when it hashes right, else the source."""
        found: dict[int, bytes] = {}
        if self.index is not None and positions:
            for seq, data in _hint_rows(self.index, log.agent, min(positions), max(positions)):
                position = int(seq)
                if position < len(log.cids) and log.cids[position].matches(bytes(data)):
                    found[position] = bytes(data)
            self.hint_served += len(found)
        failures: list[tuple[int, str]] = []
        wanted = []
        for position in positions:
            if position in found:
                continue
            if position >= len(log.cids) or not log.known(position):
                failures.append((position, "no usable manifest lists it, so its CID is unknown"))
            else:
                wanted.append(position)
        if self.index is not None:
            self.hint_refused += len(wanted)
        fetched = self.source.get_many([log.cids[p] for p in wanted])
        for position, result in zip(wanted, fetched, strict=True):
            if isinstance(result, Exception):
                failures.append((position, str(result)))
            else:
                found[position] = result
        return sorted(found.items()), failures

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
        if self.index is not None:
            self.index.close()

    def __enter__(self) -> VerifyContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_hint(path: Path, chain: Chain) -> IndexStore:
    store = IndexStore.open(path)
    binding = store.binding()
    if binding is not None and binding != (chain.chain_id, chain.contract.lower()):
        store.close()
        raise ConfigError(f"index {path} follows another deployment (chain {binding[0]}, contract {binding[1]})")
    return store


def _hint_rows(store: IndexStore, agent: str, low: int, high: int) -> list[tuple[int, bytes]]:
    rows = store.read(
        "SELECT r.seq, b.canonical FROM records r JOIN record_bytes b ON b.id = r.id"
        " WHERE r.agent = ? AND r.seq BETWEEN ? AND ?",
        (agent, low, high),
    )
    return [(int(seq), bytes(data)) for seq, data in rows]


def parse_record_id(text: str) -> CID:
    """A record id: its CID (``bafyrei...``), or its record hash as 64 hex digits."""
    value = text.strip() if isinstance(text, str) else ""
    digits = value[2:] if value[:2].lower() == "0x" else value
    if len(digits) == 64:
        try:
            return CID(1, DAG_CBOR, bytes.fromhex(digits))
        except ValueError:
            pass
    try:
        cid = CID.parse(value)
    except (InvalidCid, ValueError, IndexError) as exc:
        raise UsageError(f"not a record id (a record CID or a 64-hex record hash): {text!r:.80}") from exc
    if cid.codec != DAG_CBOR:
        raise UsageError(f"not a record id: {text!r:.80} is a {cid.codec_name} CID, records are dag-cbor")
    return cid


# ------------------------------------------------------------------ one record


@dataclass
class _Located:
    """A record verified in its agent's log: where and when it was anchored."""

    record: Record
    anchor: Anchor | None


def verify_record(ctx: VerifyContext, record_id: str) -> Report:
    """Is this record authentic, anchored, in sequence, and its content what it says?"""
    cid = parse_record_id(record_id)
    report = Report(f"record {cid}")
    report.facts["record_id"] = cid.encode()
    try:
        data = ctx.source.get(cid)
    except BlockNotFound as exc:
        report.failed(CHECK_RECORD_FOUND, f"not found: {ctx.source.description} cannot produce it ({exc})")
        return report
    except BlockMismatch as exc:
        report.failed(CHECK_BLOCKS, f"record block: {exc}")
        return report
    try:
        record = decode_record(data)
    except RecordError as exc:
        report.passed(CHECK_BLOCKS, f"record block hashes to {cid}")
        report.failed(CHECK_FORMAT, f"not a valid version-1 record: {exc}")
        return report
    check_anchored_record(ctx, report, record)
    return report


def check_anchored_record(ctx: VerifyContext, report: Report, record: Record, content: bool = True) -> _Located:
    """Every check of one decoded record against its agent's anchored log, added to `report`."""
    report.facts.update(_record_facts(record))
    blocks = Tally(CHECK_BLOCKS)
    blocks.passed()  # the record's own block, fetched by CID
    report.passed(CHECK_FORMAT, "strict canonical DAG-CBOR; every field and cross-field rule holds")
    log = ctx.log(record.agent)
    anchor = log.checkpoint_of(record.seq)
    if anchor is None:
        anchored = log.anchors[-1].size if log.anchors else 0
        reason = f"seq {record.seq} is beyond the {anchored} record(s) agent {record.agent} has anchored"
        report.extend([blocks.check("the record block hashes to its CID")])
        report.failed(CHECK_INCLUSION, f"not anchored: {reason}")
        report.failed(CHECK_SIGNATURE, "no anchored manifest carries a signature for this record")
        return _Located(record, None)
    log.walk(anchor.index)
    report.facts.update({"checkpoint": anchor.index, "block": anchor.block, "tx": "0x" + anchor.tx.hex()})
    in_place = log.cids[record.seq].digest == record.hash
    _signature(ctx, report, log, record, in_place)
    _active(ctx, report, log, anchor)
    _inclusion(ctx, report, log, record, anchor, in_place)
    _links(ctx, report, log, record, blocks)
    for tally in (log.tallies[CHECK_MANIFEST], log.tallies[CHECK_ROOTS], log.tallies[CHECK_CONSISTENCY]):
        if tally.count:
            report.extend([tally.check(f"checkpoints 0..{log.walked - 1}: {tally.count} checked against the chain")])
    walked = log.tallies[CHECK_BLOCKS]
    blocks.count += walked.count
    blocks.failures.extend(walked.failures)
    if content:
        _content(ctx, report, record)
    report.extend([blocks.check(f"{blocks.count} block(s) fetched, each hashed to its CID")])
    return _Located(record, anchor)


def _record_facts(record: Record) -> dict[str, object]:
    location = record.location if isinstance(record.location, str) else "(committed)"
    after = record.after
    return {
        "record_id": record.cid.encode(),
        "agent": record.agent,
        "seq": record.seq,
        "time": record.time,
        "op": record.op.value,
        "location": location,
        "after_sha256": None if after is None else after.sha256.hex(),
    }


def _signature(ctx: VerifyContext, report: Report, log: AgentLog, record: Record, in_place: bool) -> None:
    if not in_place:
        where = "lists another record" if log.known(record.seq) else "is unusable, so carries no signature"
        report.failed(CHECK_SIGNATURE, f"the manifest anchored for position {record.seq} {where}")
        return
    try:
        signer = recover_signer(ctx.chain.domain, record.hash, log.signatures[record.seq]).lower()
    except SignatureError as exc:
        report.failed(CHECK_SIGNATURE, f"signature unusable: {exc}")
        return
    if signer != record.agent:
        report.failed(CHECK_SIGNATURE, f"EIP-712 signature recovers to {signer}, not to the agent {record.agent}")
    else:
        report.passed(CHECK_SIGNATURE, f"EIP-712 signature (chain {ctx.chain_id}) recovers to the agent {signer}")


def _active(ctx: VerifyContext, report: Report, log: AgentLog, anchor: Anchor) -> None:
    if ctx.chain.ledger.agent_active_at_block(log.agent, anchor.block):
        report.passed(CHECK_ACTIVE, f"contract: agent active in block {anchor.block} (checkpoint {anchor.index})")
    else:
        report.failed(CHECK_ACTIVE, f"contract: agent not active in block {anchor.block} (checkpoint {anchor.index})")


def _inclusion(
    ctx: VerifyContext, report: Report, log: AgentLog, record: Record, anchor: Anchor, in_place: bool
) -> None:
    where = f"leaf {record.seq} of checkpoint {anchor.index} (size {anchor.size})"
    if not in_place:
        report.failed(CHECK_INCLUSION, f"{where} is record {log.cids[record.seq]}, not this one")
        return
    if log.rebuilt_size < anchor.size:
        report.failed(CHECK_INCLUSION, f"no proof can be built for {where}: the anchored log could not be rebuilt")
        return
    proof = merkle.inclusion_proof(log.leaves[: anchor.size], record.seq)
    chain_root = ctx.chain.ledger.checkpoint(log.agent, anchor.index).root
    check_proof(ctx, report, log.agent, record.leaf_hash, record.seq, anchor, chain_root, proof)


def check_proof(
    ctx: VerifyContext,
    report: Report,
    agent: str,
    leaf: bytes,
    position: int,
    anchor: Anchor,
    chain_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """An inclusion proof against the root the contract holds, checked here and by the contract itself."""
    where = f"leaf {position} of checkpoint {anchor.index} (size {anchor.size})"
    if merkle.verify_inclusion(leaf, position, anchor.size, proof, chain_root):
        report.passed(CHECK_INCLUSION, f"{len(proof)}-hash proof of {where} verifies against the contract's root")
    else:
        report.failed(CHECK_INCLUSION, f"the proof of {where} does not verify against the contract's root")
    if ctx.chain.ledger.verify_inclusion(leaf, position, anchor.size, proof, chain_root):
        report.passed(CHECK_CONTRACT_INCLUSION, f"eth_call verifyInclusion for {where} returned true")
    else:
        report.failed(CHECK_CONTRACT_INCLUSION, f"eth_call verifyInclusion for {where} returned false")


def _links(ctx: VerifyContext, report: Report, log: AgentLog, record: Record, blocks: Tally) -> None:
    """seq/prev against the neighbours the anchored log holds on either side."""
    problems: list[str] = []
    if record.prev != log.expected_prev(record.seq):
        problems.append(f"prev does not name record {record.seq - 1} of the anchored log")
    for position, relation in ((record.seq - 1, "previous"), (record.seq + 1, "next")):
        if not 0 <= position < len(log.cids):
            continue
        if not log.known(position):
            problems.append(f"the {relation} record is unknown: no usable manifest lists it")
            continue
        try:
            neighbour = decode_record(ctx.source.get(log.cids[position]))
        except (BlockNotFound, BlockMismatch) as exc:
            blocks.failed(f"{relation} record: {exc}")
            problems.append(f"the {relation} record could not be fetched")
            continue
        except RecordError as exc:
            problems.append(f"the {relation} record is not a valid record: {exc}")
            continue
        blocks.passed()
        if neighbour.seq != position or neighbour.agent != record.agent:
            problems.append(f"the {relation} position holds seq {neighbour.seq} of {neighbour.agent}")
        elif relation == "next" and neighbour.prev != record.hash:
            problems.append("the next record's prev does not link to this record")
    if problems:
        report.failed(CHECK_SEQ, "; ".join(problems))
    else:
        report.passed(CHECK_SEQ, f"seq {record.seq} sits at its position; prev links hold with both neighbours")


def content_problem(source: BlockSource, after: ContentRef) -> str | None:
    """Why the stored content of `after` is not what it claims (unavailable, not a file, other hash), or None."""
    assert after.cid is not None
    try:
        data = content_bytes(source, after.cid)
    except (BlockNotFound, BlockMismatch) as exc:
        return f"content {after.cid} could not be fetched: {exc}"
    except UnixFSError as exc:
        return f"content {after.cid} is not a file: {exc}"
    if hashlib.sha256(data).digest() != after.sha256 or len(data) != after.size:
        return f"content {after.cid} does not match the record's sha256/size"
    return None


def _content(ctx: VerifyContext, report: Report, record: Record) -> None:
    after = record.after
    if after is None or after.cid is None:
        report.passed(CHECK_CONTENT, "the record stores no content (after has no CID): nothing to compare")
        return
    problem = content_problem(ctx.source, after)
    if problem is None:
        report.passed(CHECK_CONTENT, f"content {after.cid}: {after.size} bytes with the record's sha256")
    else:
        report.failed(CHECK_CONTENT, problem)


def check_contents(report: Report, source: BlockSource, blocks: Iterable[tuple[int, bytes]]) -> None:
    """One check over the stored contents of many records (records that do not decode are skipped)."""
    tally = Tally(CHECK_CONTENT)
    for position, data in blocks:
        try:
            after = decode_record(data).after
        except RecordError:
            continue  # reported by the record checks
        if after is None or after.cid is None:
            continue
        problem = content_problem(source, after)
        if problem is None:
            tally.passed()
        else:
            tally.failed(f"record {position}: {problem}")
    report.extend([tally.check(f"{tally.count} stored content(s) match their records' sha256 and size")])


# ------------------------------------------------------------------ an agent's whole log


def verify_agent(
    ctx: VerifyContext, address: str, with_content: bool = False, progress: ProgressFn | None = None
) -> Report:
    """Is this agent's whole history intact: every checkpoint, every record, in order, signed?"""
    agent = _agent_address(address)
    report = Report(f"agent {agent}")
    log = ctx.log(agent)
    if not _registered(ctx, report, log):
        return report
    log.walk()
    size = log.anchors[-1].size if log.anchors else 0
    report.facts.update({"agent": agent, "checkpoints": len(log.anchors), "records": size})
    positions = range(size)
    if progress is not None:
        progress(f"checking {agent[:10]}… records", 0, size)
    blocks, failures = ctx.record_blocks(log, positions)
    problems = log.check_records(blocks, ctx.workers)
    if progress is not None:
        progress(f"checking {agent[:10]}… records", size, size)
    _record_tallies(report, log, size, failures, problems, blocks)
    if log.anchors:
        _sample_inclusion(ctx, report, log, log.anchors[-1])
    if with_content:
        check_contents(report, ctx.source, blocks)
    if ctx.index is not None:
        report.facts["index_hint"] = {"served": ctx.hint_served, "refused": ctx.hint_refused}
    return report


def _agent_address(address: str) -> str:
    try:
        return checksum(address.strip()).lower()
    except (UsageError, AttributeError):
        raise UsageError(f"not an agent address (0x and 40 hex digits): {address!r:.80}") from None


def _registered(ctx: VerifyContext, report: Report, log: AgentLog) -> bool:
    info = ctx.chain.ledger.agent_info(log.agent)
    if not info.registered:
        report.failed("agent registered", f"{log.agent} was never approved by the governors of this ledger")
        return False
    window = f"approved in block {info.approved_block}"
    if info.revoked_block:
        window += f", revoked in block {info.revoked_block}"
    report.passed("agent registered", f"{info.name!r}, {window}")
    count_ok = info.checkpoint_count == len(log.anchors) and (
        not log.anchors or info.latest_size == log.anchors[-1].size
    )
    if count_ok:
        report.passed("checkpoints on chain", f"{len(log.anchors)} checkpoint(s), {info.latest_size} record(s)")
    else:
        report.failed(
            "checkpoints on chain",
            f"the contract counts {info.checkpoint_count} checkpoint(s) but {len(log.anchors)} Anchored event(s)",
        )
    return True


def _record_tallies(
    report: Report,
    log: AgentLog,
    size: int,
    failures: list[tuple[int, str]],
    problems: list[RecordProblem],
    blocks: Sequence[tuple[int, bytes]],
) -> None:
    block_tally = log.tallies[CHECK_BLOCKS]
    block_tally.passed(len(blocks))
    for position, reason in failures:
        block_tally.failed(f"record {position}: {reason}")
    checked = len(blocks)
    tallies = tally_problems(problems, checked, (CHECK_FORMAT, CHECK_SIGNATURE, CHECK_SEQ))
    passed = {
        CHECK_BLOCKS: f"{block_tally.count} block(s) (manifests and records), each hashed to its CID",
        CHECK_MANIFEST: f"{len(log.anchors)} manifest(s) describe exactly the anchored checkpoints",
        CHECK_ROOTS: f"the manifests' {size} leaves rebuild all {len(log.anchors)} anchored root(s)",
        CHECK_ACTIVE: f"contract: agent active in the block of each of {len(log.anchors)} checkpoint(s)",
    }
    if len(log.anchors) > 1:
        pairs = len(log.anchors) - 1
        passed[CHECK_CONSISTENCY] = f"{pairs} consecutive pair(s) consistent (locally and by contract)"
    log.report_into(report, passed)
    report.extend(
        [
            tallies[CHECK_FORMAT].check(f"{checked} record(s) decode strictly"),
            tallies[CHECK_SIGNATURE].check(f"{checked} EIP-712 signature(s) recover to the agent"),
            tallies[CHECK_SEQ].check(f"seq 0..{size - 1} without gaps; every prev links to the record before"),
        ]
    )
    if checked < size:  # merged into the one CHECK_SEQ line (Report.add never lists a name twice)
        report.failed(CHECK_SEQ, f"only {checked} of {size} anchored records could be examined")


def _sample_inclusion(ctx: VerifyContext, report: Report, log: AgentLog, anchor: Anchor) -> None:
    """One proof through the contract: the roots rebuilt above already include every leaf."""
    if log.rebuilt_size < anchor.size:
        report.failed(CHECK_INCLUSION, "the anchored log could not be rebuilt, so no record's inclusion is shown")
        return
    position = anchor.size - 1
    proof = merkle.inclusion_proof(log.leaves[: anchor.size], position)
    chain_root = ctx.chain.ledger.checkpoint(log.agent, anchor.index).root
    check_proof(ctx, report, log.agent, log.leaves[position], position, anchor, chain_root, proof)
