"""What the capture layer hands upward: one `RawEvent` per file change.

Events are deliberately raw: no hashing, no deduplication across batches and no
interpretation beyond turning kernel bitmasks into kinds and file handles into
paths. The recorder above decides what a change means; this layer only has to
be complete and say honestly who did it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EventKind(StrEnum):
    """The kinds of change the agent records.

    OVERFLOW is not a change: it says events were lost (kernel queue overflow,
    a directory that could not be watched), so the consumer must rescan.
    """

    CREATE = "create"
    MODIFY = "modify"
    CLOSE_WRITE = "close_write"
    DELETE = "delete"
    RENAME = "rename"
    ATTRIB = "attrib"
    OPEN_READ = "open_read"
    OVERFLOW = "overflow"


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A snapshot of the process behind an event, taken as soon as the event is read.

    Short-lived writers often exit before their events are read; then the
    fields that can no longer be read are None (or argv is empty) and `reason`
    says why, so a record never carries a guessed writer.
    """

    pid: int
    exe: str | None
    argv: tuple[str, ...]
    cwd: str | None
    uid: int | None
    user: str | None
    # Container or cgroup identity from /proc/PID/cgroup: "docker://<id>",
    # "containerd://<id>", "podman://<id>", ..., else the cgroup path.
    container: str | None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One change to one path, in the order the kernel reported it.

    - `path` is absolute with symlinks resolved, and lies under a watched
      directory ("" for OVERFLOW).
    - `old_path`: for RENAME the previous name (a RENAME onto an existing name
      replaces that file; no DELETE is reported for it). For a CREATE caused by
      a move into the watched tree, the fanotify backend also gives where it
      came from. Moves out of the tree are DELETEs, moves in are CREATEs (with
      CLOSE_WRITE for files, and CREATEs for a moved directory's contents).
    - `pid`/`process` are None when the backend cannot attribute writers
      (inotify) or the writer is outside this PID namespace.
    - `time_ns` is wall-clock time when the event was *read*; the kernel gives
      no timestamp, and reading happens within milliseconds of the change.
    """

    kind: EventKind
    path: str
    old_path: str | None
    is_dir: bool
    pid: int | None
    process: ProcessInfo | None
    time_ns: int
