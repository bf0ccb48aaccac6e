"""`replay state`: a location exactly as it was at a time, rebuilt from a snapshot and the records after it.

The algorithm:

1. take the verified records that affect the location (a file, or a
   directory and everything below it) up to the time, optionally only one
   user's;
2. restore the latest snapshot of the location (or of a directory above it)
   taken at or before the time, after checking its manifest against the
   snapshot record and the contract's snapshot anchor; records older than
   the snapshot are already in it;
3. apply the remaining records in order to an in-memory view, checking
   before every step that the current content is the record's ``before``;
   a mismatch is reported with the record that broke the chain (a replay
   filtered by user is expected to diverge, and says where);
4. write the final view into ``--out``: every path checked to stay inside,
   every file's content verified against its recorded sha256.

If writing fails half way, ``--out`` is emptied (or removed when the replay
created it) before the error is reported, so a partial tree never looks
like a result.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from provanchor.chain.client import LedgerClient
from provanchor.errors import NothingRecorded, ReplayError, UsageError
from provanchor.formats.cid import CID
from provanchor.formats.snapshot_manifest import SnapshotManifest, decode_snapshot_manifest, resource_id
from provanchor.index.timeparse import format_time
from provanchor.ipfs.client import IpfsClient
from provanchor.progress import ProgressFn
from provanchor.records import file_location, parse_file_location
from provanchor.replay.content import Blob, ContentWriter
from provanchor.replay.paths import OutputTree, check_relative_path, refuse_overlap, symlink_escapes
from provanchor.replay.source import IndexedRecord, LedgerRecords
from provanchor.replay.tree import Node, ReplayTree, Step, StepOutcome

__all__ = ["ReplayedFile", "SnapshotUsed", "StateReplay", "replay_state", "restore_tree", "snapshot_of"]


@dataclass(frozen=True)
class SnapshotUsed:
    snapshot_id: str
    record_id: str
    location: str
    time: int
    files: int

    def to_json(self) -> dict[str, object]:
        return {
            "snapshot_id": self.snapshot_id,
            "record_id": self.record_id,
            "location": self.location,
            "time": format_time(self.time),
            "files": self.files,
        }


@dataclass(frozen=True)
class ReplayedFile:
    path: str
    kind: str
    sha256: bytes | None
    size: int | None
    mode: int | None
    target: str | None = None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "path": self.path,
            "kind": self.kind,
            "sha256": self.sha256.hex() if self.sha256 is not None else None,
            "size": self.size,
            "mode": f"{self.mode:04o}" if self.mode is not None else None,
        }
        if self.target is not None:
            data["target"] = self.target
        return data


@dataclass
class StateReplay:
    location: str
    at: int
    out: Path
    snapshot: SnapshotUsed | None
    steps: list[Step]
    files: list[ReplayedFile]
    user: str | None = None
    problems: list[str] = field(default_factory=list)
    from_cache: int = 0
    from_ipfs: int = 0

    @property
    def breaks(self) -> list[Step]:
        return [s for s in self.steps if s.outcome == StepOutcome.BREAK]

    @property
    def applied(self) -> int:
        return sum(1 for s in self.steps if s.outcome == StepOutcome.APPLIED)

    @property
    def ok(self) -> bool:
        return not self.breaks and not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "location": self.location,
            "at": format_time(self.at),
            "user": self.user,
            "out": str(self.out),
            "snapshot": self.snapshot.to_json() if self.snapshot is not None else None,
            "records": len(self.steps),
            "applied": self.applied,
            "already_in_snapshot": sum(1 for s in self.steps if s.outcome == StepOutcome.ALREADY),
            "breaks": [s.to_json() for s in self.breaks],
            "problems": self.problems,
            "files": [f.to_json() for f in self.files],
            "content_from_cache": self.from_cache,
            "content_from_ipfs": self.from_ipfs,
        }


# ---------------------------------------------------------------------------- snapshots


def snapshot_of(item: IndexedRecord, ipfs: IpfsClient, ledger: LedgerClient) -> SnapshotManifest:
    """The snapshot's manifest, checked against its record and the contract's snapshot anchor."""
    record = item.record
    payload = record.payload or {}
    manifest_cid, state_root = payload.get("manifest"), payload.get("state_root")
    if not isinstance(manifest_cid, CID) or not isinstance(state_root, bytes):
        raise ReplayError(f"snapshot record {item.record_id} does not name a manifest and a state root")
    manifest = decode_snapshot_manifest(ipfs.get_block(manifest_cid))
    if manifest.location != record.location:
        raise ReplayError(f"snapshot {manifest_cid} is of {manifest.location}, its record says {record.location}")
    if manifest.state_root() != state_root:
        raise ReplayError(f"snapshot {manifest_cid}: its entries do not give the state root its record carries")
    key = resource_id(manifest.location)
    wanted = manifest_cid.to_bytes()
    for index in reversed(range(ledger.snapshot_count(key))):
        anchored = ledger.snapshot(key, index)
        if anchored.cid == wanted:
            if anchored.state_root != state_root or anchored.agent.lower() != record.agent:
                raise ReplayError(f"snapshot {manifest_cid} is anchored with another state root or agent")
            return manifest
    raise ReplayError(f"snapshot {manifest_cid} is not anchored on the ledger's snapshot anchor")


def _relative(path: str, root: str, root_is_file: bool) -> str | None:
    """``path`` relative to the replayed location, None when outside it (the file itself keeps its name)."""
    if path == root:
        return posixpath.basename(root) if root_is_file and root != "/" else None
    prefix = root if root.endswith("/") else root + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def _load_snapshot(tree: ReplayTree, manifest: SnapshotManifest, path: str) -> bool:
    """Put the snapshot's entries at or below ``path`` into the view; whether ``path`` is a file there."""
    _, snapshot_root = parse_file_location(manifest.location)
    inner = "" if path == snapshot_root else (_relative(path, snapshot_root, root_is_file=False) or "")
    is_file = False
    for entry in manifest.files:
        if inner == "":
            relative = entry.path
        elif entry.path == inner:
            is_file = entry.kind != "dir"
            relative = posixpath.basename(inner)
        elif entry.path.startswith(inner + "/"):
            relative = entry.path[len(inner) + 1 :]
        else:
            continue
        if entry.kind == "dir":
            tree.dirs.add(relative)
            continue
        tree.nodes[relative] = Node(entry.kind, entry.sha256, entry.size, entry.cid, entry.mode, entry.target)
    return is_file


