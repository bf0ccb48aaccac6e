"""Audit bundles: one CAR file with everything needed to verify an agent's records without IPFS.

A bundle holds, as verified blocks:

* a root block (``provanchor/audit-bundle``) naming the deployment, the
  agent, the selection (location, time window, contents), the checkpoints
  the bundle covers and links to the proof blocks;
* every manifest of those checkpoints (they list every leaf, so the roots
  can be rebuilt, and carry the signatures);
* the selected records, and with ``--with-content`` their contents;
* proof blocks: for each selected record its RFC 9162 inclusion proof in
  the bundle's last checkpoint, 1,024 records per block, each entry
  ``[position, proof hashes concatenated]`` (one byte string rather than a
  list of hashes: decoding 100,000 proofs is then 20x fewer CBOR items).

Verifying trusts only the chain: the checkpoints must be the ones the
contract anchored (its events and views), the manifests must hash to the
CIDs anchored with them and rebuild their roots, every record is checked
like `verify record` does, and every proof is checked against the root the
contract holds (a sample of them by the contract's own ``verifyInclusion``).
What the bundle's root block claims is never believed, only compared.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from provanchor.checks.log import (
    CHECK_BLOCKS,
    CHECK_CONTRACT_INCLUSION,
    CHECK_FORMAT,
    CHECK_INCLUSION,
    CHECK_MANIFEST,
    CHECK_ROOTS,
    CHECK_SEQ,
    CHECK_SIGNATURE,
    split_proof,
)
from provanchor.errors import BlockMismatch, BlockNotFound, RecordError, UsageError
from provanchor.formats import dagcbor, merkle
from provanchor.formats.car import CarError, read_car, write_car
from provanchor.formats.cid import CID, DAG_CBOR, RECORD_LINK, link_problem
from provanchor.formats.manifest import decode_manifest
from provanchor.ipfs.sources import BlockSource, IpfsSource, MemorySource, dag_blocks
from provanchor.progress import ProgressFn
from provanchor.records import Record, decode_record
from provanchor.records.bundle import (
    BUNDLE_TYPE,
    BUNDLE_VERSION,
    PROOFS_PER_BLOCK,
    SCOPE_LOG,
    SCOPE_SELECTION,
    BundleRoot,
    Selection,
    decode_bundle_root,
    decode_proof_block,
)
from provanchor.verify.api import check_contents
from provanchor.verify.log import AgentLog, Chain, Tally, tally_problems
from provanchor.verify.report import Report
from provanchor.verify.trust import TrustBase

__all__ = [
    "BUNDLE_TYPE",
    "ExportSummary",
    "Selection",
    "decode_bundle_root",
    "decode_proof_block",
    "export_bundle",
    "read_bundle",
    "verify_bundle",
]

CHECK_COMPLETE = "bundle complete"
CONTRACT_SAMPLE = 8
CHECK_BUNDLE = "bundle matches the chain"


@dataclass(frozen=True)
class ExportSummary:
    path: str
    root: str
    agent: str
    checkpoints: int
    records: int
    contents: int
    blocks: int
    bytes: int

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


# ------------------------------------------------------------------ proofs for many leaves


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the RFC 9162 tree (an unpaired last node is promoted unchanged)."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        it = iter(level)
        paired = [merkle.node_hash(a, b) for a, b in zip(it, it, strict=False)]
        if len(level) & 1:
            paired.append(level[-1])
        levels.append(paired)
    return levels


def _proof(levels: list[list[bytes]], index: int) -> list[bytes]:
    """PATH(index) read off the levels: one sibling per level where the node has one."""
    proof = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index >>= 1
    return proof


# ------------------------------------------------------------------ export


def export_bundle(
    chain: Chain,
    source: BlockSource,
    agent: str,
    selection: Selection,
    out_path: str | os.PathLike[str],
    progress: ProgressFn | None = None,
) -> ExportSummary:
    """Write a bundle for `agent`'s records matching `selection` (atomically: a temp file renamed)."""
    log = AgentLog(chain, source, agent, contract_checks=False)
    if not log.anchors:
        raise UsageError(f"agent {log.agent} has no anchored checkpoint: nothing to export")
    manifests: list[tuple[CID, bytes]] = []
    cids: list[CID] = []
    for done, anchor in enumerate(log.anchors):
        if progress:
            progress("reading manifests", done, len(log.anchors))
        if anchor.manifest_cid is None:
            raise RecordError(f"checkpoint {anchor.index}'s manifest CID on chain does not parse")
        data = source.get(anchor.manifest_cid)
        manifests.append((anchor.manifest_cid, data))
        cids.extend(decode_manifest(data).records)
    last = log.anchors[-1]
    cids = cids[: last.size]
    if progress:
        progress("fetching records", 0, len(cids))
    fetched = source.get_many(cids)
    if progress:
        progress("fetching records", len(cids), len(cids))
    selected: list[tuple[int, CID, bytes, Record]] = []
    for position, (cid, result) in enumerate(zip(cids, fetched, strict=True)):
        if isinstance(result, Exception):
            raise result
        record = decode_record(result)
        if selection.matches(record):
            selected.append((position, cid, result, record))
    levels = _levels([merkle.leaf_hash(cid.digest) for cid in cids])
    proof_blocks: list[tuple[CID, bytes]] = []
    for start in range(0, len(selected), PROOFS_PER_BLOCK):
        chunk = selected[start : start + PROOFS_PER_BLOCK]
        # [position, concatenated proof hashes]: the record's CID is the manifest's at that position.
        wire = {"records": [[position, b"".join(_proof(levels, position))] for position, _, _, _ in chunk]}
        block = dagcbor.encode(wire)
        proof_blocks.append((CID.for_block(DAG_CBOR, block), block))
    content_blocks: dict[CID, bytes] = {}
    contents: list[CID] = []
    if selection.with_content:
        for _, _, _, record in selected:
            after = record.after
            if after is not None and after.cid is not None and after.cid not in content_blocks:
                contents.append(after.cid)
                content_blocks.update(dag_blocks(source, after.cid))
    root_wire = {
        "type": BUNDLE_TYPE,
        "v": BUNDLE_VERSION,
        "chain_id": chain.chain_id,
        "contract": chain.contract.lower(),
        "agent": log.agent,
        "scope": SCOPE_SELECTION if selection.selective else SCOPE_LOG,
        "selection": selection.to_wire(),
        "checkpoints": [
            {"index": a.index, "size": a.size, "root": a.root, "manifest": cid}
            for a, (cid, _) in zip(log.anchors, manifests, strict=True)
        ],
        "proofs": [cid for cid, _ in proof_blocks],
        "records": len(selected),
        "contents": contents,
        "created": time.time_ns(),
    }
    root_block = dagcbor.encode(root_wire)
    root = CID.for_block(DAG_CBOR, root_block)

    def blocks() -> Iterator[tuple[CID, bytes]]:
        yield root, root_block
        yield from manifests
        yield from proof_blocks
        for _, cid, data, _ in selected:
            yield cid, data
        yield from content_blocks.items()

    target = Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    count = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            counted = _counting(blocks())
            write_car([root], counted, handle)
            count = counted.count
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ExportSummary(
        str(target),
        root.encode(),
        log.agent,
        len(log.anchors),
        len(selected),
        len(contents),
        count,
        target.stat().st_size,
    )


