"""The tamper matrix: every forgery is really anchored (or refused) on a real chain and IPFS, and caught.

Each test names the check that must fail and asserts the verdict is false.
("A file changed outside the agent's view" is in test_verify.py, with the
file verification it exercises.)
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from eth_account import Account
from helpers.forge import Entry, LogWriter

from provanchor.chain.client import LedgerClient
from provanchor.errors import ContractError
from provanchor.formats import dagcbor, merkle
from provanchor.formats.car import read_car, write_car
from provanchor.formats.cid import CID, DAG_CBOR, DAG_PB, RAW
from provanchor.home import Home
from provanchor.identity import unlock
from provanchor.ipfs.client import IpfsClient
from provanchor.localnet.devagents import enroll_agent
from provanchor.localnet.devkeys import load_governor_keys
from provanchor.network import NetworkDescriptor, load_network
from provanchor.records import Capture, CaptureBackend, Change, ContentRef, Eip712Domain, Op, RecordSigner
from provanchor.verify.api import VerifyContext, verify_agent, verify_record
from provanchor.verify.bundle import Selection, _levels, _proof, export_bundle, verify_bundle
from provanchor.verify.report import Report

PASSWORD = "tamper-test"
T0 = 1_700_000_000 * 10**9


@pytest.fixture(scope="module")
def network(net_home: Home) -> NetworkDescriptor:
    return load_network(net_home)


@pytest.fixture(scope="module")
def ipfs(network: NetworkDescriptor) -> Iterator[IpfsClient]:
    with IpfsClient(network.ipfs_api) as client:
        yield client


@pytest.fixture(scope="module")
def governor(net_home: Home, network: NetworkDescriptor) -> LedgerClient:
    return LedgerClient(network.rpc_url, network.contract, load_governor_keys(net_home)[0])


@pytest.fixture
def ctx(network: NetworkDescriptor) -> Iterator[VerifyContext]:
    with VerifyContext(network.rpc_url, network.contract, ipfs_api=network.ipfs_api) as context:
        yield context


def new_writer(net_home: Home, network: NetworkDescriptor, ipfs: IpfsClient, root: Path, name: str) -> LogWriter:
    _, identity = enroll_agent(net_home, root / name, name, PASSWORD)
    account = unlock(identity.keystore_path, PASSWORD)
    return LogWriter(LedgerClient(network.rpc_url, network.contract), ipfs, account)


def change(i: int, tag: str = "") -> Change:
    data = f"{tag}{i}".encode()
    return Change(
        time=T0 + i * 10**9,
        host="h1",
        location=f"file://h1/data/{tag}f{i}",
        op=Op.WRITE,
        capture=Capture(backend=CaptureBackend.MANUAL, attributed=False, reason="test"),
        after=ContentRef(hashlib.sha256(data).digest(), len(data)),
    )


def failed(report: Report) -> set[str]:
    assert not report.ok, report.render()
    return {c.name for c in report.failures()}


@pytest.fixture(scope="module")
def honest(
    net_home: Home, network: NetworkDescriptor, ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory
) -> tuple[LogWriter, list[Entry], Path]:
    """An honest agent (two checkpoints) and its audit bundle: the material the forgeries start from."""
    root = tmp_path_factory.mktemp("honest")
    writer = new_writer(net_home, network, ipfs, root, "honest")
    entries = [writer.record(change(i, "h")) for i in range(6)]
    writer.publish(entries[:3])
    writer.publish(entries[3:])
    bundle = root / "honest.car"
    with VerifyContext(network.rpc_url, network.contract, ipfs_api=network.ipfs_api) as context:
        export_bundle(context.chain, context.source, writer.agent, Selection(), bundle)
        assert verify_agent(context, writer.agent).ok
        assert verify_bundle(context.chain, bundle).ok
    return writer, entries, bundle


def rewrite_car(source: Path, target: Path, edit: dict[CID, bytes], root: CID | None = None) -> None:
    """Copy a CAR, replacing some blocks' bytes (the CID kept: the writer does not re-hash)."""
    with source.open("rb") as handle:
        roots, sections = read_car(handle)
        blocks = [(cid, edit.get(cid, data)) for cid, data in sections]
    with target.open("wb") as out:
        write_car([root] if root is not None else roots, blocks, out)


