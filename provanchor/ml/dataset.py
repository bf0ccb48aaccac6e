"""Dataset fingerprints: a Merkle tree over the SHA-256 of every row, so one row's membership can be proven.

A file hash says "this exact file"; it cannot show that one sample was part of
the training data without handing over the whole file. So a dataset's digest
is the RFC 9162 Merkle root (provanchor.formats.merkle) whose leaf *i* is

    leaf_i = SHA-256(0x00 || SHA-256(row_i))

and a membership proof is the inclusion path of one leaf: it needs only the
sample's SHA-256, never the other rows (nor, for an auditor who is given the
hash, the sample itself).

What a row is (``row_format``), fixed so anyone can recompute the digest:

* ``lines`` (every file except ``.npy``): the bytes between ``\\n`` separators,
  without the ``\\n``; a final line without ``\\n`` is a row, the empty string
  after a final ``\\n`` is not, empty lines in between are (empty) rows; ``\\r``
  is kept as data. With ``header`` (the default for ``.csv`` and ``.tsv``) the
  first line is the schema, not a row, and ``schema_digest`` is its SHA-256.
  Binary formats that are not line-based (Parquet...) should be passed as
  ``samples`` (one ``bytes`` per sample).
* ``npy``: a NumPy ``.npy`` file (format 1.0 to 3.0) of a C-ordered, non-object
  array; row *i* is the raw bytes of ``array[i]`` exactly as stored
  (``itemsize * prod(shape[1:])`` bytes; a 0-d array is one row).
  ``schema_digest`` is SHA-256 of the DAG-CBOR map ``{"descr": str, "shape": [int...]}``
  (the dtype descriptor as the header spells it, and the shape of one row).
* ``samples``: an iterable of ``bytes`` given by the caller, one row each.

Speed: each row costs two hashlib calls plus, in the tree, about one more:
roughly 1 microsecond of interpreter work per row on top of hashing the bytes.
Rows of a few kilobytes hash at close to SHA-256's own speed; millions of
short rows are bound by that per-row cost (benchmarks/ml.py measures both).
The whole file's SHA-256 is computed at the same time in a second thread
(hashlib releases the GIL on large buffers), so it costs little extra time.
"""

from __future__ import annotations

import ast
import hashlib
import io
import math
import mmap
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, overload

from provanchor.errors import NotAMember, UnsupportedDataset
from provanchor.formats import merkle
from provanchor.formats.dagcbor import DagCborError, encode
from provanchor.ml.environment import regular_file

__all__ = [
    "CHUNK_BYTES",
    "Fingerprint",
    "LeafArray",
    "MembershipProof",
    "fingerprint_file",
    "fingerprint_samples",
    "row_leaf",
    "schema_digest_of",
]

CHUNK_BYTES = 8 * 1024 * 1024
"""File bytes read and split per step: large enough to amortise calls, small enough for the cache."""

_LEAF = b"\x00"
_NPY_MAGIC = b"\x93NUMPY"
_HEADER_SUFFIXES = frozenset({".csv", ".tsv"})


def row_leaf(row: bytes | memoryview) -> bytes:
    """The Merkle leaf of one row: SHA-256(0x00 || SHA-256(row))."""
    return hashlib.sha256(_LEAF + hashlib.sha256(row).digest()).digest()


def schema_digest_of(schema: object, what: str = "schema") -> bytes:
    """SHA-256 of a description given by the caller: bytes as they are, anything else as canonical DAG-CBOR.

    Text, integers, lists and maps with text keys qualify; floats do not (write them as strings).
    """
    if isinstance(schema, bytes):
        return hashlib.sha256(schema).digest()
    try:
        return hashlib.sha256(encode(schema)).digest()
    except DagCborError as exc:
        raise UnsupportedDataset(f"the {what} cannot be digested ({exc}): use text, integers, lists and maps") from None


