"""UnixFS files computed locally: the CID `ipfs add` would print, and the blocks behind it.

An auditor must be able to say "this file is that CID" without trusting (or even
running) an IPFS daemon, so this module reproduces Kubo's importer defaults
byte for byte:

* fixed-size chunks of 262,144 bytes (``--chunker=size-262144``);
* the *balanced* layout: leaves grouped into dag-pb nodes of at most 174 links,
  those grouped again, until one root remains;
* CIDv1 (``--cid-version=1 --raw-leaves``): leaves are raw blocks (codec 0x55),
  interior nodes dag-pb CIDv1; CIDv0 (plain ``ipfs add``): every block is
  dag-pb, leaves being UnixFS ``File`` nodes that carry their chunk;
* a file of a single chunk is that chunk's leaf itself (no wrapping node).

The builder is streaming: it keeps at most one pending row of links per tree
level (at most 174 links times the depth), so memory is constant in the file size, and it
emits every block children-first, which is the order a CAR or an upload wants.
Hashing dominates the cost; the only per-chunk Python work is a few small byte
strings, and `cid_for_file` hashes chunks on worker threads (hashlib releases
the GIL) so it can run faster than a single ``hashlib.sha256`` over the file.

The module also decodes dag-pb / UnixFS, because a trustless reader walking a
file block by block has to follow the links itself.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from provanchor.errors import ProvanchorError, VarintError
from provanchor.errors import UnixFSError as UnixFSError
from provanchor.formats.cid import CID, DAG_PB, RAW
from provanchor.formats.varint import PROTOBUF_MAX_BYTES, decode_varint, encode_varint

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINKS",
    "PBLink",
    "PBNode",
    "UnixFSBuilder",
    "UnixFSData",
    "UnixFSError",
    "cid_for_bytes",
    "cid_for_file",
    "decode_pbnode",
    "decode_unixfs",
    "iter_bytes_blocks",
    "iter_file_blocks",
]

#: Kubo's default chunk size (``size-262144``).
CHUNK_SIZE = 262_144
#: Kubo's default maximum number of links per node in the balanced layout.
MAX_LINKS = 174

#: UnixFS ``Data.DataType`` values.
UNIXFS_RAW = 0
UNIXFS_DIRECTORY = 1
UNIXFS_FILE = 2
UNIXFS_METADATA = 3
UNIXFS_SYMLINK = 4
UNIXFS_HAMT_SHARD = 5

# Below this many bytes a worker thread costs more than it saves.
_PARALLEL_MIN_BYTES = 4 * CHUNK_SIZE
# Chunks in flight per worker: enough to keep the workers busy while the main
# thread reads, few enough that memory stays a few MiB.
_INFLIGHT_PER_WORKER = 4

BlockSink = Callable[[CID, bytes], None]


# ---------------------------------------------------------------------------
# protobuf helpers (only what dag-pb and UnixFS use)
# ---------------------------------------------------------------------------


def _key(field_number: int, wire_type: int) -> bytes:
    return encode_varint(field_number << 3 | wire_type)


_UNIXFS_TYPE_FILE = _key(1, 0) + encode_varint(UNIXFS_FILE)  # 08 02
_UNIXFS_DATA = _key(2, 2)  # 12
_UNIXFS_FILESIZE = _key(3, 0)  # 18
_UNIXFS_BLOCKSIZE = _key(4, 0)  # 20: repeated, *not* packed, as go-unixfs writes it
_PB_DATA = _key(1, 2)  # 0a
_PB_LINK = _key(2, 2)  # 12
_LINK_HASH = _key(1, 2)  # 0a
_LINK_EMPTY_NAME = _key(2, 2) + b"\x00"  # 12 00: Kubo always writes Name, even empty
_LINK_TSIZE = _key(3, 0)  # 18


def _read_varint(data: bytes | memoryview, offset: int, end: int) -> tuple[int, int]:
    """Protobuf varint at ``offset`` (unsigned, at most 64 bits); UnixFSError if truncated."""
    try:
        return decode_varint(data, offset, end, max_bytes=PROTOBUF_MAX_BYTES, minimal=False)
    except VarintError as exc:
        raise UnixFSError(f"malformed protobuf: {exc}") from exc


def _fields(data: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field number, wire type, value or start, end) for each protobuf field in data[start:end].

    For varints the third item is the value (and the fourth is unused); for
    length-delimited fields the third and fourth items bound the payload, so
    nothing is copied until a caller slices.
    """
    stop = len(data) if end is None else end
    pos = start
    while pos < stop:
        key, pos = _read_varint(data, pos, stop)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise UnixFSError("malformed protobuf: field number 0")
        if wire == 0:
            value, pos = _read_varint(data, pos, stop)
            yield number, wire, value, pos
        elif wire == 2:
            length, pos = _read_varint(data, pos, stop)
            if pos + length > stop:
                raise UnixFSError("malformed protobuf: truncated length-delimited field")
            yield number, wire, pos, pos + length
            pos += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > stop:
                raise UnixFSError("malformed protobuf: truncated fixed-width field")
            yield number, wire, pos, pos + width
            pos += width
        else:
            raise UnixFSError(f"malformed protobuf: unsupported wire type {wire}")


