"""A directory tree as a standard UnixFS DAG, computed locally, plus a per-entry listing.

A snapshot has to be restorable by any IPFS tool (``ipfs get``, a gateway) and
checkable without trusting a daemon, so the root CID must be exactly the one
``ipfs add -r --cid-version=1 --raw-leaves`` prints: files use the same
importer as `provanchor.formats.unixfs` (256 KiB chunks, balanced layout, raw
leaves) and directories are plain UnixFS Directory dag-pb nodes with links
sorted by name and Tsize = cumulative DAG size, as Kubo writes them.

Safety matters more than convenience here, because the tree may contain
anything a monitored program wrote:

* symlinks are never followed: the walk goes through directory file
  descriptors opened with ``O_NOFOLLOW``, files are opened the same way and
  checked with ``fstat`` to still be regular files, and a symlink is recorded
  as its target text (and a UnixFS Symlink node, as ``ipfs add`` does);
* names that could not be restored safely (containing ``/`` or NUL, not UTF-8,
  ``.``/``..``) are refused with an error naming the path;
* devices, FIFOs and sockets are refused rather than silently skipped, so a
  snapshot never claims to be complete when it is not.

A directory whose names and CIDs add up to more than 256 KiB is sharded into
a HAMT exactly as Kubo shards it (`provanchor.formats.hamt`), so the root equals
``ipfs add -r`` for trees of any size.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from provanchor.errors import SnapshotError as SnapshotError
from provanchor.errors import UnsafeEntry as UnsafeEntry
from provanchor.formats.cid import CID, DAG_PB
from provanchor.formats.dagpb import directory_node, symlink_node
from provanchor.formats.hamt import hamt_directory, needs_sharding
from provanchor.formats.snapshot_manifest import EntryKind, FileEntry
from provanchor.formats.unixfs import iter_file_blocks
from provanchor.progress import ProgressFn
from provanchor.snapshot.cache import CachedFile, CacheStats, FileCache, StatKey

__all__ = [
    "BlockSink",
    "EntryKind",
    "FileEntry",
    "SnapshotError",
    "TreeResult",
    "UnsafeEntry",
    "build_tree",
]

BlockSink = Callable[[CID, bytes], None]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@dataclass
class TreeResult:
    """The root CID, every entry sorted by path, and the blocks that still have to be uploaded.

    When `build_tree` was given ``on_block`` the blocks went there and
    ``blocks`` is empty; otherwise they are kept here (deduplicated by CID,
    children before parents, the root directory last when it is new).
    """

    root: CID
    files: list[FileEntry]
    blocks: list[tuple[CID, bytes]] = field(default_factory=list)
    stats: CacheStats = field(default_factory=CacheStats)

    def iter_blocks(self) -> Iterator[tuple[CID, bytes]]:
        """The blocks to upload, in an order `IpfsClient.put_blocks` (and a CAR) accepts."""
        return iter(self.blocks)


# ---------------------------------------------------------------------------
# the walk
# ---------------------------------------------------------------------------


_PARALLEL_HASH_FROM = 1 << 20
"""Files from this size hash their sha256 on a helper thread (below it the hand-over costs more)."""


class _HashingReader:
    """A read-through wrapper: the file is hashed (sha256) while the UnixFS importer chunks it.

    For large files the whole-file hash runs on a helper thread while the
    importer hashes the chunks (hashlib releases the GIL): a changed file is
    hashed twice (its sha256 and its blocks' CIDs), and doing both at once
    halves the wall time of an incremental snapshot on two cores.
    """

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self.sha256 = hashlib.sha256()
        self.count = 0
        self._pool = ThreadPoolExecutor(max_workers=1) if size >= _PARALLEL_HASH_FROM else None
        self._pending: Future[None] | None = None

    def read(self, size: int = -1) -> bytes:
        data = os.read(self._fd, size if size >= 0 else 1 << 20)
        if self._pool is not None:
            if self._pending is not None:
                self._pending.result()  # keep the updates in order, one in flight
            self._pending = self._pool.submit(self.sha256.update, data)
        else:
            self.sha256.update(data)
        self.count += len(data)
        return data

    def digest(self) -> bytes:
        self.close()
        return self.sha256.digest()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@dataclass
class _Builder:
    cache: FileCache | None
    on_block: BlockSink | None
    stats: CacheStats = field(default_factory=CacheStats)
    entries: list[FileEntry] = field(default_factory=list)
    blocks: list[tuple[CID, bytes]] = field(default_factory=list)
    seen: set[CID] = field(default_factory=set)
    progress: ProgressFn | None = None
    files_seen: int = 0

    def emit(self, cid: CID, block: bytes) -> None:
        if self.on_block is not None:
            self.on_block(cid, block)
        elif cid not in self.seen:
            self.seen.add(cid)
            self.blocks.append((cid, block))

    def node(self, rel: str, block: bytes) -> CID:
        """A directory/symlink node: emitted only if it differs from the last committed build."""
        cid = CID.for_block(DAG_PB, block)
        if self.cache is None or self.cache.previous_node(rel) != cid:
            self.emit(cid, block)
        if self.cache is not None:
            self.cache.stage_node(rel, cid)
        return cid

    def walk_dir(self, dir_fd: int, rel: str) -> tuple[CID, int]:
        """Snapshot the open directory ``dir_fd`` (at relative path ``rel``); return (cid, tsize)."""
        links: list[tuple[bytes, CID, int]] = []
        try:
            with os.scandir(dir_fd) as iterator:
                entries = sorted(iterator, key=lambda e: _name_bytes(e.name, rel))
        except OSError as exc:
            raise SnapshotError(f"cannot list {rel or '.'}: {exc.strerror or exc}", rel) from exc
        for entry in entries:
            name = entry.name
            name_bytes = _name_bytes(name, rel)
            child = f"{rel}/{name}" if rel else name
            if "/" in name or "\x00" in name or name in (".", "..", ""):
                raise UnsafeEntry(f"refusing to snapshot unsafe name {child!r}", child)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                raise SnapshotError(f"cannot stat {child}: {exc.strerror or exc}", child) from exc
            if stat.S_ISLNK(st.st_mode):
                cid, tsize = self.symlink(dir_fd, name, child, st)
            elif stat.S_ISDIR(st.st_mode):
                cid, tsize = self.subdir(dir_fd, name, child, st)
            elif stat.S_ISREG(st.st_mode):
                cid, tsize = self.file(dir_fd, name, child, st)
            else:
                raise UnsafeEntry(f"refusing to snapshot {child}: not a regular file, directory or symlink", child)
            links.append((name_bytes, cid, tsize))
        if needs_sharding(links):
            return self.sharded(rel, links)
        block = directory_node(links)
        cid = self.node(rel, block)
        return cid, len(block) + sum(tsize for _, _, tsize in links)

    def sharded(self, rel: str, links: list[tuple[bytes, CID, int]]) -> tuple[CID, int]:
        """A directory large enough that Kubo makes it a HAMT: its shards, emitted unless unchanged."""
        shards: list[tuple[CID, bytes]] = []
        cid, tsize = hamt_directory(links, lambda shard, block: shards.append((shard, block)))
        if self.cache is None or self.cache.previous_node(rel) != cid:
            for shard, block in shards:
                self.emit(shard, block)
        if self.cache is not None:
            self.cache.stage_node(rel, cid)
        return cid, tsize

    def subdir(self, dir_fd: int, name: str, rel: str, st: os.stat_result) -> tuple[CID, int]:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise SnapshotError(f"cannot open directory {rel}: {exc.strerror or exc}", rel) from exc
        try:
            cid, tsize = self.walk_dir(fd, rel)
        finally:
            os.close(fd)
        self.entries.append(FileEntry(rel, "dir", 0, None, stat.S_IMODE(st.st_mode), cid))
        return cid, tsize

    def symlink(self, dir_fd: int, name: str, rel: str, st: os.stat_result) -> tuple[CID, int]:
        try:
            raw = os.readlink(os.fsencode(name), dir_fd=dir_fd)
        except OSError as exc:
            raise SnapshotError(f"cannot read symlink {rel}: {exc.strerror or exc}", rel) from exc
        try:
            target = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnsafeEntry(f"refusing to snapshot symlink {rel}: its target is not UTF-8", rel) from exc
        block = symlink_node(raw)
        cid = self.node(rel, block)
        self.entries.append(FileEntry(rel, "symlink", len(raw), None, stat.S_IMODE(st.st_mode), cid, target))
        return cid, len(block)

    def file(self, dir_fd: int, name: str, rel: str, st: os.stat_result) -> tuple[CID, int]:
        self.files_seen += 1
        if self.progress is not None and self.files_seen % 64 == 0:
            self.progress("reading files", self.files_seen, None)
        mode = stat.S_IMODE(st.st_mode)
        key = StatKey(rel, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
        if self.cache is not None and (hit := self.cache.lookup(key)) is not None:
            self.stats.files_reused += 1
            self.cache.stage_file(key, hit)
            self.entries.append(FileEntry(rel, "file", st.st_size, hit.sha256, mode, hit.cid))
            return hit.cid, hit.tsize
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise SnapshotError(f"cannot open {rel}: {exc.strerror or exc}", rel) from exc
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise UnsafeEntry(f"refusing to snapshot {rel}: it stopped being a regular file", rel)
            reader = _HashingReader(fd, before.st_size)
            root: CID | None = None
            tsize = 0
            try:
                for cid, block in iter_file_blocks(cast(BinaryIO, reader)):
                    tsize += len(block)
                    root = cid
                    self.emit(cid, block)
            except OSError as exc:
                raise SnapshotError(f"cannot read {rel}: {exc.strerror or exc}", rel) from exc
            finally:
                reader.close()
            after = os.fstat(fd)
        finally:
            os.close(fd)
        assert root is not None  # iter_file_blocks always yields at least the root
        digest = reader.digest()
        self.stats.files_read += 1
        self.stats.bytes_read += reader.count
        stable = (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (
            after.st_size,
            after.st_mtime_ns,
            after.st_ctime_ns,
        ) and reader.count == after.st_size
        if self.cache is not None and stable:
            # Keyed by the fstat of what was read, not the earlier lstat: that is what the content matches.
            read_key = StatKey(rel, after.st_size, after.st_mtime_ns, after.st_ino, after.st_ctime_ns)
            self.cache.stage_file(read_key, CachedFile(digest, root, tsize))
        self.entries.append(FileEntry(rel, "file", reader.count, digest, mode, root))
        return root, tsize


def _name_bytes(name: str, parent: str) -> bytes:
    """A name as the UTF-8 bytes dag-pb stores (and sorts by); non-UTF-8 names cannot be stored."""
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError as exc:  # os.scandir smuggles undecodable bytes in as surrogates
        shown = f"{parent}/{name}" if parent else name
        raise UnsafeEntry(f"refusing to snapshot {shown!r}: its name is not UTF-8", shown) from exc


def build_tree(
    root: Path,
    cache: FileCache | None = None,
    *,
    on_block: BlockSink | None = None,
    progress: ProgressFn | None = None,
) -> TreeResult:
    """Walk ``root`` without following symlinks and compute its UnixFS DAG and entry listing.

    With a ``cache``, files whose stat is unchanged since the last committed
    build are neither read nor emitted, and unchanged directory/symlink nodes
    are not emitted; call ``cache.commit()`` after uploading the blocks.
    ``on_block`` streams blocks instead of keeping them in the result (for
    trees too large to hold in memory).
    """
    builder = _Builder(cache, on_block, progress=progress)
    if cache is not None:
        cache.begin(time.time_ns())
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SnapshotError(f"cannot open directory {root}: {exc.strerror or exc}", str(root)) from exc
    try:
        cid, _ = builder.walk_dir(fd, "")
    finally:
        os.close(fd)
    builder.entries.sort(key=lambda e: e.path.encode("utf-8"))
    if cache is not None:
        cache.stats.files_read += builder.stats.files_read
        cache.stats.files_reused += builder.stats.files_reused
        cache.stats.bytes_read += builder.stats.bytes_read
    return TreeResult(cid, builder.entries, builder.blocks, builder.stats)