class _counting:
    """Count the blocks a generator yields while write_car streams them."""

    def __init__(self, blocks: Iterator[tuple[CID, bytes]]) -> None:
        self.blocks = blocks
        self.count = 0

    def __iter__(self) -> Iterator[tuple[CID, bytes]]:
        for item in self.blocks:
            self.count += 1
            yield item


# ------------------------------------------------------------------ verify


def read_bundle(handle: BinaryIO) -> tuple[CID, MemorySource, str | None]:
    """The bundle's root CID and its blocks; a block that does not match its CID stops reading (reported)."""
    roots, sections = read_car(handle)
    if len(roots) != 1:
        raise CarError(f"not a provanchor audit bundle: the CAR has {len(roots)} roots, a bundle has one")
    problem = link_problem(roots[0], RECORD_LINK, "the CAR's root")
    if problem is not None:
        raise CarError(f"not a provanchor audit bundle: {problem}")
    source = MemorySource(description="bundle")
    try:
        for cid, data in sections:
            source.add(cid, data, hashed=True)  # read_car has just hashed it against its CID
    except BlockMismatch as exc:
        return roots[0], source, str(exc)
    return roots[0], source, None


def verify_bundle(
    chain: Chain, path: str | os.PathLike[str], workers: int | None = None, ipfs: BlockSource | None = None
) -> Report:
    """Verify a bundle against the chain's roots; nothing it says about itself is believed.

    A bundle of an agent's whole log (scope "log") must hold every record up
    to its last checkpoint, each with its proof, or it fails. A selection
    (a location, a time window) is proven complete only when `ipfs` is given:
    the records the manifests list and the bundle leaves out are fetched and
    none may match the selection. Without it that claim is unproven, never a pass.
    """
    file_path = Path(path)
    if not file_path.is_file():
        raise UsageError(f"no bundle at {file_path}")
    with file_path.open("rb") as handle:
        root, source, broken = read_bundle(handle)
    report = Report(f"audit bundle {file_path.name}")
    if broken is not None:
        report.failed(CHECK_BLOCKS, f"bundle block refused: {broken}")
        return report
    try:
        bundle = decode_bundle_root(source.get(root))
    except BlockNotFound:
        raise UsageError(f"not a provanchor audit bundle: its root block {root} is missing") from None
    report.facts.update(
        {"root": root.encode(), "agent": bundle.agent, "scope": bundle.scope, "selection": bundle.selection.to_wire()}
    )
    if (bundle.chain_id, bundle.contract.lower()) != (chain.chain_id, chain.contract.lower()):
        report.failed(
            CHECK_BUNDLE,
            f"bundle is for chain {bundle.chain_id} contract {bundle.contract}, "
            f"not chain {chain.chain_id} contract {chain.contract}",
        )
        return report
    log = AgentLog(chain, source, bundle.agent)
    last = _match_checkpoints(report, log, bundle)
    if last is None:
        return report
    log.walk(last)
    records = _bundle_records(report, log, source, bundle, last)
    report.facts.update({"checkpoints": last + 1, "records": len(records)})
    _record_checks(report, log, records, workers)
    _completeness(report, log, bundle, records, last, ipfs)
    if bundle.selection.with_content:
        check_contents(report, source, [(position, data) for position, _, _, data in records if data is not None])
    return report