# ---------------------------------------------------------------------------
# dag-pb / UnixFS decoding
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PBLink:
    """One dag-pb link. ``tsize`` is the cumulative size of the linked DAG (None if absent)."""

    cid: CID
    name: str | None
    tsize: int | None


@dataclass(frozen=True)
class PBNode:
    """A decoded dag-pb node: its links (in order) and its opaque Data (None if absent)."""

    links: tuple[PBLink, ...]
    data: bytes | None


@dataclass(frozen=True)
class UnixFSData:
    """The UnixFS message carried in a dag-pb node's Data field (only the fields files use)."""

    type: int
    data: bytes = b""
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default_factory=tuple)


def decode_pbnode(block: bytes) -> PBNode:
    """Decode a dag-pb block; UnixFSError if it is not valid dag-pb.

    Field order is not enforced on input (only on output), because the hash
    check already pins the exact bytes: decoding just has to be unambiguous.
    """
    view = memoryview(block)
    links: list[PBLink] = []
    data: bytes | None = None
    for number, wire, start, end in _fields(view):
        if number == 2 and wire == 2:
            links.append(_decode_link(view, start, end))
        elif number == 1 and wire == 2:
            if data is not None:
                raise UnixFSError("malformed dag-pb: Data appears twice")
            data = bytes(view[start:end])
        else:
            raise UnixFSError(f"malformed dag-pb: unexpected field {number}")
    return PBNode(tuple(links), data)


def _decode_link(view: memoryview, start: int, end: int) -> PBLink:
    cid: CID | None = None
    name: str | None = None
    tsize: int | None = None
    for number, wire, value, stop in _fields(view, start, end):
        if number == 1 and wire == 2:
            try:
                cid = CID.from_bytes(bytes(view[value:stop]))
            except ProvanchorError as exc:
                raise UnixFSError(f"malformed dag-pb link: {exc}") from exc
        elif number == 2 and wire == 2:
            try:
                name = bytes(view[value:stop]).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UnixFSError("malformed dag-pb link: Name is not UTF-8") from exc
        elif number == 3 and wire == 0:
            tsize = value
        else:
            raise UnixFSError(f"malformed dag-pb link: unexpected field {number}")
    if cid is None:
        raise UnixFSError("malformed dag-pb link: no Hash")
    return PBLink(cid, name, tsize)


def decode_unixfs(data: bytes) -> UnixFSData:
    """Decode the UnixFS protobuf in a dag-pb node's Data; UnixFSError if malformed."""
    view = memoryview(data)
    kind: int | None = None
    payload = b""
    filesize: int | None = None
    blocksizes: list[int] = []
    for number, wire, value, stop in _fields(view):
        if number == 1 and wire == 0:
            kind = value
        elif number == 2 and wire == 2:
            payload = bytes(view[value:stop])
        elif number == 3 and wire == 0:
            filesize = value
        elif number == 4 and wire == 0:
            blocksizes.append(value)
        elif number == 4 and wire == 2:  # packed encoding: legal protobuf, accept it
            pos = value
            while pos < stop:
                size, pos = _read_varint(view, pos, stop)
                blocksizes.append(size)
        # hashType, fanout, mode, mtime: irrelevant to a file's bytes
    if kind is None:
        raise UnixFSError("malformed UnixFS data: no Type")
    return UnixFSData(kind, payload, filesize, tuple(blocksizes))


