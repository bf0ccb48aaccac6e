"""The replayed state as a map of paths to content hashes, and how each record changes it.

Replay applies records to this in-memory view first, checking every step's
``before`` against it; content is only written to disk once the final state
is known. So a file rewritten a hundred times costs a hundred hash
comparisons and one fetch, and every path is validated before anything is
written.

Paths are relative to the replayed location (``""`` is the location itself
when it is a file).

Around a snapshot the view is uncertain for a moment: a file written while
the snapshot was being read may be in it already, although its record was
sequenced later (or earlier). Two rules absorb exactly that and nothing more:

- a record from before the snapshot finished is applied only if its
  ``before`` matches, and otherwise counted as already in the snapshot;
- the first record of a path after the snapshot whose ``after`` is already
  the current content is counted as already in the snapshot.

Anything else that does not match is a break in the chain, reported with
the record that caused it.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from provanchor.formats.cid import CID
from provanchor.index.store import record_id
from provanchor.records import ContentRef, Op
from provanchor.replay.source import FileChange

__all__ = ["Node", "ReplayTree", "Step", "StepOutcome"]

NodeKind = Literal["file", "symlink", "dir"]


@dataclass
class Node:
    kind: NodeKind
    sha256: bytes | None = None
    size: int | None = None
    cid: CID | None = None
    mode: int | None = None
    target: str | None = None
    origin: bytes | None = None
    """The hash of the record that set the current content; None when it came from the snapshot."""

    def origin_text(self) -> str:
        return "the snapshot" if self.origin is None else f"record {record_id(self.origin)}"


class StepOutcome(StrEnum):
    APPLIED = "applied"
    ALREADY = "already-in-snapshot"
    BREAK = "break"


@dataclass(frozen=True)
class Step:
    record_hash: bytes
    agent: str
    seq: int
    time: int
    op: str
    path: str
    outcome: StepOutcome
    detail: str | None = None

    @property
    def record_id(self) -> str:
        return record_id(self.record_hash)

    def to_json(self) -> dict[str, object]:
        return {
            "record_id": self.record_id,
            "agent": self.agent,
            "seq": self.seq,
            "time": self.time,
            "op": self.op,
            "path": self.path,
            "outcome": self.outcome.value,
            "detail": self.detail,
        }


def _short(sha: bytes | None) -> str:
    return "absent" if sha is None else sha.hex()[:16]


@dataclass
class ReplayTree:
    nodes: dict[str, Node] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    """Directories that exist with nothing recorded in them (from the snapshot)."""
    touched: set[str] = field(default_factory=set)
    """Paths a record after the snapshot already changed (the boundary rule applies once per path)."""

    def apply(self, record: FileChange, path: str | None, source: str | None, before_snapshot_end: bool) -> Step:
        """Apply one record; ``path``/``source`` are its (new, old) relative paths, None when outside."""

        def step(outcome: StepOutcome, detail: str | None = None) -> Step:
            shown = path if path is not None else (source or "")
            op = record.op.value
            return Step(record.record_hash, record.agent, record.seq, record.time, op, shown, outcome, detail)

        target = path if path is not None else source
        assert target is not None
        expected = record.before.sha256 if record.before is not None else None
        if record.op == Op.RENAME:
            # The moved file is checked at its old path; one moved in from outside cannot be checked here.
            current = self.nodes.get(source) if source is not None else None
            matches = source is None or _content_matches(current, expected)
        else:
            current = self.nodes.get(target)
            matches = current is None if record.op == Op.CREATE else _content_matches(current, expected)
        if before_snapshot_end:
            if not matches:
                return step(StepOutcome.ALREADY, "before the snapshot finished; the snapshot has a later state")
        elif not matches:
            if self._already(record, path, target) and target not in self.touched:
                self.touched.add(target)
                return step(StepOutcome.ALREADY, "the snapshot already holds this record's result")
            detail = _mismatch(record, current, expected)
            self._change(record, path, source)
            self.touched.add(target)
            return step(StepOutcome.BREAK, detail)
        self._change(record, path, source)
        self.touched.add(target)
        return step(StepOutcome.APPLIED)

    def _already(self, record: FileChange, path: str | None, target: str) -> bool:
        """Whether the view already shows this record's result (the snapshot boundary rule)."""
        if record.op == Op.DELETE or path is None:
            return target not in self.nodes
        current = self.nodes.get(path)
        if record.op == Op.CHMOD:
            return current is not None and current.mode == _permissions(record.mode)
        return current is not None and record.after is not None and current.sha256 == record.after.sha256

    # ------------------------------------------------------------ changes

    def _change(self, record: FileChange, path: str | None, source: str | None) -> None:
        op = record.op
        if op == Op.DELETE:
            self.nodes.pop(path if path is not None else source or "", None)
            return
        if op == Op.RENAME:
            moved = self.nodes.pop(source, None) if source is not None else None
            if path is None:
                return  # moved out of the location
            node = moved or _node_from(record.after, None, record.record_hash)
            after = record.after
            if after is not None and (after.sha256 != node.sha256 or after.cid is not None):
                node.sha256, node.size, node.cid = after.sha256, after.size, after.cid or node.cid
            self.nodes[path] = node
            return
        assert path is not None
        existing = self.nodes.get(path)
        if op == Op.CHMOD:
            if existing is None:
                existing = _node_from(record.after or record.before, None, record.record_hash)
                self.nodes[path] = existing
            existing.mode = _permissions(record.mode)
            return
        if existing is None or op == Op.CREATE:
            node = Node("file", mode=_permissions(record.mode) if record.mode is not None else None)
            self.nodes[path] = node
        else:
            node = existing
        content = record.after
        node.kind = "file"
        node.target = None
        node.sha256 = content.sha256 if content is not None else None
        node.size = content.size if content is not None else None
        node.cid = content.cid if content is not None else None
        node.origin = record.record_hash


def _content_matches(current: Node | None, expected: bytes | None) -> bool:
    """The file exists and, when the record names its previous content, has exactly that content."""
    if current is None:
        return False
    return expected is None or (current.kind == "file" and current.sha256 == expected)


def _mismatch(record: FileChange, current: Node | None, expected: bytes | None) -> str:
    have = "absent" if current is None else _short(current.sha256)
    origin = "" if current is None else f" (set by {current.origin_text()})"
    if record.op == Op.CREATE:
        return f"record creates the file but it exists with content {have}{origin}"
    return f"record expects content {_short(expected)} but replay has {have}{origin}"


def _node_from(ref: ContentRef | None, mode: int | None, origin: bytes) -> Node:
    if ref is None:
        return Node("file", mode=mode, origin=origin)
    return Node("file", ref.sha256, ref.size, ref.cid, mode, origin=origin)


def _permissions(mode: int | None) -> int | None:
    return None if mode is None else stat.S_IMODE(mode)