def _completeness(
    report: Report,
    log: AgentLog,
    bundle: BundleRoot,
    records: list[tuple[int, CID | None, bytes, bytes | None]],
    last: int,
    ipfs: BlockSource | None,
) -> None:
    """Does the bundle hold every record it claims to: the whole log, or everything matching its selection?"""
    size = log.anchors[last].size
    held = {position for position, cid, _, data in records if cid is not None and data is not None}
    absent = [position for position in range(size) if position not in held]
    if bundle.scope == SCOPE_LOG:
        if absent:
            shown = ", ".join(map(str, absent[:5])) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
            report.failed(CHECK_COMPLETE, f"a bundle of the whole log lacks record(s) {shown} of the {size} anchored")
            report.facts["complete"] = "failed"
        else:
            report.passed(CHECK_COMPLETE, f"every one of the {size} records up to checkpoint {last}, with its proof")
            report.facts["complete"] = "proven"
        return
    unknown = [p for p in absent if p >= len(log.cids) or not log.known(p)]
    if ipfs is None:
        report.unproven(
            CHECK_COMPLETE,
            f"the bundle is a selection ({len(held)} of {size} records); proving that no record it leaves out "
            "matches the selection needs those records: give --ipfs",
        )
        report.facts["complete"] = "unproven"
        return
    fetched = ipfs.get_many([log.cids[p] for p in absent if p not in unknown])
    matching: list[int] = []
    unreadable: list[int] = list(unknown)
    for position, result in zip([p for p in absent if p not in unknown], fetched, strict=True):
        if isinstance(result, Exception):
            unreadable.append(position)
            continue
        try:
            record = decode_record(result)
        except RecordError:
            unreadable.append(position)
            continue
        if bundle.selection.matches(record):
            matching.append(position)
    if matching:
        report.failed(CHECK_COMPLETE, f"record(s) {matching[:5]} match the selection but are not in the bundle")
        report.facts["complete"] = "failed"
    elif unreadable:
        report.unproven(
            CHECK_COMPLETE, f"{len(unreadable)} record(s) left out could not be read from IPFS: {unreadable[:5]}"
        )
        report.facts["complete"] = "unproven"
    else:
        report.passed(
            CHECK_COMPLETE, f"the {len(absent)} record(s) left out were read from IPFS: none matches the selection"
        )
        report.facts["complete"] = "proven"