# ---------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Link:
    """A child on its way into a parent node."""

    cid: CID
    tsize: int  # serialized size of the child's whole DAG (dag-pb PBLink.Tsize)
    filesize: int  # file bytes under the child (UnixFS blocksizes entry)


def _leaf_v0_frame(chunk_len: int) -> tuple[bytes, bytes]:
    """The bytes before and after a chunk in a CIDv0 leaf: PBNode{Data: UnixFS{File, chunk, filesize}}."""
    size = encode_varint(chunk_len)
    # An empty Data field is omitted (the empty file), as Kubo does.
    unixfs_head = _UNIXFS_TYPE_FILE + _UNIXFS_DATA + size if chunk_len else _UNIXFS_TYPE_FILE
    unixfs_tail = _UNIXFS_FILESIZE + size
    unixfs_len = len(unixfs_head) + chunk_len + len(unixfs_tail)
    return _PB_DATA + encode_varint(unixfs_len) + unixfs_head, unixfs_tail


def _make_leaf(chunk: bytes | memoryview, version: int, want_block: bool) -> tuple[_Link, bytes | None]:
    """Hash one chunk into its leaf; the block bytes are only materialised when asked for.

    A pure function of its arguments, so it can run on a worker thread.
    """
    size = len(chunk)
    if version == 1:
        block = bytes(chunk) if want_block else None
        return _Link(CID(1, RAW, hashlib.sha256(chunk).digest()), size, size), block
    head, tail = _leaf_v0_frame(size)
    if want_block:
        block = b"".join((head, chunk, tail))
        return _Link(CID(0, DAG_PB, hashlib.sha256(block).digest()), len(block), size), block
    hasher = hashlib.sha256(head)
    hasher.update(chunk)
    hasher.update(tail)
    return _Link(CID(0, DAG_PB, hasher.digest()), len(head) + size + len(tail), size), None


def _interior_node(links: list[_Link]) -> bytes:
    """PBNode{Links..., Data: UnixFS{File, filesize, blocksizes...}}; links serialize before Data."""
    parts: list[bytes] = []
    filesize = 0
    for link in links:
        cid_bytes = link.cid.to_bytes()
        body = b"".join(
            (
                _LINK_HASH,
                encode_varint(len(cid_bytes)),
                cid_bytes,
                _LINK_EMPTY_NAME,
                _LINK_TSIZE,
                encode_varint(link.tsize),
            )
        )
        parts += (_PB_LINK, encode_varint(len(body)), body)
        filesize += link.filesize
    unixfs = b"".join(
        [_UNIXFS_TYPE_FILE, _UNIXFS_FILESIZE, encode_varint(filesize)]
        + [_UNIXFS_BLOCKSIZE + encode_varint(link.filesize) for link in links]
    )
    parts += (_PB_DATA, encode_varint(len(unixfs)), unixfs)
    return b"".join(parts)