class LeafArray(Sequence[bytes]):
    """Leaf hashes packed 32 bytes apiece (a tenth of the memory of a list of bytes objects).

    The buffer may be bytes or a read-only ``mmap`` of a leaves file (:meth:`open`),
    so a proof over millions of rows pages leaves in rather than loading them.
    It is a Sequence, so provanchor.formats.merkle's proof functions take it as is.
    """

    def __init__(self, packed: bytes | bytearray | mmap.mmap = b"") -> None:
        if len(packed) % merkle.HASH_SIZE:
            raise ValueError("packed leaves must be a multiple of 32 bytes")
        self.packed: bytes | mmap.mmap = bytes(packed) if isinstance(packed, bytearray) else packed

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> LeafArray:
        """Map a leaves file (as written through ``leaves_to``) read-only."""
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return cls(b"")
            return cls(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))

    def __len__(self) -> int:
        return len(self.packed) // merkle.HASH_SIZE

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        size = merkle.HASH_SIZE
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            blob = self.packed[start * size : stop * size]
            return [blob[i : i + size] for i in range(0, len(blob), size)]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("leaf index out of range")
        return self.packed[index * size : (index + 1) * size]

    def find(self, leaf: bytes) -> int | None:
        """Index of the first row with this leaf (searched in C, kept to 32-byte boundaries)."""
        at = self.packed.find(leaf)
        while at >= 0 and at % merkle.HASH_SIZE:
            at = self.packed.find(leaf, at + 1)
        return None if at < 0 else at // merkle.HASH_SIZE


@dataclass(frozen=True)
class Fingerprint:
    """What a dataset's record says about its content."""

    digest: bytes
    rows: int
    row_format: str
    header: bool = False
    schema_digest: bytes | None = None
    sha256: bytes | None = None
    """The whole file's SHA-256 (None for samples)."""
    size: int | None = None
    leaves: LeafArray | None = field(default=None, repr=False, compare=False)
    """Every row's leaf, when asked for (proofs need them; fingerprinting alone does not)."""


class _TreeBuilder:
    """Appends leaves to a compact range, optionally writing them, packed, to ``sink`` for proofs."""

    def __init__(self, sink: BinaryIO | None) -> None:
        self.tree = merkle.CompactRange()
        self.sink = sink

    def add_rows(self, rows: Iterable[bytes | memoryview]) -> None:
        sha = hashlib.sha256
        prefix = _LEAF
        leaves = [sha(prefix + sha(row).digest()).digest() for row in rows]
        self.tree.extend(leaves)
        if self.sink is not None:
            self.sink.write(b"".join(leaves))

    def leaves(self) -> LeafArray | None:
        if isinstance(self.sink, io.BytesIO):
            return LeafArray(self.sink.getvalue())
        return None

    def result(self, row_format: str, whole: _FileHasher, schema: bytes | None, header: bool = False) -> Fingerprint:
        """The fingerprint of a file whose rows were all added (``whole`` already finished)."""
        return Fingerprint(
            self.tree.root(),
            self.tree.size,
            row_format,
            header=header,
            schema_digest=schema,
            sha256=whole.digest(),
            size=whole.size,
            leaves=self.leaves(),
        )


def fingerprint_samples(
    samples: Iterable[bytes], *, keep_leaves: bool = False, leaves_to: BinaryIO | None = None
) -> Fingerprint:
    """Fingerprint samples held in memory (row_format ``samples``).

    ``keep_leaves`` returns the leaves in the Fingerprint; ``leaves_to`` streams them to a file instead.
    """
    builder = _TreeBuilder(_sink(keep_leaves, leaves_to))
    batch: list[bytes] = []
    for sample in samples:
        if not isinstance(sample, bytes | bytearray | memoryview):
            raise UnsupportedDataset(f"dataset samples must be bytes, got {type(sample).__name__}")
        batch.append(bytes(sample))
        if len(batch) >= 65536:
            builder.add_rows(batch)
            batch = []
    builder.add_rows(batch)
    return Fingerprint(builder.tree.root(), builder.tree.size, "samples", leaves=builder.leaves())


def _sink(keep_leaves: bool, leaves_to: BinaryIO | None) -> BinaryIO | None:
    if keep_leaves and leaves_to is not None:
        raise ValueError("keep_leaves and leaves_to are exclusive")
    return io.BytesIO() if keep_leaves else leaves_to


