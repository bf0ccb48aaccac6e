"""Snapshot trees against a real IPFS daemon: same root as `ipfs add -r`, restorable, safe, incremental.

The daemon is the oracle for the directory encoding: if our dag-pb directory
nodes (link order, Tsize, Data) differed in any byte from the importer's, the
root CIDs would differ.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipfshttpclient
import pytest

from provanchor.formats import dagcbor, merkle
from provanchor.formats.cid import CID, DAG_PB, RAW
from provanchor.formats.snapshot_manifest import entry_to_dict
from provanchor.formats.unixfs import cid_for_file, decode_pbnode, decode_unixfs
from provanchor.ipfs.client import IpfsClient, api_multiaddr
from provanchor.localnet.processes import IpfsService
from provanchor.snapshot import (
    FileCache,
    ManifestError,
    SnapshotManifest,
    UnsafeEntry,
    build_tree,
    decode_snapshot_manifest,
    state_root,
)

pytestmark = pytest.mark.filterwarnings("ignore:The 'strict' parameter is no longer needed:FutureWarning")


@pytest.fixture(scope="module")
def ipfs_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    service = IpfsService(tmp_path_factory.mktemp("snapshot-ipfs-home"))
    addr = service.start()
    try:
        yield addr
    finally:
        service.stop()


@pytest.fixture(scope="module")
def api(ipfs_addr: str) -> Iterator[Any]:
    client = ipfshttpclient.Client(api_multiaddr(ipfs_addr), timeout=120)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def client(ipfs_addr: str) -> Iterator[IpfsClient]:
    with IpfsClient(ipfs_addr, timeout=60) as c:
        yield c


def make_small_tree(root: Path) -> None:
    """0 B, 1 B and 300 KB files, nested and empty directories, names that sort differently as str/bytes."""
    rng = random.Random(7)
    root.mkdir()
    (root / "empty.txt").write_bytes(b"")
    (root / "one").write_bytes(b"x")
    (root / "big.bin").write_bytes(rng.randbytes(300_000))
    (root / "B-upper").write_bytes(b"upper case sorts first")
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "a.txt").write_bytes(b"hello\n")
    (root / "sub" / "deeper" / "z.bin").write_bytes(rng.randbytes(1000))
    (root / "sub" / "deeper" / "é-unicode").write_bytes(b"utf-8 name")
    (root / "emptydir").mkdir()


def daemon_root(api: Any, path: Path) -> str:
    """The root CID `ipfs add -r --cid-version=1 --raw-leaves` reports for ``path``."""
    replies = api.add(str(path), recursive=True, cid_version=1, raw_leaves=True, chunker="size-262144")
    replies = replies if isinstance(replies, list) else [replies]
    top = [r for r in replies if r["Name"] == path.name]
    assert len(top) == 1, replies
    # Compare parsed CIDs, not strings: a daemon may print another multibase.
    return CID.parse(str(top[0]["Hash"])).encode()


def test_root_cid_matches_daemon_add(tmp_path: Path, api: Any) -> None:
    tree_dir = tmp_path / "tree"
    make_small_tree(tree_dir)
    result = build_tree(tree_dir)
    assert result.root.version == 1 and result.root.codec == DAG_PB
    assert result.root.encode() == daemon_root(api, tree_dir)

    # Per-file CIDs agree with the single-file importer and the entries are complete and sorted.
    paths = [e.path for e in result.files]
    assert paths == sorted(paths, key=lambda p: p.encode())
    assert set(paths) == {
        "B-upper",
        "big.bin",
        "empty.txt",
        "emptydir",
        "one",
        "sub",
        "sub/a.txt",
        "sub/deeper",
        "sub/deeper/z.bin",
        "sub/deeper/é-unicode",
    }
    by_path = {e.path: e for e in result.files}
    big = by_path["big.bin"]
    assert big.kind == "file" and big.size == 300_000
    assert big.cid is not None and big.cid.encode() == cid_for_file(tree_dir / "big.bin")
    assert by_path["one"].cid is not None and by_path["one"].cid.codec == RAW
    assert by_path["sub/deeper"].kind == "dir" and by_path["sub/deeper"].sha256 is None

    # The root node is a plain UnixFS directory with name-sorted links.
    blocks = dict(result.iter_blocks())
    node = decode_pbnode(blocks[result.root])
    assert node.data is not None and decode_unixfs(node.data).type == 1
    assert [link.name for link in node.links] == ["B-upper", "big.bin", "empty.txt", "emptydir", "one", "sub"]


def test_upload_and_fetch_back(tmp_path: Path, client: IpfsClient) -> None:
    tree_dir = tmp_path / "tree"
    make_small_tree(tree_dir)
    result = build_tree(tree_dir)
    client.put_blocks(list(result.iter_blocks()), pin_roots=[result.root])
    assert client.is_pinned(result.root)
    by_path = {e.path: e for e in result.files}
    for rel in ("big.bin", "sub/deeper/z.bin", "empty.txt"):
        cid = by_path[rel].cid
        assert cid is not None
        assert client.cat(cid) == (tree_dir / rel).read_bytes()


def test_symlinks_recorded_not_followed(tmp_path: Path, api: Any) -> None:
    tree_dir = tmp_path / "tree"
    tree_dir.mkdir()
    (tree_dir / "real.txt").write_bytes(b"real")
    (tree_dir / "passwd").symlink_to("/etc/passwd")
    (tree_dir / "loop").symlink_to("loop")
    (tree_dir / "dirlink").symlink_to("/etc")
    cache = FileCache(tmp_path / "cache.sqlite")
    result = build_tree(tree_dir, cache)
    by_path = {e.path: e for e in result.files}
    assert set(by_path) == {"real.txt", "passwd", "loop", "dirlink"}
    assert by_path["passwd"].kind == "symlink" and by_path["passwd"].target == "/etc/passwd"
    assert by_path["dirlink"].target == "/etc" and by_path["loop"].target == "loop"
    assert by_path["passwd"].sha256 is None and by_path["passwd"].size == len("/etc/passwd")
    # Only real.txt was read: /etc/passwd's bytes are in no block.
    assert cache.stats.files_read == 1 and cache.stats.bytes_read == 4
    passwd = Path("/etc/passwd").read_bytes()
    assert not any(passwd in block for _, block in result.iter_blocks())
    # The symlink node is a UnixFS Symlink carrying the target.
    link_cid = by_path["passwd"].cid
    assert link_cid is not None
    symlink = decode_unixfs(decode_pbnode(dict(result.iter_blocks())[link_cid]).data or b"")
    assert symlink.type == 4 and symlink.data == b"/etc/passwd"
    cache.close()


def test_unsafe_entries_refused(tmp_path: Path) -> None:
    tree_dir = tmp_path / "tree"
    tree_dir.mkdir()
    os.mkfifo(tree_dir / "fifo")
    with pytest.raises(UnsafeEntry) as info:
        build_tree(tree_dir)
    assert info.value.path == "fifo"

    bad_dir = tmp_path / "bad"
    (bad_dir / "d").mkdir(parents=True)
    bad_name = os.fsencode(bad_dir / "d") + b"/\xff-not-utf8"
    with open(bad_name, "wb") as handle:
        handle.write(b"x")
    with pytest.raises(UnsafeEntry) as info:
        build_tree(bad_dir)
    assert info.value.path is not None and info.value.path.startswith("d/")


def test_incremental_reads_only_changed_file(tmp_path: Path) -> None:
    tree_dir = tmp_path / "tree"
    for i in range(50):
        sub = tree_dir / f"dir{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file{i:02d}.dat").write_bytes(random.Random(i).randbytes(1000 + i))
    time.sleep(1.2)  # past the racy window: these files may be trusted from the cache
    cache_path = tmp_path / "cache.sqlite"

    with FileCache(cache_path) as cache:
        first = build_tree(tree_dir, cache)
        assert (first.stats.files_read, first.stats.files_reused) == (50, 0)
        cache.commit()

    changed = tree_dir / "dir3" / "file13.dat"
    changed.write_bytes(b"changed content")
    with FileCache(cache_path) as cache:  # reopened: the cache persisted on disk
        second = build_tree(tree_dir, cache)
        stats = (second.stats.files_read, second.stats.files_reused, second.stats.bytes_read)
        assert stats == (1, 49, len(b"changed content"))
        assert cache.stats.files_read == 1
        cache.commit()

    assert second.root != first.root
    new_file = {e.path: e for e in second.files}["dir3/file13.dat"]
    dir3 = {e.path: e for e in second.files}["dir3"]
    # Blocks: the changed file (one raw leaf), dir3 and the root; nothing else.
    assert {cid for cid, _ in second.iter_blocks()} == {new_file.cid, dir3.cid, second.root}
    # Reused entries are identical to the first build's.
    old = {e.path: e for e in first.files}
    for entry in second.files:
        if entry.path not in ("dir3", "dir3/file13.dat"):
            assert entry == old[entry.path]
    # The result is the same as a from-scratch build.
    assert build_tree(tree_dir).root == second.root


def test_uncommitted_build_is_not_trusted(tmp_path: Path) -> None:
    tree_dir = tmp_path / "tree"
    tree_dir.mkdir()
    (tree_dir / "f").write_bytes(b"data")
    time.sleep(1.2)
    with FileCache(tmp_path / "c.sqlite") as cache:
        build_tree(tree_dir, cache)
        cache.discard()  # e.g. the upload failed
        again = build_tree(tree_dir, cache)
        assert again.stats.files_read == 1 and len(list(again.iter_blocks())) == 2
        cache.commit()
        third = build_tree(tree_dir, cache)
        assert (third.stats.files_read, third.stats.files_reused) == (0, 1)
        assert list(third.iter_blocks()) == []


def test_recently_written_file_is_read_again(tmp_path: Path) -> None:
    """A file modified within the racy window is never trusted from the cache."""
    tree_dir = tmp_path / "tree"
    tree_dir.mkdir()
    (tree_dir / "f").write_bytes(b"data")
    with FileCache(tmp_path / "c.sqlite") as cache:
        build_tree(tree_dir, cache)
        cache.commit()
        assert build_tree(tree_dir, cache).stats.files_read == 1


def test_manifest_round_trip_and_state_root(tmp_path: Path) -> None:
    tree_dir = tmp_path / "tree"
    make_small_tree(tree_dir)
    (tree_dir / "link").symlink_to("sub/a.txt")
    result = build_tree(tree_dir)
    manifest = SnapshotManifest.from_tree(
        "file:///data/tree", result, time=1_700_000_000_000_000_000, agent="0xabc", checkpoint=7
    )
    data = manifest.encode()
    decoded = decode_snapshot_manifest(data)
    assert decoded == manifest
    assert decoded.encode() == data
    assert dagcbor.decode(data)["type"] == "provanchor/snapshot"  # type: ignore[index]
    root = state_root(result.files)
    assert len(root) == 32 and decoded.state_root() == root
    leaves = [merkle.leaf_hash(dagcbor.encode(entry_to_dict(e))) for e in decoded.files]
    assert merkle.root(leaves) == root
    # Order-independent input, content-dependent output.
    assert state_root(list(reversed(result.files))) == root
    assert state_root(result.files[1:]) != root
    no_checkpoint = SnapshotManifest(manifest.location, manifest.root, 1, "a", None, manifest.files)
    assert decode_snapshot_manifest(no_checkpoint.encode()).checkpoint is None


def _manifest_with(paths: list[str]) -> bytes:
    cid = CID.for_block(RAW, b"x")
    files = [
        {"path": p, "kind": "file", "size": 1, "sha256": b"\x00" * 32, "mode": 0o644, "cid": cid, "target": None}
        for p in paths
    ]
    return dagcbor.encode(
        {
            "type": "provanchor/snapshot",
            "v": 1,
            "location": "file:///x",
            "root": CID.for_block(DAG_PB, b"\x0a\x02\x08\x01"),
            "time": 1,
            "agent": "a",
            "checkpoint": None,
            "files": files,
        }
    )


@pytest.mark.parametrize("bad", ["../x", "/etc/x", "a//b", "", "a/../../x", "./x", "a/", "a\x00b"])
def test_malicious_manifest_paths_refused(bad: str) -> None:
    with pytest.raises(ManifestError) as info:
        decode_snapshot_manifest(_manifest_with([bad]))
    assert info.value.field == "files[0].path"


def test_manifest_structure_refused() -> None:
    assert decode_snapshot_manifest(_manifest_with(["a", "b"])).files[1].path == "b"
    with pytest.raises(ManifestError) as info:
        decode_snapshot_manifest(_manifest_with(["b", "a"]))
    assert info.value.field == "files[1].path"
    with pytest.raises(ManifestError) as info:
        decode_snapshot_manifest(_manifest_with(["a/b"]))  # parent not listed as a directory
    assert info.value.field == "files[0].path"
    obj = dagcbor.decode(_manifest_with(["a"]))
    assert isinstance(obj, dict)
    obj["files"][0]["sha256"] = b"short"
    with pytest.raises(ManifestError) as info:
        decode_snapshot_manifest(dagcbor.encode(obj))
    assert info.value.field == "files[0].sha256"
    obj = dagcbor.decode(_manifest_with(["a"]))
    assert isinstance(obj, dict)
    obj["extra"] = 1
    with pytest.raises(ManifestError) as info:
        decode_snapshot_manifest(dagcbor.encode(obj))
    assert info.value.field == "manifest"