def _match_checkpoints(report: Report, log: AgentLog, bundle: BundleRoot) -> int | None:
    """The bundle's checkpoint list must be a prefix of the chain's anchors; returns its last index."""
    if not bundle.checkpoints:
        report.failed(CHECK_BUNDLE, "the bundle covers no checkpoint")
        return None
    problems: list[str] = []
    for position, claimed in enumerate(bundle.checkpoints):
        if position >= len(log.anchors):
            problems.append(f"checkpoint {position} is claimed but the chain has only {len(log.anchors)}")
            break
        anchor = log.anchors[position]
        manifest = claimed.get("manifest")
        same = (
            claimed.get("index") == anchor.index
            and claimed.get("size") == anchor.size
            and claimed.get("root") == anchor.root
            and isinstance(manifest, CID)
            and manifest == anchor.manifest_cid
        )
        if not same:
            problems.append(f"checkpoint {position} differs from what the chain anchored (size, root or manifest)")
    if problems:
        report.failed(CHECK_BUNDLE, "; ".join(problems[:3]))
        return None
    report.passed(CHECK_BUNDLE, f"its {len(bundle.checkpoints)} checkpoint(s) are exactly the chain's anchors")
    return len(bundle.checkpoints) - 1


def _bundle_records(
    report: Report, log: AgentLog, source: MemorySource, bundle: BundleRoot, last: int
) -> list[tuple[int, CID | None, bytes, bytes | None]]:
    """(position, the anchored CID there, proof, record bytes or None) for every entry of the proof blocks."""
    out: list[tuple[int, CID | None, bytes, bytes | None]] = []
    size = log.anchors[last].size
    for proof_cid in bundle.proofs:
        try:
            block = source.get(proof_cid)
        except BlockNotFound as exc:
            report.failed(CHECK_BLOCKS, f"proof block {proof_cid}: {exc}")
            continue
        try:
            entries = decode_proof_block(block)
        except UsageError as exc:
            report.failed(CHECK_INCLUSION, f"proof block {proof_cid}: {exc}")
            continue
        for position, proof in entries:
            cid = log.cids[position] if position < size else None
            data = source.find(cid) if cid is not None else None
            out.append((position, cid, proof, data))
    if len(out) != bundle.records:
        report.failed(CHECK_BUNDLE, f"the root announces {bundle.records} record(s), the proof blocks list {len(out)}")
    return out


