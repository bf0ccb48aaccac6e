"""Locally computed UnixFS CIDs against known answers and against the IPFS daemon's own `add`.

The daemon is the oracle: every size that exercises a boundary of the importer
(empty, one byte, around one chunk, exactly 174 chunks, one more than that, 50 MB)
plus seeded random sizes, for CIDv1 with raw leaves and for classic CIDv0.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipfshttpclient
import pytest

from provanchor.formats.cid import CID, DAG_PB, RAW
from provanchor.formats.unixfs import (
    CHUNK_SIZE,
    MAX_LINKS,
    UnixFSBuilder,
    UnixFSError,
    cid_for_bytes,
    cid_for_file,
    decode_pbnode,
    decode_unixfs,
    iter_bytes_blocks,
    iter_file_blocks,
)
from provanchor.ipfs.client import api_multiaddr
from provanchor.localnet.processes import IpfsService

pytestmark = pytest.mark.filterwarnings("ignore:The 'strict' parameter is no longer needed:FutureWarning")

ONE_LEVEL = CHUNK_SIZE * MAX_LINKS  # 45,613,056: the largest file with a single interior node
FIXED_SIZES = [0, 1, 262_143, 262_144, 262_145, 1_000_000, ONE_LEVEL, ONE_LEVEL + 1, 50_000_000]
_RNG = random.Random(20240601)
# Mostly small (where chunk-boundary arithmetic lives), a few spanning dozens of chunks.
RANDOM_SIZES = sorted(
    {_RNG.randrange(2, 600_000) for _ in range(8)} | {_RNG.randrange(600_000, 12_000_000) for _ in range(7)}
)
ALL_SIZES = FIXED_SIZES + RANDOM_SIZES


def payload(size: int) -> bytes:
    """Deterministic pseudo-random bytes (fast even for 50 MB)."""
    return random.Random(size * 7919 + 1).randbytes(size)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The daemon's own RPC client: a private Kubo for this module."""
    service = IpfsService(tmp_path_factory.mktemp("ipfs-cids-home"))
    addr = service.start()
    client = ipfshttpclient.Client(api_multiaddr(addr), timeout=300, session=True)
    try:
        yield client
    finally:
        client.close()
        service.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Path]]:
    """One file per tested size, written lazily and shared by both CID versions."""
    directory = tmp_path_factory.mktemp("ipfs-cid-files")

    class Lazy(dict[int, Path]):
        def __missing__(self, size: int) -> Path:
            path = directory / f"data-{size}.bin"
            path.write_bytes(payload(size))
            self[size] = path
            return path

    yield Lazy()


def daemon_cid(api: Any, source: str | io.BytesIO, version: int, only_hash: bool = True) -> str:
    reply = api.add(
        source, cid_version=version, raw_leaves=version == 1, chunker=f"size-{CHUNK_SIZE}", only_hash=only_hash
    )
    return CID.parse(reply["Hash"]).encode()


# ---------------------------------------------------------------------------
# no daemon
# ---------------------------------------------------------------------------