def test_edited_record_bytes(
    honest: tuple[LogWriter, list[Entry], Path], ctx: VerifyContext, ipfs: IpfsClient, tmp_path: Path
) -> None:
    _, entries, bundle = honest
    # In a bundle, under the record's own CID: "blocks match CIDs".
    victim = entries[1]
    edited = victim.data.replace(b"hf1", b"hf7")
    assert edited != victim.data
    forged = tmp_path / "edited.car"
    rewrite_car(bundle, forged, {victim.cid: edited})
    assert failed(verify_bundle(ctx.chain, forged)) == {"blocks match CIDs"}
    # Published under its new CID (IPFS keys blocks by hash): not the anchored leaf, no signature of it.
    ipfs.put_blocks([(CID.for_block(DAG_CBOR, edited), edited)])
    report = verify_record(ctx, CID.for_block(DAG_CBOR, edited).encode())
    assert {"inclusion proof", "signature"} <= failed(report)


def test_record_signed_by_an_unregistered_key(
    net_home: Home, network: NetworkDescriptor, ipfs: IpfsClient, ctx: VerifyContext, tmp_path: Path
) -> None:
    writer = new_writer(net_home, network, ipfs, tmp_path, "victim")
    outsider = Account.create()
    stranger = RecordSigner(bytes(outsider.key), Eip712Domain(writer.chain_id, network.contract))
    entries = [writer.record(change(i, "u")) for i in range(4)]
    record_hash = hashlib.sha256(entries[2].data).digest()
    entries[2] = Entry(entries[2].data, stranger.sign(record_hash))
    writer.publish(entries)
    report = verify_agent(ctx, writer.agent)
    assert failed(report) == {"signature"}
    assert "record 2" in next(c.detail for c in report.failures())
    assert failed(verify_record(ctx, entries[2].cid.encode())) == {"signature"}
    # The stranger's own "log" does not exist for the ledger.
    assert "agent registered" in failed(verify_agent(ctx, outsider.address))


def test_anchoring_after_revocation(
    net_home: Home,
    network: NetworkDescriptor,
    ipfs: IpfsClient,
    governor: LedgerClient,
    ctx: VerifyContext,
    tmp_path: Path,
) -> None:
    writer = new_writer(net_home, network, ipfs, tmp_path, "revoked")
    entries = [writer.record(change(i, "r")) for i in range(6)]
    writer.publish(entries[:2])
    # Anchored in the very block that revokes the agent (the anchor ordered first): the contract
    # accepted it, but the agent's window had closed in that block.
    w3 = governor.w3
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        staged = writer.stage(entries[2:4])
        anchor_tx = writer.send(staged)
        revoke = governor.encode("proposeRevokeAgent", w3.to_checksum_address(writer.agent))
        revoke_tx = governor.transactor.send(governor.address, revoke)
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    result = writer.ledger.wait_anchor(anchor_tx)
    writer.commit(staged)
    assert governor.transactor.wait(revoke_tx).block_number == result.block
    report = verify_agent(ctx, writer.agent)
    assert failed(report) == {"agent active at anchoring block"}
    assert failed(verify_record(ctx, entries[3].cid.encode())) == {"agent active at anchoring block"}
    assert verify_record(ctx, entries[1].cid.encode()).ok  # anchored while active: still valid
    # After the revocation the contract refuses outright; the record, though on IPFS, is not anchored.
    with pytest.raises(ContractError) as refused:
        writer.publish(entries[4:])
    assert refused.value.name == "NotActiveAgent"
    assert {"inclusion proof"} <= failed(verify_record(ctx, entries[4].cid.encode()))


def test_record_missing_from_the_middle(
    net_home: Home, network: NetworkDescriptor, ipfs: IpfsClient, ctx: VerifyContext, tmp_path: Path
) -> None:
    writer = new_writer(net_home, network, ipfs, tmp_path, "gap")
    entries = [writer.record(change(i, "g")) for i in range(6)]
    writer.publish(entries[:3] + entries[4:])  # seq 3 never published; the tree is built without it
    report = verify_agent(ctx, writer.agent)
    assert failed(report) == {"seq and prev links"}
    assert "position 3" in next(c.detail for c in report.failures())
    assert "inclusion proof" in failed(verify_record(ctx, entries[4].cid.encode()))


