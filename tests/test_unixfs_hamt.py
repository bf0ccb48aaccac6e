"""Large directories are sharded into HAMTs exactly as Kubo shards them, checked against Kubo itself.

`ipfs add -r --cid-version=1 --raw-leaves --only-hash` runs with a private
repository and no daemon; the snapshot builder's root must be the same CID
below, at and above the sharding threshold, with collisions deep enough to
need child shards, odd names, and HAMTs nested in ordinary directories and
the other way round.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from provanchor.formats.hamt import HAMT_THRESHOLD, murmur3_x64_64, murmur3_x64_128, needs_sharding
from provanchor.formats.unixfs import UNIXFS_DIRECTORY, UNIXFS_HAMT_SHARD, decode_pbnode, decode_unixfs
from provanchor.localnet.tools import find_ipfs
from provanchor.snapshot.tree import build_tree

# Names of this length make each entry cost exactly 64 bytes (28 + a 36-byte CIDv1) in Kubo's estimate.
_NAME_LEN = 28
_PER_ENTRY = _NAME_LEN + 36
_AT_THRESHOLD = HAMT_THRESHOLD // _PER_ENTRY  # 4,096 entries: exactly 256 KiB, still a plain directory


def kubo_root(tmp_path: Path, tree: Path) -> str:
    repo = tmp_path / "kubo-repo"
    env = {**os.environ, "IPFS_PATH": str(repo)}
    ipfs = str(find_ipfs().path)
    if not repo.exists():
        subprocess.run([ipfs, "init", "--profile", "test", "--empty-repo"], env=env, check=True,
                       capture_output=True)
    done = subprocess.run(
        [ipfs, "add", "-r", "-Q", "--only-hash", "--cid-version=1", "--raw-leaves", str(tree)],
        env=env, check=True, capture_output=True, text=True,
    )
    return done.stdout.strip()


def names(count: int, prefix: str = "f") -> list[str]:
    return [f"{prefix}{i:0{_NAME_LEN - len(prefix)}d}" for i in range(count)]


def make(directory: Path, entries: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in entries:
        (directory / name).write_bytes(b"")
    return directory


def test_murmur3_matches_the_reference_vectors() -> None:
    # MurmurHash3_x64_128 with seed 0 (reference implementation's outputs).
    assert murmur3_x64_128(b"") == (0, 0)
    assert murmur3_x64_128(b"hello") == (0xCBD8A7B341BD9B02, 0x5B1E906A48AE1D19)
    assert murmur3_x64_64(b"hello") == bytes.fromhex("cbd8a7b341bd9b02")
    assert murmur3_x64_128(b"The quick brown fox jumps over the lazy dog") == (
        0xE34BBC7BBC071B6C,
        0x7A433CA9C49A9347,
    )


@pytest.mark.parametrize("count", [_AT_THRESHOLD, _AT_THRESHOLD + 1])
def test_the_threshold_is_greater_than_256_kib(tmp_path: Path, count: int) -> None:
    tree = make(tmp_path / "t", names(count))
    result = build_tree(tree)
    assert result.root.encode() == kubo_root(tmp_path, tree)
    root = decode_pbnode(dict(result.blocks)[result.root])
    kind = decode_unixfs(root.data or b"").type
    assert kind == (UNIXFS_HAMT_SHARD if count > _AT_THRESHOLD else UNIXFS_DIRECTORY)


def test_collisions_nest_shards_and_odd_names_hash_as_bytes(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    make(tree, names(9000))  # 9,000 entries in 256 slots: every slot collides, child shards everywhere
    make(tree, ["é-unicode-name-é", "x" * 200, "a b c", "-dash"])
    result = build_tree(tree)
    assert result.root.encode() == kubo_root(tmp_path, tree)


def test_hamts_nest_in_plain_directories_and_back(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    big = make(tree / "outer" / "big", names(_AT_THRESHOLD + 50, "g"))
    (big / "inner").mkdir()
    make(big / "inner" / "small", ["one", "two"])
    (big / "inner" / "file.txt").write_bytes(b"content\n" * 1000)
    make(tree / "plain", ["a", "b"])
    result = build_tree(tree)
    assert result.root.encode() == kubo_root(tmp_path, tree)


def test_needs_sharding_counts_names_and_cid_bytes() -> None:
    from provanchor.formats.cid import CID, RAW

    cid = CID.for_block(RAW, b"")
    links = [(b"n" * _NAME_LEN, cid, 0)] * _AT_THRESHOLD
    assert not needs_sharding(links)
    assert needs_sharding([*links, (b"n" * _NAME_LEN, cid, 0)])
