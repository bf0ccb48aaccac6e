"""The decoders that read untrusted bytes, as fuzz targets, with valid seeds and the rule they must keep.

Shared by the bounded hypothesis run in the test suite (tests/test_fuzz_decoders.py)
and the coverage-guided atheris run (benchmarks/fuzz.py). The rule, from issue 14:
given any bytes, a decoder returns a decoded value or raises one of provanchor's
typed errors (`ProvanchorError`). Anything else (IndexError, TypeError, a
RecursionError, a hang) is a crash; each one found is kept as a file under
tests/fuzz_corpus/<target>/ and replayed by the test suite forever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provanchor.errors import ProvanchorError
from provanchor.formats import dagcbor
from provanchor.formats.car import car_bytes, read_car
from provanchor.formats.cid import CID, DAG_CBOR, DAG_PB, RAW
from provanchor.formats.manifest import decode_manifest
from provanchor.formats.snapshot_manifest import decode_snapshot_manifest
from provanchor.formats.unixfs import decode_pbnode, decode_unixfs, iter_bytes_blocks
from provanchor.records import (
    Capture,
    CaptureBackend,
    CodeFile,
    CodeIdentity,
    ContentRef,
    Op,
    Record,
    decode_record,
    file_location,
)
from provanchor.verify.bundle import decode_bundle_root, decode_proof_block, read_bundle

CORPUS = Path(__file__).with_name("fuzz_corpus")

_AGENT = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
_HOST = "3f2a9c0d5e6b4a1f8c7d2e1b0a9f8e7d"
_H = [hashlib.sha256(bytes([i])).digest() for i in range(4)]


@dataclass(frozen=True)
class Target:
    """One decoder: `run(data)` decodes fully (every lazy part consumed); `seeds` are valid inputs."""

    name: str
    run: Callable[[bytes], object]
    seeds: Callable[[], list[bytes]]


def check(target: Target, data: bytes) -> None:
    """Run one input; re-raise anything that is neither a value nor a typed provanchor error."""
    with contextlib.suppress(ProvanchorError):
        target.run(data)


# ------------------------------------------------------------------ seeds


def _record() -> Record:
    content = b"id,value\n1,42\n"
    return Record(
        agent=_AGENT,
        seq=7,
        prev=_H[3],
        time=1_700_000_000_123_456_789,
        user="alice",
        uid=1000,
        host=_HOST,
        location=file_location(_HOST, "/home/alice/data/clean.csv"),
        op=Op.WRITE,
        before=ContentRef(_H[1], 10),
        after=ContentRef(hashlib.sha256(content).digest(), len(content), CID.for_block(RAW, content)),
        code=CodeIdentity(
            exe=CodeFile("/usr/bin/python3.11", _H[1]),
            scripts=(CodeFile("/home/alice/prepare.py", _H[2]),),
            argv=("python3", "prepare.py"),
            image=None,
        ),
        pid=4242,
        run="run-1",
        capture=Capture(CaptureBackend.FANOTIFY, True),
        payload={"rows": 1, "tags": ["a", "b"], "blob": b"\x00\x01"},
    )


def _record_seeds() -> list[bytes]:
    record = _record()
    return [record.canonical, dataclasses.replace(record, seq=0, prev=None, before=None, payload=None).canonical]


def _manifest_wire(records: int = 2, prev: bool = True) -> dict[str, object]:
    cids = [CID(1, DAG_CBOR, _H[i % 4]) for i in range(records)]
    return {
        "type": "provanchor/batch",
        "v": 1,
        "agent": _AGENT,
        "chain_id": 31337,
        "contract": "0x" + "ab" * 20,
        "checkpoint": 1 if prev else 0,
        "start": 3 if prev else 0,
        "size": (3 if prev else 0) + records,
        "root": _H[0],
        "records": cids,
        "signatures": [bytes([27 + i % 2]) * 65 for i in range(records)],
        "prev": {"index": 0, "size": 3, "root": _H[1], "manifest": CID(1, DAG_CBOR, _H[2]).encode()} if prev else None,
    }


def _manifest_seeds() -> list[bytes]:
    return [dagcbor.encode(_manifest_wire()), dagcbor.encode(_manifest_wire(1, prev=False))]


def _snapshot_seeds() -> list[bytes]:
    def entry(path: str, kind: str, **extra: object) -> dict[str, object]:
        base: dict[str, object] = {"path": path, "kind": kind, "size": 0, "sha256": None, "mode": 0o755,
                                   "cid": None, "target": None}
        base.update(extra)
        return base

    files = [
        entry("d", "dir"),
        entry("d/a.txt", "file", size=3, sha256=_H[0], mode=0o644, cid=CID(1, RAW, _H[0])),
        entry("d/link", "symlink", target="a.txt", size=5, mode=0o777),
    ]
    wire = {
        "type": "provanchor/snapshot",
        "v": 1,
        "location": f"file://{_HOST}/srv/data",
        "root": CID(1, DAG_PB, _H[1]),
        "time": 1_700_000_000_000_000_000,
        "agent": _AGENT,
        "checkpoint": 2,
        "files": files,
    }
    return [dagcbor.encode(wire)]


def _blocks() -> list[tuple[CID, bytes]]:
    record = _record().canonical
    return [(CID.for_block(DAG_CBOR, record), record), *iter_bytes_blocks(b"x" * 300_000)]


def _car_seeds() -> list[bytes]:
    blocks = _blocks()
    return [car_bytes([blocks[0][0]], blocks[:3]), car_bytes([], [])]


def _bundle_root_wire() -> dict[str, object]:
    return {
        "type": "provanchor/audit-bundle",
        "v": 2,
        "chain_id": 31337,
        "contract": "0x" + "ab" * 20,
        "agent": _AGENT,
        "scope": "log",
        "selection": {"location": None, "since": None, "until": None, "content": False},
        "checkpoints": [{"index": 0, "manifest": CID(1, DAG_CBOR, _H[0]), "size": 2, "root": _H[3]}],
        "proofs": [CID(1, DAG_CBOR, _H[1])],
        "records": 2,
        "contents": [CID(1, RAW, _H[2])],
        "created": 1_700_000_000,
    }


def _bundle_root_seeds() -> list[bytes]:
    proof = dagcbor.encode({"records": [[0, _H[0] + _H[1]], [1, b""]]})
    return [dagcbor.encode(_bundle_root_wire()), proof]


def _bundle_seeds() -> list[bytes]:
    root = dagcbor.encode(_bundle_root_wire())
    proof = dagcbor.encode({"records": [[0, _H[0]], [1, _H[1]]]})
    blocks = [(CID.for_block(DAG_CBOR, root), root), (CID.for_block(DAG_CBOR, proof), proof), *_blocks()[:2]]
    return [car_bytes([blocks[0][0]], blocks)]


def _unixfs_seeds() -> list[bytes]:
    return [block for cid, block in _blocks()[1:] if cid.codec == DAG_PB][:3] or [b"\x0a\x02\x08\x02"]


def _dagcbor_seeds() -> list[bytes]:
    return [
        dagcbor.encode({"a": [1, -2, b"x", "y", None, True, {"b": CID(1, RAW, _H[0])}], "big": 2**64 - 1}),
        _record().canonical,
    ]


# ------------------------------------------------------------------ what each target decodes


def _run_car(data: bytes) -> object:
    roots, sections = read_car(data)
    return roots, [cid for cid, _ in sections]


def _run_bundle(data: bytes) -> object:
    root, source, broken = read_bundle(io.BytesIO(data))
    block = source.find(root)
    if broken is None and block is not None:
        return decode_bundle_root(block)
    return root


def _run_bundle_root(data: bytes) -> object:
    """A bundle's root block, and the same bytes read as a proof block (both are DAG-CBOR maps)."""
    results: list[object] = []
    for decoder in (decode_bundle_root, decode_proof_block):
        try:
            results.append(decoder(data))
        except ProvanchorError as exc:
            results.append(exc)
    return results


def _run_unixfs(data: bytes) -> object:
    node = decode_pbnode(data)
    return node, decode_unixfs(node.data) if node.data is not None else None


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("record", decode_record, _record_seeds),
        Target("manifest", decode_manifest, _manifest_seeds),
        Target("snapshot-manifest", decode_snapshot_manifest, _snapshot_seeds),
        Target("car", _run_car, _car_seeds),
        Target("bundle", _run_bundle, _bundle_seeds),
        Target("bundle-root", _run_bundle_root, _bundle_root_seeds),
        Target("unixfs", _run_unixfs, _unixfs_seeds),
        Target("dag-cbor", dagcbor.decode, _dagcbor_seeds),
    )
}


def corpus(name: str) -> list[Path]:
    """The kept inputs of one target: crashes found once (regressions) and interesting seeds."""
    folder = CORPUS / name
    return sorted(path for path in folder.iterdir() if path.is_file()) if folder.is_dir() else []