class UnixFSBuilder:
    """Streaming balanced-layout builder: feed bytes with `write`, get the root CID from `finish`.

    ``on_block(cid, block)`` (optional) receives every block, children before
    parents, the root last; without it blocks are hashed but never assembled,
    which is what makes CID-only computation cheap. ``version`` 1 means
    ``--cid-version=1 --raw-leaves``, 0 means the classic ``Qm...`` DAG.
    """

    def __init__(
        self,
        version: int = 1,
        on_block: BlockSink | None = None,
        *,
        chunk_size: int = CHUNK_SIZE,
        max_links: int = MAX_LINKS,
    ) -> None:
        if version not in (0, 1):
            raise ValueError(f"unsupported CID version {version}")
        if chunk_size < 1 or max_links < 2:
            raise ValueError("chunk_size must be >= 1 and max_links >= 2")
        self.version = version
        self.chunk_size = chunk_size
        self.max_links = max_links
        self._on_block = on_block
        self._levels: list[list[_Link]] = [[]]
        self._buffer = bytearray()
        self._size = 0
        self._leaves = 0
        self._short = False  # a short chunk was added: it must have been the last
        self._root: CID | None = None

    @property
    def size(self) -> int:
        """File bytes written so far (including a partial chunk not yet hashed)."""
        return self._size + len(self._buffer)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append file bytes; any piece sizes are fine, chunking is done here."""
        if self._root is not None:
            raise ValueError("UnixFSBuilder.write after finish")
        view = memoryview(data).cast("B")
        chunk = self.chunk_size
        pos = 0
        if self._buffer:
            take = min(chunk - len(self._buffer), len(view))
            self._buffer += view[:take]
            pos = take
            if len(self._buffer) < chunk:
                return
            full = bytes(self._buffer)
            self._buffer.clear()
            self.add_chunk(full)
        # Whole chunks straight from the caller's memory: no copy unless blocks are wanted.
        while len(view) - pos >= chunk:
            self.add_chunk(view[pos : pos + chunk])
            pos += chunk
        if pos < len(view):
            self._buffer += view[pos:]

    def add_chunk(self, chunk: bytes | memoryview) -> None:
        """Append exactly one chunk (callers that chunk themselves: all but the last must be full).

        Mixing with `write` is only valid at chunk boundaries.
        """
        if self._buffer:
            raise ValueError("add_chunk with a partial chunk buffered by write()")
        if len(chunk) > self.chunk_size:
            raise ValueError(f"chunk of {len(chunk)} bytes exceeds chunk size {self.chunk_size}")
        link, block = _make_leaf(chunk, self.version, self._on_block is not None)
        self._add_leaf(link, block)

    def _add_leaf(self, link: _Link, block: bytes | None) -> None:
        if self._root is not None:
            raise ValueError("UnixFSBuilder used after finish")
        if self._short:
            raise ValueError("only the last chunk of a file may be shorter than the chunk size")
        self._short = link.filesize < self.chunk_size
        self._size += link.filesize
        self._leaves += 1
        if self._on_block is not None and block is not None:
            self._on_block(link.cid, block)
        self._push(0, link)

    def _push(self, level: int, link: _Link) -> None:
        """Add a link at ``level``; a full row becomes a node one level up (eagerly, to bound memory)."""
        row = self._levels[level]
        row.append(link)
        if len(row) == self.max_links:
            parent = self._node(row)
            row.clear()
            if level + 1 == len(self._levels):
                self._levels.append([])
            self._push(level + 1, parent)

    def _node(self, links: list[_Link]) -> _Link:
        block = _interior_node(links)
        cid = CID(self.version, DAG_PB, hashlib.sha256(block).digest())
        if self._on_block is not None:
            self._on_block(cid, block)
        return _Link(cid, len(block) + sum(link.tsize for link in links), sum(link.filesize for link in links))

    def finish(self) -> CID:
        """Flush the partial chunk and partial rows; return the root CID (idempotent)."""
        if self._root is not None:
            return self._root
        if self._buffer or not self._leaves:
            # The empty file is one empty leaf, like Kubo's importer produces.
            tail = bytes(self._buffer)
            self._buffer.clear()
            self.add_chunk(tail)
        level = 0
        while True:
            row = self._levels[level]
            top = level == len(self._levels) - 1
            if top and len(row) == 1:
                self._root = row[0].cid
                return self._root
            if row:
                parent = self._node(row)
                row.clear()
                if top:
                    self._levels.append([])
                self._levels[level + 1].append(parent)
            level += 1


# ---------------------------------------------------------------------------
# public helpers
# ---------------------------------------------------------------------------


def cid_for_bytes(data: bytes | bytearray | memoryview, version: int = 1) -> str:
    """The CID `ipfs add` prints for ``data`` (v1: ``--cid-version=1 --raw-leaves``; v0: default)."""
    builder = UnixFSBuilder(version)
    builder.write(data)
    return builder.finish().encode()


def cid_for_file(path: str | os.PathLike[str], version: int = 1, *, workers: int | None = None) -> str:
    """The CID `ipfs add` prints for the file at ``path``, streaming it in constant memory.

    ``workers`` threads hash chunks concurrently (default: up to 4, by CPU
    count; 1 disables threading); results are consumed in file order, so the
    CID does not depend on scheduling.
    """
    builder = UnixFSBuilder(version)
    try:
        with open(path, "rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            count = min(4, os.cpu_count() or 1) if workers is None else max(1, workers)
            if count > 1 and size >= _PARALLEL_MIN_BYTES:
                for link, _ in _parallel_leaves(handle, version, count):
                    builder._add_leaf(link, None)
            else:
                buffer = bytearray(CHUNK_SIZE)
                view = memoryview(buffer)
                while n := _read_full(handle, view):
                    builder.add_chunk(view[:n])
                    if n < CHUNK_SIZE:
                        break
    except OSError as exc:
        raise UnixFSError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
    return builder.finish().encode()


def iter_file_blocks(source: str | os.PathLike[str] | BinaryIO, version: int = 1) -> Iterator[tuple[CID, bytes]]:
    """Every block of the UnixFS DAG of a file, children before parents; the last one is the root.

    ``source`` is a path or a binary file object (read to its end, not closed).
    Memory stays bounded: blocks are produced as the file is read.
    """
    if isinstance(source, str | os.PathLike):
        try:
            handle: BinaryIO = open(source, "rb")  # noqa: SIM115 - closed in the finally below
        except OSError as exc:
            raise UnixFSError(f"cannot read {os.fspath(source)}: {exc.strerror or exc}") from exc
        try:
            yield from _iter_blocks(handle, version)
        finally:
            handle.close()
    else:
        yield from _iter_blocks(source, version)


def iter_bytes_blocks(data: bytes, version: int = 1) -> Iterator[tuple[CID, bytes]]:
    """Every block of the UnixFS DAG of ``data``, children first, root last."""
    return _iter_blocks(io.BytesIO(data), version)


def _iter_blocks(handle: BinaryIO, version: int) -> Iterator[tuple[CID, bytes]]:
    pending: deque[tuple[CID, bytes]] = deque()
    builder = UnixFSBuilder(version, lambda cid, block: pending.append((cid, block)))
    while True:
        chunk = _read_chunk(handle, CHUNK_SIZE)
        if chunk:
            builder.add_chunk(chunk)
            while pending:
                yield pending.popleft()
        if len(chunk) < CHUNK_SIZE:
            break
    builder.finish()
    while pending:
        yield pending.popleft()


def _read_full(handle: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``handle`` (short only at end of file); return the byte count."""
    total = 0
    while total < len(view):
        n = handle.readinto(view[total:])  # type: ignore[attr-defined]
        if not n:
            break
        total += n
    return int(total)


def _read_chunk(handle: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, short only at end of file (pipes and sockets return partial reads)."""
    data = handle.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = handle.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _parallel_leaves(handle: BinaryIO, version: int, workers: int) -> Iterable[tuple[_Link, bytes | None]]:
    """Leaves of a file hashed on ``workers`` threads, yielded in file order with bounded look-ahead."""
    window: deque[Future[tuple[_Link, bytes | None]]] = deque()
    limit = workers * _INFLIGHT_PER_WORKER
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="unixfs-hash") as pool:
        try:
            while True:
                chunk = _read_chunk(handle, CHUNK_SIZE)
                if chunk:
                    window.append(pool.submit(_make_leaf, chunk, version, False))
                    if len(window) >= limit:
                        yield window.popleft().result()
                if len(chunk) < CHUNK_SIZE:
                    break
            while window:
                yield window.popleft().result()
        finally:
            for pending in window:
                pending.cancel()
