"""The snapshot manifest: a canonical dag-cbor record of what a snapshot contains, and its state root.

The UnixFS root CID lets IPFS tools restore a tree, but it omits what a replay
needs to reproduce a location faithfully (modes, symlink targets, content
hashes independent of chunking). The manifest carries those, one entry per
path, in canonical dag-cbor so it has exactly one hash. `state_root` condenses
the sorted entries into a sha256 Merkle root that a contract anchor can carry,
so a single entry can later be proven part of an anchored snapshot.

Decoding is strict because the replay engine writes files where the manifest
says: a path that is absolute, contains ``..``, or has empty components could
make it write outside its target, so such manifests are refused outright with
an error naming the field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

from provanchor.errors import ManifestError as ManifestError
from provanchor.formats import dagcbor, merkle
from provanchor.formats.cid import CID, CONTENT_LINK, DAG_PB, DIRECTORY_LINK, link_problem

__all__ = [
    "MANIFEST_TYPE",
    "MANIFEST_VERSION",
    "ManifestError",
    "SnapshotManifest",
    "decode_snapshot_manifest",
    "entry_to_dict",
    "state_root",
]

EntryKind = Literal["file", "symlink", "dir"]


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One entry under the snapshot root, as the manifest records it.

    ``path`` is relative and POSIX-style. ``sha256`` is the content hash of a
    regular file (None otherwise); ``target`` is a symlink's text (None
    otherwise); ``cid`` is the entry's UnixFS node; ``size`` is a file's byte
    count (0 for directories, the target length for symlinks); ``mode`` is the
    permission bits (``stat.S_IMODE``).
    """

    path: str
    kind: EntryKind
    size: int
    sha256: bytes | None
    mode: int
    cid: CID | None
    target: str | None = None


class BuiltTree(Protocol):
    """What a manifest needs of a freshly built tree (`provanchor.snapshot.tree.TreeResult`)."""

    @property
    def root(self) -> CID: ...

    @property
    def files(self) -> Sequence[FileEntry]: ...


MANIFEST_TYPE = "provanchor/snapshot"
MANIFEST_VERSION = 1

_TOP_KEYS = frozenset({"type", "v", "location", "root", "time", "agent", "checkpoint", "files"})
_ENTRY_KEYS = frozenset({"path", "kind", "size", "sha256", "mode", "cid", "target"})
_KINDS: tuple[EntryKind, ...] = ("file", "symlink", "dir")


def resource_id(location: str) -> bytes:
    """The contract's key for a location's snapshots: sha256 of the location URI."""
    return hashlib.sha256(location.encode()).digest()


def entry_to_dict(entry: FileEntry) -> dict[str, object]:
    """The manifest form of one entry (every key present, None where not applicable)."""
    return {
        "path": entry.path,
        "kind": entry.kind,
        "size": entry.size,
        "sha256": entry.sha256,
        "mode": entry.mode,
        "cid": entry.cid,
        "target": entry.target,
    }


def _sorted(files: Sequence[FileEntry]) -> list[FileEntry]:
    return sorted(files, key=lambda e: e.path.encode("utf-8"))


def state_root(files: Sequence[FileEntry]) -> bytes:
    """RFC 9162 Merkle root over ``leaf_hash(dagcbor(entry))`` of the entries sorted by path."""
    return merkle.root([merkle.leaf_hash(dagcbor.encode(entry_to_dict(e))) for e in _sorted(files)])


@dataclass(frozen=True)
class SnapshotManifest:
    """One snapshot of a location: UnixFS root, who took it and when, and every entry."""

    location: str
    root: CID
    time: int
    agent: str
    checkpoint: int | None
    files: list[FileEntry] = field(default_factory=list)

    @classmethod
    def from_tree(
        cls, location: str, tree: BuiltTree, *, time: int, agent: str, checkpoint: int | None
    ) -> SnapshotManifest:
        """The manifest of a freshly built tree (``time`` in nanoseconds since the epoch)."""
        return cls(location, tree.root, time, agent, checkpoint, _sorted(tree.files))

    def to_dict(self) -> dict[str, object]:
        return {
            "type": MANIFEST_TYPE,
            "v": MANIFEST_VERSION,
            "location": self.location,
            "root": self.root,
            "time": self.time,
            "agent": self.agent,
            "checkpoint": self.checkpoint,
            "files": [entry_to_dict(e) for e in _sorted(self.files)],
        }

    def encode(self) -> bytes:
        """Canonical dag-cbor bytes (the manifest's IPFS block); validated first, so no unsafe manifest is made."""
        data = dagcbor.encode(self.to_dict())
        decode_snapshot_manifest(data)
        return data

    def state_root(self) -> bytes:
        return state_root(self.files)


# ---------------------------------------------------------------------------
# strict decoding
# ---------------------------------------------------------------------------


def _fail(field_name: str, message: str) -> ManifestError:
    return ManifestError(f"invalid snapshot manifest: {field_name} {message}", field_name)