# ---------------------------------------------------------------------------- replay


def replay_state(
    records: LedgerRecords,
    ipfs: IpfsClient,
    ledger: LedgerClient,
    location: str,
    at_ns: int,
    out: str | os.PathLike[str],
    *,
    user: str | None = None,
    force: bool = False,
    cache_dir: Path | None = None,
    verify_cache: bool = False,
    progress: ProgressFn | None = None,
) -> StateReplay:
    """Rebuild ``location`` (a ``file://`` URI) as of ``at_ns`` into ``out``; see the module docstring."""
    if not location.startswith("file://"):
        raise UsageError(f"replay state needs a file location, got {location!r:.80}")
    host, path = parse_file_location(location)
    _refuse_overlap(host, path, out)
    output = OutputTree(out, force=force)  # checked now, created or emptied only once there is something to write
    try:
        writer = ContentWriter(ipfs, cache_dir, verify_every_byte=verify_cache)
        return _replay(records, ipfs, ledger, location, host, path, at_ns, output, user, writer, progress)
    except BaseException:
        output.discard()
        raise


def _refuse_overlap(host: str, path: str, out: str | os.PathLike[str]) -> None:
    """On the machine whose data is replayed, --out must not be (or hold, or sit in) the live location."""
    from provanchor.hostid import default_host_id

    if host == default_host_id():
        refuse_overlap(out, path, "the replayed location")