def fingerprint_file(
    path: str | os.PathLike[str],
    *,
    header: bool | None = None,
    keep_leaves: bool = False,
    leaves_to: BinaryIO | None = None,
    row_format: str | None = None,
) -> Fingerprint:
    """Fingerprint a dataset file: ``.npy`` by array rows, anything else by lines (see the module doc).

    ``row_format`` (``lines`` or ``npy``) overrides the choice by suffix, as a verifier re-reading a
    recorded file does. ``keep_leaves`` returns every row's leaf in memory; ``leaves_to`` writes
    them to a file (32 bytes a row).
    """
    resolved = regular_file(path, "dataset")
    sink = _sink(keep_leaves, leaves_to)
    suffix = Path(path).suffix.lower()  # as the caller named it (a symlink's target may have none)
    if row_format not in (None, "lines", "npy"):
        raise UnsupportedDataset(f"{resolved}: unknown row format {row_format!r:.20} (lines or npy)")
    if row_format == "npy" or (row_format is None and suffix == ".npy"):
        if header:
            raise UnsupportedDataset(f"{resolved}: a .npy file has no header line")
        return _fingerprint_npy(resolved, sink)
    with_header = suffix in _HEADER_SUFFIXES if header is None else header
    return _fingerprint_lines(resolved, with_header, sink)


class _FileHasher:
    """The whole file's SHA-256, computed in a helper thread while rows are hashed.

    At most one chunk is pending, so chunks are hashed in order and memory stays bounded.
    """

    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self.size = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataset-sha256")
        self._pending: Future[None] | None = None

    def feed(self, chunk: bytes) -> None:
        if self._pending is not None:
            self._pending.result()
        self.size += len(chunk)
        self._pending = self._pool.submit(self.hasher.update, chunk)

    def finish(self) -> None:
        """Wait for the last chunk and stop the helper thread (call once, even after an error)."""
        try:
            if self._pending is not None:
                self._pending.result()
        finally:
            self._pool.shutdown()

    def digest(self) -> bytes:
        return self.hasher.digest()


def _chunks(handle: object) -> Iterator[bytes]:
    read = handle.read  # type: ignore[attr-defined]
    while chunk := read(CHUNK_BYTES):
        yield chunk


def _fingerprint_lines(path: Path, header: bool, sink: BinaryIO | None) -> Fingerprint:
    builder = _TreeBuilder(sink)
    whole = _FileHasher()
    carry = b""
    header_line: bytes | None = None
    try:
        with path.open("rb") as handle:
            for chunk in _chunks(handle):
                whole.feed(chunk)
                rows = (carry + chunk).split(b"\n") if carry else chunk.split(b"\n")
                carry = rows.pop()
                if header and header_line is None and rows:
                    header_line = rows[0]
                    del rows[0]
                builder.add_rows(rows)
    finally:
        whole.finish()
    if carry:
        if header and header_line is None:
            header_line = carry
        else:
            builder.add_rows([carry])
    schema = None if header_line is None else hashlib.sha256(header_line).digest()
    return builder.result("lines", whole, schema, header)


