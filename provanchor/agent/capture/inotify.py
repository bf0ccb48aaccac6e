"""The fallback backend: recursive inotify watches. Works unprivileged; cannot name writers.

inotify watches single directories, so the watcher keeps one watch per
directory and maintains them as the tree changes:

- a directory that appears (mkdir, or moved in) is watched at once, then
  listed: whatever was created in it before its watch existed is reported
  from the listing as CREATE (+ CLOSE_WRITE for files), so a `mkdir d; echo >
  d/f` burst loses nothing. A real CREATE that duplicates a listed entry is
  dropped.
- IN_MOVED_FROM/IN_MOVED_TO are paired by cookie into one RENAME, emitted at
  the position of the MOVED_FROM. The kernel queues both halves within the
  same rename(2), so a MOVED_FROM still unpaired after a short grace period
  moved out of the watched trees and becomes a DELETE; an unpaired MOVED_TO
  moved in and becomes CREATE (+ CLOSE_WRITE, or a listing for a directory).
- IN_Q_OVERFLOW becomes OVERFLOW, and every watch is re-established from a
  fresh walk, since directories may have appeared or moved unseen.

`exclude_pids` is accepted for interface parity but cannot be honoured: inotify
does not say which process acted.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from provanchor.agent.capture import _libc
from provanchor.agent.capture import inotify_abi as abi
from provanchor.agent.capture._descriptor import WatcherDescriptor
from provanchor.agent.capture.events import EventKind, RawEvent
from provanchor.agent.capture.paths import canonical_roots, join
from provanchor.errors import CaptureError

log = logging.getLogger(__name__)

CHANGE_MASK = (
    abi.IN_CREATE
    | abi.IN_MODIFY
    | abi.IN_CLOSE_WRITE
    | abi.IN_DELETE
    | abi.IN_MOVED_FROM
    | abi.IN_MOVED_TO
    | abi.IN_ATTRIB
    | abi.IN_DELETE_SELF
    | abi.IN_MOVE_SELF
)
# Same reasoning as fanotify: IN_OPEN cannot tell a read-open from a write-open.
READ_MASK = abi.IN_ACCESS | abi.IN_CLOSE_NOWRITE
_WATCH_FLAGS = abi.IN_ONLYDIR | abi.IN_DONT_FOLLOW | abi.IN_EXCL_UNLINK
_CHUNK_SIZE = 256 * 1024
_MAX_CHUNKS_PER_READ = 64
_MOVE_GRACE_S = 0.005


@dataclass
class _PendingMove:
    index: int  # of the placeholder DELETE in this read()'s output
    path: str
    is_dir: bool
    subtree: dict[int, str] = field(default_factory=dict)  # wd -> path suffix below the moved directory


class InotifyWatcher(WatcherDescriptor):
    """Watches directory trees through inotify; events carry no pid or process."""

    _name = "inotify"

    def __init__(self, paths: Sequence[str], exclude_pids: Collection[int] = (), want_reads: bool = False) -> None:
        self.roots = canonical_roots(paths)
        self._root_set = frozenset(self.roots)
        self._mask = CHANGE_MASK | _WATCH_FLAGS | (READ_MASK if want_reads else 0)
        super().__init__()
        self._paths: dict[int, str] = {}  # wd -> directory
        self._wds: dict[str, int] = {}  # directory -> wd
        self._moves: dict[int, _PendingMove] = {}  # cookie -> MOVED_FROM awaiting its MOVED_TO
        self._listed: set[str] = set()  # reported from a listing; their real CREATE may still be queued
        self._last_read: set[str] = set()  # paths whose last event in this read() was OPEN_READ

    @property
    def backend(self) -> str:
        return "inotify"

    @property
    def attributed(self) -> bool:
        return False

    @property
    def watch_count(self) -> int:
        return len(self._paths)

    def start(self) -> None:
        if self._fd >= 0:
            return
        try:
            self._fd = _libc.inotify_init1(abi.IN_NONBLOCK | abi.IN_CLOEXEC)
        except OSError as exc:
            raise CaptureError(f"inotify unavailable: {exc.strerror}") from None
        try:
            for root in self.roots:
                if self._watch_tree(root, None, 0, strict=True) is None:
                    raise CaptureError(f"cannot watch {root!r}: it vanished or is not readable")
        except BaseException:
            self.close()
            raise
        self._adopt(self._fd)

    def close(self) -> None:
        self._close_fd()
        self._paths.clear()
        self._wds.clear()
        self._moves.clear()

    def read(self, timeout: float) -> list[RawEvent]:
        """Wait up to `timeout` seconds, then drain what the kernel has queued; may return []."""
        fd = self.fileno()
        if not self._poll.poll(max(0.0, timeout) * 1000.0):
            return []
        out: list[RawEvent] = []
        self._last_read.clear()
        for _ in range(_MAX_CHUNKS_PER_READ):
            if not self._read_chunk(fd, out):
                break
        deadline = time.monotonic() + _MOVE_GRACE_S
        while self._moves:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(remaining * 1000.0):
                break
            self._read_chunk(fd, out)
        for move in self._moves.values():  # moved out of the watched trees: the DELETE placeholder stands
            for wd in move.subtree:
                with contextlib.suppress(OSError):
                    _libc.inotify_rm_watch(fd, wd)
        self._moves.clear()
        return out

    def _read_chunk(self, fd: int, out: list[RawEvent]) -> bool:
        try:
            chunk = os.read(fd, _CHUNK_SIZE)
        except BlockingIOError:
            # Queue drained: every real CREATE of a listed entry has been read by now.
            self._listed.clear()
            return False
        now = time.time_ns()
        for wd, mask, cookie, name in abi.parse_events(chunk):
            self._handle(wd, mask, cookie, name, now, out)
        return bool(chunk)

    # ------------------------------------------------------------ event handling

    def _handle(self, wd: int, mask: int, cookie: int, name: str, now: int, out: list[RawEvent]) -> None:
        if mask & abi.IN_Q_OVERFLOW:
            out.append(RawEvent(EventKind.OVERFLOW, "", None, False, None, None, now))
            self._resync()
            return
        if mask & abi.IN_IGNORED:
            self._forget(wd)
            return
        base = self._paths.get(wd)
        if base is None:  # a watch already removed, or one detached by a pending move
            return
        is_dir = bool(mask & abi.IN_ISDIR)
        if not name:
            self._handle_self(base, mask, now, out)
            return
        path = join(base, name)

        def emit(kind: EventKind) -> None:
            out.append(RawEvent(kind, path, None, is_dir, None, None, now))

        if mask & abi.IN_CREATE:
            if path in self._listed:
                self._listed.discard(path)
            else:
                emit(EventKind.CREATE)
                if is_dir:
                    self._watch_tree(path, out, now)
        if mask & abi.IN_MODIFY:
            emit(EventKind.MODIFY)
        if mask & abi.IN_ATTRIB:
            emit(EventKind.ATTRIB)
        if mask & abi.IN_CLOSE_WRITE:
            emit(EventKind.CLOSE_WRITE)
        if mask & READ_MASK and not is_dir:
            if path not in self._last_read:
                emit(EventKind.OPEN_READ)
                self._last_read.add(path)
            return
        self._last_read.discard(path)
        if mask & abi.IN_MOVED_FROM:
            self._moved_from(cookie, path, is_dir, now, out)
        if mask & abi.IN_MOVED_TO:
            self._moved_to(cookie, path, is_dir, now, out)
        if mask & abi.IN_DELETE:
            self._listed.discard(path)
            emit(EventKind.DELETE)

    def _handle_self(self, directory: str, mask: int, now: int, out: list[RawEvent]) -> None:
        """Events on a watched directory itself matter only for roots: the parent reports the rest."""
        if directory not in self._root_set:
            return
        if mask & abi.IN_ATTRIB:
            out.append(RawEvent(EventKind.ATTRIB, directory, None, True, None, None, now))
        if mask & (abi.IN_DELETE_SELF | abi.IN_MOVE_SELF):
            out.append(RawEvent(EventKind.DELETE, directory, None, True, None, None, now))
            if mask & abi.IN_MOVE_SELF:  # its watches would now report paths that no longer exist
                for wd in self._detach(directory):
                    with contextlib.suppress(OSError):
                        _libc.inotify_rm_watch(self._fd, wd)

    def _moved_from(self, cookie: int, path: str, is_dir: bool, now: int, out: list[RawEvent]) -> None:
        self._listed.discard(path)
        subtree = self._detach(path) if is_dir else {}
        out.append(RawEvent(EventKind.DELETE, path, None, is_dir, None, None, now))
        self._moves[cookie] = _PendingMove(len(out) - 1, path, is_dir, subtree)

    def _moved_to(self, cookie: int, path: str, is_dir: bool, now: int, out: list[RawEvent]) -> None:
        move = self._moves.pop(cookie, None)
        if move is not None:
            out[move.index] = RawEvent(EventKind.RENAME, path, move.path, is_dir, None, None, now)
            for wd, suffix in move.subtree.items():
                self._paths[wd] = path + suffix
                self._wds[path + suffix] = wd
            return
        # Moved in from outside: new files for the consumer, with their content complete.
        out.append(RawEvent(EventKind.CREATE, path, None, is_dir, None, None, now))
        if is_dir:
            self._watch_tree(path, out, now)
        else:
            out.append(RawEvent(EventKind.CLOSE_WRITE, path, None, False, None, None, now))

    # ------------------------------------------------------------ watch bookkeeping

    def _watch(self, path: str, out: list[RawEvent] | None, now: int, strict: bool = False) -> int | None:
        try:
            wd = _libc.inotify_add_watch(self._fd, path, self._mask)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                return None  # vanished, not a directory any more, or unreadable
            limit = _read_sysctl("/proc/sys/fs/inotify/max_user_watches")
            message = f"inotify watch limit reached (fs.inotify.max_user_watches={limit}) at {path!r}"
            if strict:
                raise CaptureError(message) from None
            log.warning("%s: changes below it are not seen", message)
            if out is not None:
                out.append(RawEvent(EventKind.OVERFLOW, "", None, False, None, None, now))
            return None
        previous = self._paths.get(wd)
        if previous is not None and previous != path and self._wds.get(previous) == wd:
            del self._wds[previous]
        self._paths[wd] = path
        self._wds[path] = wd
        return wd

    def _watch_tree(self, top: str, out: list[RawEvent] | None, now: int, strict: bool = False) -> int | None:
        """Watch `top` and every directory below it, each before it is listed.

        With `out`, the directory appeared while watching: report what the
        listings find, since it may predate the watches.
        """
        wd = self._watch(top, out, now, strict)
        if wd is None:
            return None
        stack = [top]
        while stack:
            directory = stack.pop()
            try:
                with os.scandir(directory) as entries:
                    children = list(entries)
            except OSError:
                continue
            for entry in children:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir and self._watch(entry.path, out, now, strict) is None:
                    continue
                if out is not None:
                    self._listed.add(entry.path)
                    out.append(RawEvent(EventKind.CREATE, entry.path, None, is_dir, None, None, now))
                    if not is_dir:
                        out.append(RawEvent(EventKind.CLOSE_WRITE, entry.path, None, False, None, None, now))
                if is_dir:
                    stack.append(entry.path)
        return wd

    def _detach(self, top: str) -> dict[int, str]:
        """Unmap the watches of `top` and below (the kernel keeps them) and return wd -> suffix."""
        prefix = top + "/"
        subtree: dict[int, str] = {}
        for path, wd in list(self._wds.items()):
            if path == top or path.startswith(prefix):
                del self._wds[path]
                self._paths.pop(wd, None)
                subtree[wd] = path[len(top) :]
        return subtree

    def _forget(self, wd: int) -> None:
        path = self._paths.pop(wd, None)
        if path is not None and self._wds.get(path) == wd:
            del self._wds[path]

    def _resync(self) -> None:
        """After lost events: re-derive every watch from the trees as they are now."""
        old = dict(self._paths)
        self._paths.clear()
        self._wds.clear()
        self._listed.clear()
        self._moves.clear()
        for root in self.roots:
            self._watch_tree(root, None, 0)
        for wd in old.keys() - self._paths.keys():
            with contextlib.suppress(OSError):
                _libc.inotify_rm_watch(self._fd, wd)


def _read_sysctl(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return "?"