def _record_checks(
    report: Report,
    log: AgentLog,
    records: list[tuple[int, CID | None, bytes, bytes | None]],
    workers: int | None,
) -> None:
    anchor = log.anchors[len(log.manifests) - 1]
    chain_root = log.chain.ledger.checkpoint(log.agent, anchor.index).root
    blocks, contract = log.tallies[CHECK_BLOCKS], Tally(CHECK_CONTRACT_INCLUSION)
    outside: list[str] = []
    present: list[tuple[int, bytes, bytes]] = []
    for position, cid, proof, data in records:
        if cid is None:
            outside.append(f"record {position} is outside the anchored log of size {anchor.size}")
        elif data is None:
            blocks.failed(f"record {position} ({cid}) is not in the bundle")
        else:
            blocks.passed()
            present.append((position, data, proof))
    # Proofs are checked with the records, in the worker processes: at 100,000 records they cost a second.
    problems = log.check_records(
        [(p, d) for p, d, _ in present], workers, (anchor.size, chain_root, [x for *_, x in present])
    )
    for position in _sample([p for p, _, _ in present]):
        hashes = split_proof(next(x for p, _, x in present if p == position))
        leaf = merkle.leaf_hash(log.cids[position].digest)
        if log.chain.ledger.verify_inclusion(leaf, position, anchor.size, hashes, chain_root):
            contract.passed()
        else:
            contract.failed(f"record {position}: the contract's verifyInclusion returned false")
    names = (CHECK_INCLUSION, CHECK_FORMAT, CHECK_SIGNATURE, CHECK_SEQ)
    tallies = tally_problems(problems, len(present), names)
    for reason in outside:
        tallies[CHECK_INCLUSION].failed(reason)
    log.report_into(
        report,
        {
            CHECK_BLOCKS: f"{blocks.count} block(s) (manifests and records), each hashed to its CID",
            CHECK_MANIFEST: "the manifests are the ones anchored",
            CHECK_ROOTS: "roots rebuilt",
        },
    )
    where = f"checkpoint {anchor.index} (size {anchor.size})"
    count = len(present)
    report.extend(
        [
            tallies[CHECK_INCLUSION].check(f"{count} proof(s) verify against the contract's root of {where}"),
            contract.check(f"eth_call verifyInclusion agreed on {contract.count} sampled proof(s)"),
            tallies[CHECK_FORMAT].check(f"{count} record(s) decode strictly"),
            tallies[CHECK_SIGNATURE].check(f"{count} signature(s) from the manifests recover to the agent"),
            tallies[CHECK_SEQ].check("every record sits at its seq; prev links match the anchored leaves"),
        ]
    )
    if not records:
        report.failed(CHECK_INCLUSION, "the bundle holds no record")


def _sample(positions: list[int]) -> list[int]:
    """Evenly spaced positions (first and last included): the proofs the contract checks too."""
    if len(positions) <= CONTRACT_SAMPLE:
        return positions
    step = (len(positions) - 1) / (CONTRACT_SAMPLE - 1)
    return sorted({positions[round(i * step)] for i in range(CONTRACT_SAMPLE)})


def selection_from_options(
    location: str | None, since: str | None, until: str | None, with_content: bool
) -> Selection:
    """A selection from command-line text: a location (URI or path on any host) and a time window."""
    from provanchor.index.timeparse import parse_time
    from provanchor.records.locations import location_arg

    since_ns = parse_time(since) if since else None
    until_ns = parse_time(until) if until else None
    if since_ns is not None and until_ns is not None and since_ns > until_ns:
        raise UsageError("--since is later than --until: the window is empty")
    return Selection(location_arg(location, None) if location else None, since_ns, until_ns, with_content)


def export_bundle_file(
    trust: TrustBase, agent: str, selection: Selection, output: str, progress: ProgressFn | None = None
) -> ExportSummary:
    """`audit export`: the bundle of `agent`'s records that `selection` picks, written to `output`."""
    if trust.ipfs_api is None:
        raise UsageError("audit export reads blocks from an IPFS API: give --ipfs")
    source = IpfsSource(trust.ipfs_api)
    try:
        return export_bundle(Chain(trust.rpc_url, trust.contract), source, agent, selection, output, progress=progress)
    finally:
        source.close()