def _npy_header(handle: object, path: Path) -> tuple[str, tuple[int, ...], int, int]:
    """(descr, shape, itemsize, data offset) of a .npy file, read without NumPy."""
    read = handle.read  # type: ignore[attr-defined]
    magic = read(8)
    if len(magic) < 8 or magic[:6] != _NPY_MAGIC:
        raise UnsupportedDataset(f"{path} is not a .npy file (bad magic)")
    major = magic[6]
    if major == 1:
        length = int.from_bytes(read(2), "little")
        offset = 10 + length
    elif major in (2, 3):
        length = int.from_bytes(read(4), "little")
        offset = 12 + length
    else:
        raise UnsupportedDataset(f"{path}: unsupported .npy format version {major}")
    try:
        meta = ast.literal_eval(read(length).decode("utf-8" if major == 3 else "latin1"))
        descr, fortran, shape = meta["descr"], meta["fortran_order"], tuple(int(n) for n in meta["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise UnsupportedDataset(f"{path}: unreadable .npy header ({exc})") from None
    if fortran and len(shape) > 1:
        raise UnsupportedDataset(f"{path}: a Fortran-ordered array has no contiguous rows; save it C-ordered")
    itemsize = _npy_itemsize(descr, path)
    return str(descr), shape, itemsize, offset


def _npy_itemsize(descr: object, path: Path) -> int:
    """Byte size of one element from a .npy dtype descriptor (simple or structured)."""
    if isinstance(descr, str):
        kind = descr.lstrip("<>|=")
        if not kind or kind[0] == "O":
            raise UnsupportedDataset(f"{path}: object arrays hold pointers, not data; rows cannot be defined")
        try:
            count = int(kind[1:].split("[")[0])
        except ValueError:
            raise UnsupportedDataset(f"{path}: unsupported dtype {descr!r}") from None
        return count * (4 if kind[0] == "U" else 1)
    if isinstance(descr, list):
        total = 0
        for entry in descr:
            if not isinstance(entry, tuple) or len(entry) < 2:
                raise UnsupportedDataset(f"{path}: unsupported structured dtype {descr!r:.80}")
            sub = _npy_itemsize(entry[1], path)
            total += sub * (math.prod(entry[2]) if len(entry) > 2 else 1)
        return total
    raise UnsupportedDataset(f"{path}: unsupported dtype {descr!r:.80}")


def _fingerprint_npy(path: Path, sink: BinaryIO | None) -> Fingerprint:
    builder = _TreeBuilder(sink)
    whole = _FileHasher()
    try:
        with path.open("rb") as handle:
            descr, shape, itemsize, offset = _npy_header(handle, path)
            handle.seek(0)
            prefix = handle.read(offset)
            whole.feed(prefix)
            rows = shape[0] if shape else 1
            row_bytes = itemsize * math.prod(shape[1:]) if shape else itemsize
            per_chunk = max(1, CHUNK_BYTES // max(1, row_bytes))
            remaining = rows
            while remaining:
                take = min(per_chunk, remaining)
                chunk = handle.read(take * row_bytes)
                if len(chunk) != take * row_bytes:
                    raise UnsupportedDataset(f"{path}: truncated (the header promises {rows} rows)")
                whole.feed(chunk)
                view = memoryview(chunk)
                step = max(1, row_bytes)  # zero-size rows (shape (n, 0)) are n empty rows
                builder.add_rows([view[i * step : i * step + row_bytes] for i in range(take)])
                remaining -= take
            trailing = handle.read()
            if trailing:
                whole.feed(trailing)
                raise UnsupportedDataset(f"{path}: {len(trailing)} bytes after the array's data")
    finally:
        whole.finish()
    schema = hashlib.sha256(encode({"descr": descr, "shape": list(shape[1:])})).digest()
    return builder.result("npy", whole, schema)


# ------------------------------------------------------------------ membership proofs


@dataclass(frozen=True)
class MembershipProof:
    """Proof that a sample is row ``index`` of the dataset whose digest is ``digest``.

    Self-contained: an auditor needs this object and the sample (or only its
    SHA-256) and checks it with :meth:`verify`, i.e. RFC 9162 inclusion of
    ``SHA-256(0x00 || sample_sha256)`` at ``index`` in a tree of ``rows`` leaves.
    ``dataset`` names the anchored dataset record whose payload carries ``digest``.
    """

    dataset: str
    digest: bytes
    rows: int
    index: int
    sample_sha256: bytes
    path: tuple[bytes, ...]

    def verify(self, sample: bytes | None = None, *, sample_sha256: bytes | None = None) -> bool:
        """True iff the sample (or the given hash) is row ``index`` of the tree rooted at ``digest``."""
        if sample is not None:
            sample_sha256 = hashlib.sha256(sample).digest()
        if sample_sha256 is None:
            sample_sha256 = self.sample_sha256
        elif sample_sha256 != self.sample_sha256:
            return False
        leaf = hashlib.sha256(_LEAF + sample_sha256).digest()
        return merkle.verify_inclusion(leaf, self.index, self.rows, list(self.path), self.digest)

    def to_json(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "digest": self.digest.hex(),
            "rows": self.rows,
            "index": self.index,
            "sample_sha256": self.sample_sha256.hex(),
            "path": [h.hex() for h in self.path],
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> MembershipProof:
        path = data["path"]
        if not isinstance(path, list):
            raise ValueError("path must be a list of hex hashes")
        return cls(
            dataset=str(data["dataset"]),
            digest=bytes.fromhex(str(data["digest"])),
            rows=int(str(data["rows"])),
            index=int(str(data["index"])),
            sample_sha256=bytes.fromhex(str(data["sample_sha256"])),
            path=tuple(bytes.fromhex(str(h)) for h in path),
        )


def prove_membership(dataset: str, leaves: LeafArray, digest: bytes, sample: bytes) -> MembershipProof:
    """The inclusion proof of ``sample`` among ``leaves`` (which must rebuild ``digest``)."""
    sample_sha = hashlib.sha256(sample).digest()
    index = leaves.find(hashlib.sha256(_LEAF + sample_sha).digest())
    if index is None:
        raise NotAMember(f"the sample (sha256 {sample_sha.hex()[:16]}...) is not a row of dataset {dataset}")
    path = tuple(merkle.inclusion_proof(leaves, index))
    return MembershipProof(dataset, digest, len(leaves), index, sample_sha, path)