def test_two_records_swapped(
    net_home: Home, network: NetworkDescriptor, ipfs: IpfsClient, ctx: VerifyContext, tmp_path: Path
) -> None:
    writer = new_writer(net_home, network, ipfs, tmp_path, "swap")
    entries = [writer.record(change(i, "s")) for i in range(5)]
    writer.publish([entries[0], entries[1], entries[3], entries[2], entries[4]])
    report = verify_agent(ctx, writer.agent)
    assert failed(report) == {"seq and prev links"}
    detail = next(c.detail for c in report.failures())
    assert "record 2" in detail and "record 3" in detail
    assert {"inclusion proof", "signature"} <= failed(verify_record(ctx, entries[2].cid.encode()))


def test_manifest_lists_a_record_not_in_the_anchored_tree(
    net_home: Home, network: NetworkDescriptor, ipfs: IpfsClient, ctx: VerifyContext, tmp_path: Path
) -> None:
    writer = new_writer(net_home, network, ipfs, tmp_path, "sneak")
    entries = [writer.record(change(i, "m")) for i in range(4)]
    other = writer.record(change(9, "m"))  # a record the tree really holds instead of entry 2
    leaves = [merkle.leaf_hash(e.cid.digest) for e in entries]
    leaves[2] = merkle.leaf_hash(other.cid.digest)
    writer.publish(entries, leaves=leaves)
    assert failed(verify_agent(ctx, writer.agent)) == {"checkpoint roots rebuilt", "inclusion proof"}
    assert {"checkpoint roots rebuilt", "inclusion proof"} <= failed(verify_record(ctx, entries[2].cid.encode()))


def _proxy_address(ipfs_api: str) -> str:
    if ipfs_api.startswith("http"):
        target = urlsplit(ipfs_api)
        return f"http://{target.hostname}:{target.port}"
    parts = ipfs_api.strip("/").split("/")
    return f"http://{parts[1]}:{parts[3]}"


def test_ipfs_daemon_returning_wrong_bytes(
    honest: tuple[LogWriter, list[Entry], Path], network: NetworkDescriptor
) -> None:
    from test_ipfs_client import TamperingProxy

    _, entries, _ = honest
    proxy = TamperingProxy(_proxy_address(network.ipfs_api))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        liar = f"http://127.0.0.1:{proxy.server_address[1]}"
        with VerifyContext(network.rpc_url, network.contract, ipfs_api=liar) as lied_to:
            report = verify_record(lied_to, entries[4].cid.encode())
            assert failed(report) == {"blocks match CIDs"}
            assert "wrong bytes" in report.failures()[0].detail
            assert {"blocks match CIDs"} <= failed(verify_agent(lied_to, honest[0].agent))
        assert proxy.tampered_calls >= 2
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=5)


def test_forged_inclusion_proof(
    honest: tuple[LogWriter, list[Entry], Path], ctx: VerifyContext, tmp_path: Path
) -> None:
    writer, entries, bundle = honest
    with bundle.open("rb") as handle:
        roots, sections = read_car(handle)
        blocks = dict(sections)
    root_wire = dagcbor.decode(blocks[roots[0]])
    assert isinstance(root_wire, dict)
    (proof_cid,) = root_wire["proofs"]
    proofs = dagcbor.decode(blocks[proof_cid])
    assert isinstance(proofs, dict)
    position, path = proofs["records"][4]
    path = bytes(b ^ 0xFF for b in path[:32]) + path[32:]
    proofs["records"][4][1] = path
    forged_proofs = dagcbor.encode(proofs)
    forged_proof_cid = CID.for_block(DAG_CBOR, forged_proofs)
    root_wire["proofs"] = [forged_proof_cid]
    forged_root = dagcbor.encode(root_wire)
    forged_root_cid = CID.for_block(DAG_CBOR, forged_root)
    blocks.pop(proof_cid)
    blocks.pop(roots[0])
    target = tmp_path / "forged-proof.car"
    with target.open("wb") as out:
        forged = [(forged_root_cid, forged_root), (forged_proof_cid, forged_proofs), *blocks.items()]
        write_car([forged_root_cid], forged, out)
    report = verify_bundle(ctx.chain, target)
    assert failed(report) == {"inclusion proof", "inclusion proof (contract verifyInclusion)"}
    assert all("record 4" in check.detail for check in report.failures())
    # The contract refuses the same forged proof.
    anchor = ctx.log(writer.agent).anchors[-1]
    leaf = merkle.leaf_hash(entries[position].cid.digest)
    hashes = [path[i : i + 32] for i in range(0, len(path), 32)]
    assert not ctx.chain.ledger.verify_inclusion(leaf, position, anchor.size, hashes, anchor.root)