def _int(value: object, name: str, *, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(name, f"must be an integer >= {minimum}")
    return value


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise _fail(name, "must be a string")
    return value


def relative_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be written strictly inside a target directory, or None when it can."""
    if not path:
        return "is empty"
    if path.startswith("/"):
        return f"{path!r} is absolute"
    if "\x00" in path or "\\" in path:
        return f"{path!r} contains NUL or a backslash"
    for part in path.split("/"):
        if part == "":
            return f"{path!r} has an empty component"
        if part in (".", ".."):
            return f"{path!r} has a {part!r} component"
    return None


def check_relative_path(path: str, name: str = "path") -> None:
    """Refuse any path a replay could not write strictly inside its target directory."""
    problem = relative_path_problem(path)
    if problem is not None:
        raise _fail(name, problem)


def _entry(raw: object, index: int) -> FileEntry:
    where = f"files[{index}]"
    if not isinstance(raw, dict):
        raise _fail(where, "must be a map")
    keys = set(raw)
    if keys != _ENTRY_KEYS:
        raise _fail(where, f"has keys {sorted(keys)}, expected {sorted(_ENTRY_KEYS)}")
    path = _str(raw["path"], f"{where}.path")
    check_relative_path(path, f"{where}.path")
    kind = raw["kind"]
    if kind not in _KINDS:
        raise _fail(f"{where}.kind", f"must be one of {', '.join(_KINDS)}")
    size = _int(raw["size"], f"{where}.size")
    mode = _int(raw["mode"], f"{where}.mode")
    if mode > 0o7777:
        raise _fail(f"{where}.mode", "must be permission bits (<= 0o7777)")
    sha256 = raw["sha256"]
    cid = raw["cid"]
    target = raw["target"]
    if cid is not None and not isinstance(cid, CID):
        raise _fail(f"{where}.cid", "must be a CID or null")
    if cid is not None:
        allowed = CONTENT_LINK if kind == "file" else DIRECTORY_LINK if kind == "dir" else frozenset({DAG_PB})
        problem = link_problem(cid, allowed, f"{where}.cid")
        if problem is not None:
            raise _fail(f"{where}.cid", problem.removeprefix(f"{where}.cid "))
    if kind == "file":
        if not isinstance(sha256, bytes) or len(sha256) != 32:
            raise _fail(f"{where}.sha256", "must be 32 bytes for a file")
        if cid is None:
            raise _fail(f"{where}.cid", "is required for a file")
    elif sha256 is not None:
        raise _fail(f"{where}.sha256", f"must be null for a {kind}")
    if kind == "symlink":
        target = _str(target, f"{where}.target")
        if not target or "\x00" in target:
            raise _fail(f"{where}.target", "must be a non-empty string without NUL")
    elif target is not None:
        raise _fail(f"{where}.target", f"must be null for a {kind}")
    return FileEntry(path, cast(EntryKind, kind), size, sha256, mode, cid, target)


def decode_snapshot_manifest(data: bytes) -> SnapshotManifest:
    """Parse and validate manifest bytes; ManifestError (with ``field``) on anything unexpected.

    Beyond the schema: entries must be sorted by path without duplicates, and
    every entry's parent must be listed as a directory, so a replay can create
    the tree top-down and never write through a symlink it created itself.
    """
    try:
        obj = dagcbor.decode(data)
    except dagcbor.DagCborError as exc:
        raise ManifestError(f"invalid snapshot manifest: not canonical dag-cbor ({exc})") from exc
    if not isinstance(obj, dict):
        raise _fail("manifest", "must be a map")
    keys = set(obj)
    if keys != _TOP_KEYS:
        raise _fail("manifest", f"has keys {sorted(keys)}, expected {sorted(_TOP_KEYS)}")
    if obj["type"] != MANIFEST_TYPE:
        raise _fail("type", f"must be {MANIFEST_TYPE!r}")
    if obj["v"] != MANIFEST_VERSION:
        raise _fail("v", f"must be {MANIFEST_VERSION}")
    location = _str(obj["location"], "location")
    if not location:
        raise _fail("location", "is empty")
    root = obj["root"]
    if not isinstance(root, CID):
        raise _fail("root", "must be a CID")
    problem = link_problem(root, DIRECTORY_LINK, "root")
    if problem is not None:
        raise _fail("root", problem.removeprefix("root "))
    time = _int(obj["time"], "time")
    agent = _str(obj["agent"], "agent")
    checkpoint = obj["checkpoint"]
    if checkpoint is not None:
        checkpoint = _int(checkpoint, "checkpoint")
    raw_files = obj["files"]
    if not isinstance(raw_files, list):
        raise _fail("files", "must be a list")
    files = [_entry(raw, i) for i, raw in enumerate(raw_files)]
    kinds: dict[str, str] = {}
    previous: bytes | None = None
    for i, entry in enumerate(files):
        encoded = entry.path.encode("utf-8")
        if previous is not None and encoded <= previous:
            raise _fail(f"files[{i}].path", f"{entry.path!r} is out of order or duplicated")
        previous = encoded
        parent = entry.path.rpartition("/")[0]
        if parent and kinds.get(parent) != "dir":
            raise _fail(f"files[{i}].path", f"{entry.path!r} has no directory entry for {parent!r}")
        kinds[entry.path] = entry.kind
    return SnapshotManifest(location, root, time, agent, checkpoint, files)
