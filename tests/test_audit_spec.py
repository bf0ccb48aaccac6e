"""docs/audit-spec.md is enough: a real audit bundle decoded and checked by code written from it alone.

Nothing from provanchor decodes here: the CAR, the DAG-CBOR, the CIDs, the
RFC 9162 tree, the EIP-712 digest and the chain calls (raw JSON-RPC, ABI by
hand) are the few lines below, using only hashlib, pycryptodome's Keccak and
coincurve. provanchor only makes the bundle, as a data holder would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import coincurve
import pytest
import requests
from Crypto.Hash import keccak as _keccak

from provanchor.home import Home
from provanchor.localnet.devagents import enroll_agent

PASSWORD = "spec-test"
CLI = [sys.executable, "-m", "provanchor.cli.main"]


def keccak(data: bytes) -> bytes:
    return bytes(_keccak.new(digest_bits=256, data=data).digest())


# ------------------------------------------------------------------ spec §1: encodings, written from the spec


class Link:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.version, at = varint(raw, 0)
        self.codec, at = varint(raw, at)
        hash_code, at = varint(raw, at)
        length, at = varint(raw, at)
        assert (hash_code, length) == (0x12, 32) and len(raw) == at + 32, "sha2-256, 32 bytes"
        self.digest = raw[at:]

    def text(self) -> str:
        return "b" + base64.b32encode(self.raw).decode().lower().rstrip("=")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Link) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def cbor(data: bytes) -> Any:
    value, end = _item(data, 0)
    assert end == len(data), "one item, nothing after it"
    return value


def _item(data: bytes, at: int) -> tuple[Any, int]:
    major, info = data[at] >> 5, data[at] & 0x1F
    at += 1
    if info < 24:
        arg = info
    else:
        width = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        arg = int.from_bytes(data[at : at + width], "big")
        at += width
    if major == 0:
        return arg, at
    if major == 1:
        return -1 - arg, at
    if major in (2, 3):
        raw = data[at : at + arg]
        return (raw if major == 2 else raw.decode("utf-8")), at + arg
    if major == 4:
        items = []
        for _ in range(arg):
            item, at = _item(data, at)
            items.append(item)
        return items, at
    if major == 5:
        out: dict[str, Any] = {}
        for _ in range(arg):
            key, at = _item(data, at)
            out[key], at = _item(data, at)
        return out, at
    if major == 6:
        assert arg == 42, "the only tag is 42, a link"
        raw, at = _item(data, at)
        assert raw[0] == 0
        return Link(raw[1:]), at
    return {20: False, 21: True, 22: None}[arg], at


def read_car(data: bytes) -> tuple[list[Link], dict[Link, bytes]]:
    length, at = varint(data, 0)
    header = cbor(data[at : at + length])
    at += length
    assert header["version"] == 1
    blocks: dict[Link, bytes] = {}
    while at < len(data):
        length, at = varint(data, at)
        section = data[at : at + length]
        at += length
        _version, p = varint(section, 0)
        _codec, p = varint(section, p)
        _, p = varint(section, p)
        size, p = varint(section, p)
        link = Link(section[: p + size])
        block = section[p + size :]
        assert hashlib.sha256(block).digest() == link.digest, "every block hashes to its CID"
        blocks[link] = block
    return header["roots"], blocks


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node(tree_root(leaves[:split]), tree_root(leaves[split:]))


def check_inclusion(leaf_hash: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# ------------------------------------------------------------------ spec §4: the chain, by raw JSON-RPC


def rpc(url: str, method: str, params: list[Any]) -> Any:
    reply = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=30)
    body = reply.json()
    assert "error" not in body, body
    return body["result"]


def chain_checkpoint(url: str, contract: str, agent: str, index: int) -> tuple[int, bytes]:
    selector = keccak(b"checkpoint(address,uint256)")[:4]
    data = selector + bytes.fromhex(agent[2:]).rjust(32, b"\0") + index.to_bytes(32, "big")
    out = bytes.fromhex(rpc(url, "eth_call", [{"to": contract, "data": "0x" + data.hex()}, "latest"])[2:])
    return int.from_bytes(out[:32], "big"), out[32:64]


def anchored_events(url: str, contract: str, agent: str) -> list[tuple[int, int, bytes, bytes]]:
    topic0 = "0x200aa17cbe9daf1456b1addf336e35a96348011843a6a295e4737c040bd30aba"
    assert "0x" + keccak(b"Anchored(address,uint256,uint256,bytes32,bytes)").hex() == topic0
    logs = rpc(url, "eth_getLogs", [{"address": contract, "fromBlock": "0x0", "toBlock": "latest",
                                     "topics": [topic0, "0x" + agent[2:].rjust(64, "0")]}])
    out = []
    for log in logs:
        index = int(log["topics"][2], 16)
        data = bytes.fromhex(log["data"][2:])
        size, root = int.from_bytes(data[:32], "big"), data[32:64]
        offset = int.from_bytes(data[64:96], "big")
        length = int.from_bytes(data[offset : offset + 32], "big")
        out.append((index, size, root, data[offset + 32 : offset + 32 + length]))
    return out


def eip712_signer(chain_id: int, contract: str, record_hash: bytes, signature: bytes) -> str:
    domain_type = keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    separator = keccak(domain_type + keccak(b"provanchor") + keccak(b"1") + chain_id.to_bytes(32, "big")
                       + bytes.fromhex(contract[2:]).rjust(32, b"\0"))
    struct = keccak(keccak(b"ProvenanceRecord(bytes32 recordHash)") + record_hash)
    digest = keccak(b"\x19\x01" + separator + struct)
    assert signature[64] in (27, 28)
    public = coincurve.PublicKey.from_signature_and_message(signature[:64] + bytes([signature[64] - 27]), digest,
                                                            hasher=None)
    return "0x" + keccak(public.format(compressed=False)[1:])[12:].hex()


# ------------------------------------------------------------------ the test


@pytest.fixture(scope="module")
def bundle(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("spec")
    home, identity = enroll_agent(net_home, root / "home", "spec", PASSWORD)
    env = {**os.environ, "PROVANCHOR_HOME": str(home.root), "PROVANCHOR_PASSWORD": PASSWORD}
    for i in range(7):
        target = root / f"f{i}.txt"
        target.write_text(f"content {i}\n")
        subprocess.run([*CLI, "record", "--location", str(target), "--op", "create",
                        *(["--flush"] if i in (2, 6) else [])], env=env, check=True, capture_output=True)
    out = root / "spec.car"
    subprocess.run([*CLI, "audit", "export", "--agent", identity.address, "--with-content", "-o", str(out)],
                   env=env, check=True, capture_output=True)
    return out, json.loads((home.root / "network.json").read_text())


def test_a_bundle_decodes_and_verifies_from_the_spec_alone(bundle: tuple[Path, dict[str, Any]]) -> None:
    path, network = bundle
    roots, blocks = read_car(path.read_bytes())
    assert len(roots) == 1
    root = cbor(blocks[roots[0]])
    assert set(root) == {"type", "v", "chain_id", "contract", "agent", "scope", "selection", "checkpoints",
                         "proofs", "records", "contents", "created"}
    assert (root["type"], root["v"], root["scope"]) == ("provanchor/audit-bundle", 2, "log")
    assert root["chain_id"] == network["chain_id"] and root["contract"] == network["contract"].lower()
    agent = root["agent"]

    # §4: the checkpoints are the chain's Anchored events, the manifest CIDs as binary CIDs.
    events = anchored_events(network["rpc_url"], network["contract"], agent)
    assert len(events) >= len(root["checkpoints"]) == 2
    for claimed, (index, size, anchored_root, manifest_cid) in zip(root["checkpoints"], events, strict=False):
        assert (claimed["index"], claimed["size"], claimed["root"]) == (index, size, anchored_root)
        assert claimed["manifest"].raw == manifest_cid and claimed["manifest"].codec == 0x71
        assert chain_checkpoint(network["rpc_url"], network["contract"], agent, index) == (size, anchored_root)

    # §3: the manifests list every record in seq order with its signature; §1: the leaves rebuild the roots.
    records: list[Link] = []
    signatures: list[bytes] = []
    for checkpoint in root["checkpoints"]:
        manifest = cbor(blocks[checkpoint["manifest"]])
        assert (manifest["type"], manifest["v"], manifest["agent"]) == ("provanchor/batch", 1, agent)
        assert manifest["start"] == len(records) and manifest["size"] == len(records) + len(manifest["records"])
        assert all(link.version == 1 and link.codec == 0x71 for link in manifest["records"])
        records += manifest["records"]
        signatures += manifest["signatures"]
        assert tree_root([leaf(link.digest) for link in records]) == manifest["root"] == checkpoint["root"]
        if checkpoint["index"] > 0:
            assert manifest["prev"]["manifest"] == root["checkpoints"][checkpoint["index"] - 1]["manifest"].text()

    # §6: proof blocks name positions; each proof reaches the last checkpoint's root on chain.
    last = root["checkpoints"][-1]
    proven = set()
    for proof_link in root["proofs"]:
        for position, proof in cbor(blocks[proof_link])["records"]:
            hashes = [proof[i : i + 32] for i in range(0, len(proof), 32)]
            assert check_inclusion(leaf(records[position].digest), position, last["size"], hashes, last["root"])
            proven.add(position)
    assert proven == set(range(last["size"])) == set(range(root["records"]))  # scope "log": every record

    # §2: each record decodes, sits at its seq, links prev, carries its content; its signature is the agent's.
    previous = None
    for seq, link in enumerate(records):
        record = cbor(blocks[link])
        assert (record["v"], record["agent"], record["seq"], record["prev"]) == (2, agent, seq, previous)
        assert eip712_signer(network["chain_id"], network["contract"], link.digest, signatures[seq]) == agent
        content = record["after"]["cid"]
        assert content in root["contents"] and content.codec in (0x55, 0x70)
        if content.codec == 0x55:
            assert hashlib.sha256(blocks[content]).digest() == record["after"]["sha256"]
        previous = link.digest