def test_known_answers_without_daemon(tmp_path: Path) -> None:
    assert cid_for_bytes(b"hello world\n", version=0) == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    assert cid_for_bytes(b"hello world\n") == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    assert cid_for_bytes(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert cid_for_bytes(b"", version=0) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert cid_for_file(empty) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert cid_for_file(empty, version=0) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    hello = tmp_path / "hello.txt"
    hello.write_bytes(b"hello world\n")
    assert cid_for_file(str(hello), 0) == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def test_single_chunk_v1_is_the_raw_block() -> None:
    data = payload(CHUNK_SIZE)
    assert cid_for_bytes(data) == CID.for_block(RAW, data).encode()
    assert cid_for_bytes(data + b"x") != CID.for_block(RAW, data + b"x").encode()


@pytest.mark.parametrize("version", [0, 1])
def test_builder_is_independent_of_write_sizes_and_threads(tmp_path: Path, version: int) -> None:
    data = payload(3 * CHUNK_SIZE + 12345)
    expected = cid_for_bytes(data, version)
    for piece in (1, 1000, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 7, len(data)):
        builder = UnixFSBuilder(version)
        for start in range(0, len(data), piece):
            builder.write(data[start : start + piece])
        assert builder.size == len(data)
        assert builder.finish().encode() == expected
        assert builder.finish().encode() == expected  # idempotent
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert {cid_for_file(path, version, workers=n) for n in (1, 2, 3)} == {expected}


def test_builder_rejects_misuse() -> None:
    builder = UnixFSBuilder()
    builder.add_chunk(b"short")
    with pytest.raises(ValueError, match="last chunk"):
        builder.add_chunk(b"more")
    with pytest.raises(ValueError):
        UnixFSBuilder(version=2)
    finished = UnixFSBuilder()
    finished.finish()
    with pytest.raises(ValueError):
        finished.write(b"late")


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("size", [0, 5, CHUNK_SIZE, 3 * CHUNK_SIZE + 1, MAX_LINKS * CHUNK_SIZE + 2 * CHUNK_SIZE])
def test_blocks_are_children_first_verified_and_consistent(size: int, version: int) -> None:
    data = payload(size)
    blocks = list(iter_bytes_blocks(data, version))
    root = blocks[-1][0]
    assert root.encode() == cid_for_bytes(data, version)
    seen: set[CID] = set()
    content: dict[CID, int] = {}
    for cid, block in blocks:
        assert cid.matches(block) and cid.version == version
        if cid.codec == RAW:
            content[cid] = len(block)
        else:
            assert cid.codec == DAG_PB
            node = decode_pbnode(block)
            assert node.data is not None
            info = decode_unixfs(node.data)
            assert info.type == 2  # File
            assert all(link.cid in seen for link in node.links), "a parent came before its child"
            assert list(info.blocksizes) == [content[link.cid] for link in node.links]
            assert all(link.name == "" for link in node.links)
            content[cid] = len(info.data) + sum(info.blocksizes)
            assert info.filesize == content[cid]
        seen.add(cid)
    assert content[root] == size
    assert len(seen) <= len(blocks)


def test_file_blocks_from_path_and_file_object(tmp_path: Path) -> None:
    data = payload(2 * CHUNK_SIZE + 3)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    from_path = list(iter_file_blocks(path))
    with path.open("rb") as handle:
        from_handle = list(iter_file_blocks(handle))
    assert from_path == from_handle == list(iter_bytes_blocks(data))
    assert from_path[-1][0].encode() == cid_for_file(path)
    assert [block for cid, block in from_path if cid.codec == RAW] == [
        data[:CHUNK_SIZE],
        data[CHUNK_SIZE : 2 * CHUNK_SIZE],
        data[2 * CHUNK_SIZE :],
    ]


def test_missing_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(UnixFSError, match="cannot read"):
        cid_for_file(tmp_path / "nope")
    with pytest.raises(UnixFSError, match="cannot read"):
        list(iter_file_blocks(tmp_path / "nope"))


def test_streaming_cid_for_file_uses_constant_memory(tmp_path: Path) -> None:
    """A 50 MB file through cid_for_file keeps only a few chunks alive (traced Python allocations)."""
    import tracemalloc

    path = tmp_path / "big.bin"
    with path.open("wb") as out:
        rng = random.Random(3)
        for _ in range(5):
            out.write(rng.randbytes(10_000_000))
    tracemalloc.start()
    try:
        cid = cid_for_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cid.startswith("bafybei")
    assert peak < 12 * CHUNK_SIZE + 2_000_000, f"peak traced memory {peak} bytes"


def test_decoders_reject_garbage() -> None:
    for junk in (b"\x0a", b"\x12\x05abc", b"\xff" * 12, b"\x08\x01"):
        with pytest.raises(UnixFSError):
            decode_pbnode(junk)
    with pytest.raises(UnixFSError):
        decode_unixfs(b"\x12\x00")  # no Type


# ---------------------------------------------------------------------------
# against the daemon
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 0])
@pytest.mark.parametrize("size", ALL_SIZES)
def test_cids_match_daemon(api: Any, files: dict[int, Path], size: int, version: int) -> None:
    path = files[size]
    expected = daemon_cid(api, str(path), version)
    assert cid_for_file(path, version) == expected
    if size <= 12_000_000:  # bytes path on the small ones; the big ones already went through cid_for_file
        assert cid_for_bytes(path.read_bytes(), version) == expected
    prefix = "Qm" if version == 0 else ("bafkrei" if size <= CHUNK_SIZE else "bafybei")
    assert expected.startswith(prefix)


@pytest.mark.parametrize("version", [1, 0])
@pytest.mark.parametrize("size", [0, 1, 262_145, 1_000_000])
def test_real_adds_match(api: Any, size: int, version: int) -> None:
    data = payload(size)
    added = daemon_cid(api, io.BytesIO(data), version, only_hash=False)
    assert added == cid_for_bytes(data, version)
    # The daemon now holds the DAG: its blocks are exactly the ones computed locally.
    for cid, block in iter_bytes_blocks(data, version):
        stored = api.block.get(cid.encode(), opts={"timeout": "5s"})
        assert hashlib.sha256(stored).digest() == cid.digest
        assert stored == block


def test_hello_world_known_answer_on_daemon(api: Any) -> None:
    assert daemon_cid(api, io.BytesIO(b"hello world\n"), 0) == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