def test_rewriting_history_is_refused_on_chain_and_caught_off_chain(
    honest: tuple[LogWriter, list[Entry], Path],
    network: NetworkDescriptor,
    ipfs: IpfsClient,
    ctx: VerifyContext,
    tmp_path: Path,
) -> None:
    writer, _, bundle = honest
    rewriter = LogWriter(LedgerClient(network.rpc_url, network.contract), ipfs, writer.account)
    rewritten = [rewriter.record(change(i, "x")) for i in range(8)]
    # Checkpoint 0 again, with other records: the slot is taken.
    with pytest.raises(ContractError) as exists:
        rewriter.publish(rewritten[:3])
    assert exists.value.name == "CheckpointExists"
    # A new checkpoint on top of a rewritten past: no consistency proof from the anchored root exists.
    staged = rewriter.stage(rewritten[:6])  # as long as the anchored log (6), other records
    rewriter.commit(staged)
    rewriter.checkpoint = 2
    with pytest.raises(ContractError) as inconsistent:
        rewriter.publish(rewritten[6:])
    assert inconsistent.value.name == "InvalidConsistencyProof"
    # An off-chain copy claiming the rewritten checkpoint 0 is caught against the chain.
    with bundle.open("rb") as handle:
        roots, sections = read_car(handle)
        blocks = dict(sections)
    root_wire = dagcbor.decode(blocks[roots[0]])
    assert isinstance(root_wire, dict)
    manifest = staged.manifest
    root_wire["checkpoints"][0] = {
        "index": 0, "size": manifest.size, "root": manifest.root, "manifest": manifest.cid,
    }
    forged_root = dagcbor.encode(root_wire)
    forged_cid = CID.for_block(DAG_CBOR, forged_root)
    extra = [(manifest.cid, manifest.encode()), *((e.cid, e.data) for e in rewritten[:6])]
    target = tmp_path / "rewritten.car"
    with target.open("wb") as out:
        write_car([forged_cid], [(forged_cid, forged_root), *extra, *blocks.items()], out)
    report = verify_bundle(ctx.chain, target)
    assert failed(report) == {"bundle matches the chain"}
    assert os.path.getsize(target) > 0


def test_anchored_manifest_that_is_not_a_manifest(
    net_home: Home, network: NetworkDescriptor, ipfs: IpfsClient, ctx: VerifyContext, tmp_path: Path
) -> None:
    writer = new_writer(net_home, network, ipfs, tmp_path, "nomanifest")
    entries = [writer.record(change(i, "n")) for i in range(3)]
    staged = writer.stage(entries)
    tree = staged.tree
    # The chain names a record block (stored, but no manifest) as the checkpoint's manifest.
    tx = writer.ledger.send_anchor(tree.size, tree.root(), entries[0].cid.to_bytes(), staged.proof, index=0)
    writer.ledger.wait_anchor(tx)
    report = verify_agent(ctx, writer.agent)
    assert {"manifest matches checkpoint", "checkpoint roots rebuilt", "blocks match CIDs"} <= failed(report)
    assert "inclusion proof" in failed(report)
    single = verify_record(ctx, entries[1].cid.encode())
    assert {"signature", "inclusion proof", "manifest matches checkpoint"} <= failed(single)


# ------------------------------------------------------------------ issue 14: what an auditor found