def _replay(
    records: LedgerRecords,
    ipfs: IpfsClient,
    ledger: LedgerClient,
    location: str,
    host: str,
    path: str,
    at_ns: int,
    output: OutputTree,
    user: str | None,
    writer: ContentWriter,
    progress: ProgressFn | None,
) -> StateReplay:
    tree = ReplayTree()
    used: SnapshotUsed | None = None
    started = finished = -1
    root_is_file = False
    snapshots = records.snapshots(host, path, at_ns)
    if snapshots:
        item = snapshots[0]
        manifest = snapshot_of(item, ipfs, ledger)
        root_is_file = _load_snapshot(tree, manifest, path)
        payload = item.record.payload or {}
        started_ns = payload.get("started")
        finished = manifest.time
        started = started_ns if isinstance(started_ns, int) and started_ns <= finished else finished
        used = SnapshotUsed(str(payload["manifest"]), item.record_id, manifest.location, manifest.time, len(tree.nodes))
    affecting = [c for c in records.affecting(host, path, at_ns, user) if c.time >= started]
    if used is None and not affecting:
        raise NothingRecorded(f"nothing is recorded for {location} at or before {format_time(at_ns)}")
    if not root_is_file:
        root_is_file = path != "/" and any(c.location == location for c in affecting)
    if progress is not None:
        progress("applying records", 0, len(affecting))
        writer.progress = progress
    steps: list[Step] = []
    for change in affecting:
        relative = _relative_of(change.location, host, path, root_is_file)
        source = _relative_of(change.from_location, host, path, root_is_file)
        if relative is None and source is None:
            continue
        steps.append(tree.apply(change, relative, source, change.time <= finished))
    output.prepare()
    result = StateReplay(location, at_ns, output.root, used, steps, [], user)
    result.files, result.problems = restore_tree(tree, output, writer)
    result.from_cache, result.from_ipfs = writer.from_cache, writer.from_ipfs
    return result


def _relative_of(location: object, host: str, root: str, root_is_file: bool) -> str | None:
    """A record location's path relative to the replayed root; None when it is outside."""
    if not isinstance(location, str) or not location.startswith("file://"):
        return None
    prefix = _location_prefix(host, root)
    relative: str | None
    if "%" in location:  # percent-encoded names: parse properly
        record_host, record_path = parse_file_location(location)
        relative = _relative(record_path, root, root_is_file) if record_host == host else None
    elif location.startswith(prefix):  # the common case, without parsing the URI
        relative = location[len(prefix) :]
    elif location == prefix[:-1]:  # the root itself
        relative = _relative(root, root, root_is_file)
    else:
        relative = None
    return None if relative is None else check_relative_path(relative, f"record location {location!r:.120}")


@lru_cache(maxsize=16)
def _location_prefix(host: str, root: str) -> str:
    """``file://HOST/ROOT/``: the start of every location strictly below ``root``."""
    return file_location(host, root).rstrip("/") + "/"


# ---------------------------------------------------------------------------- writing


def restore_tree(tree: ReplayTree, output: OutputTree, writer: ContentWriter) -> tuple[list[ReplayedFile], list[str]]:
    """Write the view into ``output``: directories, verified file contents, symlinks, then modes.

    Every path is validated (and parent/child conflicts found) before the
    first write. Not written, and returned as problems: files whose content
    was never recorded, and symlinks whose target leads out of the tree
    (absolute, or climbing above it): restoring them would point outside.
    """
    problems: list[str] = []
    for relative in sorted(tree.nodes):
        check_relative_path(relative, "a path")
        node = tree.nodes[relative]
        parent = posixpath.dirname(relative)
        while parent:
            above = tree.nodes.get(parent)
            if above is not None:
                raise ReplayError(f"cannot restore {relative!r}: {parent!r} is a {above.kind} in the replayed state")
            parent = posixpath.dirname(parent)
    directories = set(tree.dirs)
    for relative in tree.nodes:
        parent = posixpath.dirname(relative)
        while parent:
            directories.add(parent)
            parent = posixpath.dirname(parent)
    for relative in sorted(directories, key=lambda p: (p.count("/"), p)):
        output.join(relative).mkdir(exist_ok=True)
    writes: list[tuple[Blob, Path, str]] = []
    files: list[ReplayedFile] = []
    for relative in sorted(tree.nodes):
        node = tree.nodes[relative]
        if node.kind == "symlink":
            if symlink_escapes(relative, node.target or ""):
                problems.append(f"{relative}: refused symlink to {node.target!r}, it leads out of --out; not written")
                continue
            os.symlink(node.target or "", output.join(relative))
            files.append(ReplayedFile(relative, "symlink", None, None, None, node.target))
            continue
        if node.sha256 is None or node.size is None:
            problems.append(f"{relative}: its content was never recorded (set by {node.origin_text()}); not written")
            continue
        writes.append((Blob(node.sha256, node.size, node.cid), output.join(relative), relative))
        files.append(ReplayedFile(relative, "file", node.sha256, node.size, node.mode))
    writer.write_all(writes)
    for relative in sorted(tree.nodes):
        node = tree.nodes[relative]
        if node.kind == "file" and node.mode is not None and node.sha256 is not None:
            os.chmod(output.join(relative), node.mode)
    return files, problems