@pytest.mark.parametrize("kind", ["raw", "v0"])
def test_a_record_named_by_the_wrong_kind_of_cid_fails_every_verifier(
    net_home: Home, network: NetworkDescriptor, ipfs: IpfsClient, ctx: VerifyContext, tmp_path: Path, kind: str
) -> None:
    """The manifest names record 1 by a raw-codec CIDv1 or a CIDv0 with the right digest: refused, named."""
    writer = new_writer(net_home, network, ipfs, tmp_path, f"wrongcid-{kind}")
    entries = [writer.record(change(i, kind)) for i in range(3)]
    digest = entries[1].cid.digest
    wrong = CID(1, RAW, digest) if kind == "raw" else CID(0, DAG_PB, digest)
    cids = [e.cid for e in entries]
    cids[1] = wrong
    writer.publish(entries, cids=cids)  # Kubo keys blocks by digest: the wrong CID even fetches the bytes
    report = verify_agent(ctx, writer.agent)
    assert "manifest matches checkpoint" in failed(report)
    detail = next(c.detail for c in report.failures() if c.name == "manifest matches checkpoint")
    assert "manifest record 1 (log position 1)" in detail and "CIDv1 dag-cbor" in detail
    assert not verify_record(ctx, entries[1].cid.encode()).ok
    assert not verify_record(ctx, entries[0].cid.encode()).ok  # the whole checkpoint is unusable

    # The same manifest in a hand-made bundle (the exporter refuses to make one): refused too.
    manifest = writer.manifests[-1]
    levels = _levels([merkle.leaf_hash(e.cid.digest) for e in entries])
    proofs = dagcbor.encode({"records": [[p, b"".join(_proof(levels, p))] for p in range(3)]})
    proofs_cid = CID.for_block(DAG_CBOR, proofs)
    anchor = ctx.chain.ledger.checkpoint(writer.agent, 0)
    root = dagcbor.encode({
        "type": "provanchor/audit-bundle", "v": 2, "chain_id": network.chain_id,
        "contract": network.contract.lower(), "agent": writer.agent, "scope": "log",
        "selection": {"location": None, "since": None, "until": None, "content": False},
        "checkpoints": [{"index": 0, "size": anchor.size, "root": anchor.root, "manifest": manifest.cid}],
        "proofs": [proofs_cid], "records": 3, "contents": [], "created": 1,
    })
    bundle = tmp_path / "wrong-cid.car"
    with bundle.open("wb") as out:
        write_car([CID.for_block(DAG_CBOR, root)], [
            (CID.for_block(DAG_CBOR, root), root), (manifest.cid, manifest.encode()), (proofs_cid, proofs),
            *((c, e.data) for c, e in zip(cids, entries, strict=True)),
        ], out)
    bundle_report = verify_bundle(ctx.chain, bundle)
    assert "manifest matches checkpoint" in failed(bundle_report)


def test_a_bundle_that_silently_lost_a_record_fails(
    honest: tuple[LogWriter, list[Entry], Path], ctx: VerifyContext, tmp_path: Path
) -> None:
    """Drop a record block and its proof entry, re-encode the proof and (unsigned) root blocks: caught."""
    _, entries, bundle = honest
    victim = entries[4]
    with bundle.open("rb") as handle:
        roots, sections = read_car(handle)
        blocks = dict(sections)
    root_wire = dagcbor.decode(blocks.pop(roots[0]))
    assert root_wire["scope"] == "log"
    new_proof_blocks = []
    for proof_cid in root_wire["proofs"]:
        wire = dagcbor.decode(blocks.pop(proof_cid))
        wire["records"] = [entry for entry in wire["records"] if entry[0] != 4]
        data = dagcbor.encode(wire)
        new_proof_blocks.append((CID.for_block(DAG_CBOR, data), data))
    del blocks[victim.cid]
    root_wire["proofs"] = [cid for cid, _ in new_proof_blocks]
    root_wire["records"] -= 1
    root = dagcbor.encode(root_wire)
    forged = tmp_path / "lost.car"
    with forged.open("wb") as out:
        root_cid = CID.for_block(DAG_CBOR, root)
        write_car([root_cid], [(root_cid, root), *new_proof_blocks, *blocks.items()], out)
    report = verify_bundle(ctx.chain, forged)
    assert failed(report) == {"bundle complete"}
    assert "4" in next(c.detail for c in report.failures())
    assert report.facts["complete"] == "failed"
