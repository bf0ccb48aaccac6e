"""The attributed backend: fanotify filesystem marks with file-id reporting.

Why this shape:

- FAN_MARK_FILESYSTEM watches a whole filesystem with one mark, so new
  directories need no bookkeeping and nothing is missed between a mkdir and a
  watch; the price is seeing every other process's traffic on that
  filesystem, so events are filtered by path before anything expensive runs.
- FAN_REPORT_DFID_NAME | FAN_REPORT_FID | FAN_REPORT_TARGET_FID names changes
  by directory + name (deleted files keep their name) and is what FAN_RENAME
  needs to report both names in one event.
- FAN_REPORT_PIDFD lets the process snapshot prove it inspected the event's
  process and not a later one with a recycled pid; a FAN_NOPIDFD means the
  writer had already exited, and then its /proc entry is not trusted at all.
- FAN_UNLIMITED_QUEUE: losing events would mean losing provenance; the
  kernel's memory is the better place to absorb a burst.
- Reads (`want_reads`) use FAN_ACCESS | FAN_CLOSE_NOWRITE, not FAN_OPEN: with
  file-id reporting there is no fd to tell a read-open from a write-open, so
  FAN_OPEN would make every writer look like a reader too. ACCESS (data was
  read) and CLOSE_NOWRITE (a read-only open ended, which also covers empty
  files and mmap) report exactly the reads.

The kernel merges an event that has not been read yet with a later one for the
same file, process and kind of change, so two quick write cycles of one file
may arrive as a single CREATE/MODIFY/CLOSE_WRITE sequence: the content read
after a CLOSE_WRITE is always the latest. A watcher is meant to be read by one
thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import time
from collections.abc import Callable, Collection, Sequence

from provanchor.agent.capture import _libc
from provanchor.agent.capture import fanotify_abi as abi
from provanchor.agent.capture._descriptor import WatcherDescriptor
from provanchor.agent.capture.events import EventKind, ProcessInfo, RawEvent
from provanchor.agent.capture.handles import DirectoryPaths, fsid_bytes, resolve
from provanchor.agent.capture.paths import PathFilter, canonical_roots, join, mount_points_under, walk
from provanchor.agent.capture.procinfo import inspect_process, vanished
from provanchor.errors import CaptureUnavailable

log = logging.getLogger(__name__)

INIT_FLAGS = (
    abi.FAN_CLASS_NOTIF
    | abi.FAN_CLOEXEC
    | abi.FAN_NONBLOCK
    | abi.FAN_UNLIMITED_QUEUE
    | abi.FAN_REPORT_DFID_NAME
    | abi.FAN_REPORT_FID
    | abi.FAN_REPORT_TARGET_FID
)
CHANGE_MASK = (
    abi.FAN_CREATE
    | abi.FAN_MODIFY
    | abi.FAN_CLOSE_WRITE
    | abi.FAN_DELETE
    | abi.FAN_RENAME
    | abi.FAN_ATTRIB
    | abi.FAN_ONDIR
    | abi.FAN_EVENT_ON_CHILD
)
READ_MASK = abi.FAN_ACCESS | abi.FAN_CLOSE_NOWRITE

_EVENT_F_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_LARGEFILE
_MIN_EVENT_WITH_PIDFD = 96  # bytes: metadata + DFID_NAME + FID + PIDFD records, shortest case
_MAX_CHUNKS_PER_READ = 64  # hand events to the caller at least every 64 read() calls
_MAX_QUIETED = 100_000  # ignore marks pin their inodes in kernel memory: at most this many
# Kinds of one (possibly merged) event, in the order they must have happened.
_KIND_BITS = (
    (abi.FAN_CREATE, EventKind.CREATE),
    (abi.FAN_MODIFY, EventKind.MODIFY),
    (abi.FAN_ATTRIB, EventKind.ATTRIB),
    (abi.FAN_CLOSE_WRITE, EventKind.CLOSE_WRITE),
    (abi.FAN_DELETE, EventKind.DELETE),
)
_UNAVAILABLE_HINTS = {
    errno.EPERM: "needs CAP_SYS_ADMIN",
    errno.ENOSYS: "kernel built without fanotify",
    errno.EINVAL: "kernel too old for FAN_RENAME and file-id reporting (needs Linux 5.17+)",
    errno.EMFILE: "too many fanotify instances",
    errno.ENODEV: "filesystem has no usable fsid",
    errno.EOPNOTSUPP: "filesystem cannot encode file handles",
    errno.EXDEV: "filesystem cannot be marked as a whole (subvolume or idmapped mount)",
}


def _unavailable(exc: OSError, where: str = "") -> CaptureUnavailable:
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    hint = _UNAVAILABLE_HINTS.get(exc.errno or 0, exc.strerror or "")
    return CaptureUnavailable(f"fanotify unavailable ({code}: {hint}{where})")


class FanotifyWatcher(WatcherDescriptor):
    """Watches directories through fanotify; every event names its writer's pid and process."""

    _name = "fanotify"

    def __init__(
        self,
        paths: Sequence[str],
        exclude_pids: Collection[int] = (),
        want_reads: bool = False,
        *,
        pid_filter: Callable[[int], bool] | None = None,
        whole_filesystems: bool = False,
        first_only: bool = False,
    ) -> None:
        """`pid_filter` keeps only the events of the pids it accepts, decided before any path is resolved.

        `whole_filesystems`: `paths` are mount points (see `local_mount_points`)
        and everything on them is watched: no directory walk at start (names are
        resolved from file handles), and a filesystem that cannot be marked is
        listed in `unwatched` rather than failing the watch, unless it is the first.

        `first_only`: after the first read and the first modification of a file,
        the kernel is told to stop reporting more of them (an ignore mask on the
        file that survives modification); creations, closes after writing,
        renames and deletions are still all reported. For consumers that need
        only "was it read, was it written" (a recorded run): a program that reads
        or writes a file in thousands of small calls then costs a handful of
        events, not thousands.
        """
        self.roots = canonical_roots(paths)
        self._filter = PathFilter(self.roots)
        self._exclude = frozenset(exclude_pids)
        self._want_reads = want_reads
        self._pid_filter = pid_filter
        self._whole = whole_filesystems
        self.unwatched: list[tuple[str, str]] = []  # (mount point, why) of filesystems that could not be marked
        self._first_only = first_only
        self._quieted: dict[str, int] = {}  # path -> event bits the kernel no longer reports for it
        super().__init__()
        self._mount_fds: dict[bytes, int] = {}
        self._dirs = DirectoryPaths(self._mount_fds, self._filter)
        self.pidfd_mode = False
        self.unresolved = 0  # events whose directory could no longer be named (deleted before being read)
        self._last_read: dict[str, int | None] = {}  # path -> pid of its last event in this read() if a read
        self._chunk_size = _chunk_size()

    @property
    def backend(self) -> str:
        return "fanotify"

    @property
    def attributed(self) -> bool:
        return True

    @property
    def mask(self) -> int:
        return CHANGE_MASK | (READ_MASK if self._want_reads else 0)

    def start(self) -> None:
        if self._fd >= 0:
            return
        try:
            self._fd = _libc.fanotify_init(INIT_FLAGS | abi.FAN_REPORT_PIDFD, _EVENT_F_FLAGS)
            self.pidfd_mode = True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise _unavailable(exc) from None
            try:  # kernel < 5.15: no pidfds, attribution by pid only
                self._fd = _libc.fanotify_init(INIT_FLAGS, _EVENT_F_FLAGS)
            except OSError as exc2:
                raise _unavailable(exc2) from None
        try:
            self._mark_filesystems()
        except BaseException:
            self.close()
            raise
        self._adopt(self._fd)

    def _mark_filesystems(self) -> None:
        marked: set[int] = set()
        required = self.roots[:1] if self._whole else self.roots
        for path in [*self.roots, *([] if self._whole else mount_points_under(self._filter))]:
            try:
                device = os.stat(path).st_dev
                if device in marked:
                    continue
                _libc.fanotify_mark(self._fd, abi.FAN_MARK_ADD | abi.FAN_MARK_FILESYSTEM, self.mask, path)
                fsid = fsid_bytes(path)
                if fsid not in self._mount_fds:
                    self._mount_fds[fsid] = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                if path in required:
                    raise _unavailable(exc, f" on {path}") from None
                log.warning("fanotify: cannot watch the filesystem mounted at %s: %s", path, exc)
                self.unwatched.append((path, str(_unavailable(exc))))
                continue
            marked.add(device)
        if not self._whole:
            for root in self.roots:
                self._dirs.seed(root)

    def close(self) -> None:
        self._close_fd()
        for fd in self._mount_fds.values():
            os.close(fd)
        self._mount_fds.clear()

    def read(self, timeout: float) -> list[RawEvent]:
        """Wait up to `timeout` seconds, then drain what the kernel has queued; may return []."""
        fd = self.fileno()
        if not self._poll.poll(max(0.0, timeout) * 1000.0):
            return []
        out: list[RawEvent] = []
        self._last_read.clear()
        for _ in range(_MAX_CHUNKS_PER_READ):
            try:
                chunk = os.read(fd, self._chunk_size)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._process_chunk(chunk, out)
        return out

    # ------------------------------------------------------------ event handling

    def _process_chunk(self, chunk: bytes, out: list[RawEvent]) -> None:
        try:
            events = abi.parse_events(chunk)
        except abi.MalformedEvent as exc:
            _close_fds(exc.events)
            raise
        now = time.time_ns()
        # pid -> snapshot of a process seen alive in this chunk. Reuse is sound within one read():
        # an event queued after one whose writer was alive at read time cannot come from a
        # successor that recycled the pid (the writer still held it).
        processes: dict[int, ProcessInfo] = {}
        try:
            for event in events:
                self._handle(event, now, processes, out)
        finally:
            _close_fds(events)

    def _handle(
        self, event: abi.FanotifyEvent, now: int, processes: dict[int, ProcessInfo], out: list[RawEvent]
    ) -> None:
        mask = event.mask
        if mask & abi.FAN_Q_OVERFLOW:
            self._dirs.clear()
            out.append(RawEvent(EventKind.OVERFLOW, "", None, False, None, None, now))
            return
        is_dir = bool(mask & abi.FAN_ONDIR)
        if self._pid_filter is not None and not self._pid_filter(event.pid):
            if is_dir and mask & (abi.FAN_RENAME | abi.FAN_DELETE) and len(self._dirs):
                self._dirs.clear()  # another process moved a directory: names learnt so far may be stale
            return
        if mask & abi.FAN_RENAME:
            self._handle_rename(event, is_dir, now, processes, out)
            return
        path = self._path_of(event)
        if path is None:
            return
        if is_dir and mask & abi.FAN_CREATE and event.object_key is not None:
            self._dirs.remember(event.object_key, path)
        if is_dir and mask & abi.FAN_DELETE:
            self._dirs.removed(event.object_key, path)
        if not self._filter.contains(path) or event.pid in self._exclude:
            return
        kinds = [kind for bit, kind in _KIND_BITS if mask & bit]
        if mask & READ_MASK and not is_dir and self._last_read.get(path) != event.pid:
            kinds.insert(1 if kinds and kinds[0] is EventKind.CREATE else 0, EventKind.OPEN_READ)
        if not kinds:
            return
        # A read right after another read of the same file by the same process adds nothing.
        self._last_read[path] = event.pid if kinds[-1] is EventKind.OPEN_READ else None
        if self._first_only and not is_dir:
            self._quiet(path, mask & (READ_MASK | abi.FAN_MODIFY))
        pid, process = self._writer(event, processes)
        for kind in kinds:
            out.append(RawEvent(kind, path, None, is_dir, pid, process, now))

    def _handle_rename(
        self,
        event: abi.FanotifyEvent,
        is_dir: bool,
        now: int,
        processes: dict[int, ProcessInfo],
        out: list[RawEvent],
    ) -> None:
        old = self._entry_path(event.old)
        new = self._entry_path(event.new)
        if is_dir:
            if old is not None and new is not None:
                self._dirs.renamed(event.object_key, old, new)
            elif old is not None:
                self._dirs.removed(event.object_key, old)
        inside_old = old is not None and self._filter.contains(old)
        inside_new = new is not None and self._filter.contains(new)
        if event.pid in self._exclude or not (inside_old or inside_new):
            return
        pid, process = self._writer(event, processes)

        def emit(kind: EventKind, path: str, old_path: str | None = None, directory: bool = is_dir) -> None:
            out.append(RawEvent(kind, path, old_path, directory, pid, process, now))

        if inside_old and inside_new:
            assert old is not None and new is not None
            emit(EventKind.RENAME, new, old)
        elif inside_old:
            assert old is not None
            emit(EventKind.DELETE, old)  # moved out of the watched trees
        else:
            assert new is not None
            # Moved in: for the consumer these are new files, with their content complete.
            emit(EventKind.CREATE, new, old)
            if not is_dir:
                emit(EventKind.CLOSE_WRITE, new)
                return
            for path, child_is_dir in walk(new):
                emit(EventKind.CREATE, path, directory=child_is_dir)
                if child_is_dir:
                    self._dirs.seed(path, limit=1)
                else:
                    emit(EventKind.CLOSE_WRITE, path, directory=False)

    def _quiet(self, path: str, bits: int) -> None:
        """Ask the kernel to stop reporting `bits` for this file (see `first_only`); best effort, bounded."""
        known = self._quieted.get(path, 0)
        if not bits or bits & ~known == 0 or len(self._quieted) >= _MAX_QUIETED:
            return
        flags = abi.FAN_MARK_ADD | abi.FAN_MARK_IGNORED_MASK | abi.FAN_MARK_IGNORED_SURV_MODIFY
        flags |= abi.FAN_MARK_DONT_FOLLOW
        try:
            _libc.fanotify_mark(self._fd, flags, bits | known, path)
        except OSError:
            return  # gone already, or not markable: its events keep coming, which is only slower
        self._quieted[path] = bits | known

    def _entry_path(self, entry: abi.DirEntry | None) -> str | None:
        if entry is None:
            return None
        parent = self._dirs.lookup(entry.dir_key)
        if parent is None:
            self.unresolved += 1
            return None
        return join(parent, entry.name)

    def _path_of(self, event: abi.FanotifyEvent) -> str | None:
        if event.entry is not None:
            return self._entry_path(event.entry)
        if event.object_key is not None:  # e.g. ATTRIB for a link-count change: the inode has no name here
            return resolve(self._mount_fds, event.object_key, directory=bool(event.mask & abi.FAN_ONDIR))
        return None

    def _writer(
        self, event: abi.FanotifyEvent, processes: dict[int, ProcessInfo]
    ) -> tuple[int | None, ProcessInfo | None]:
        pid = event.pid
        pidfd = event.pidfd
        if pid <= 0:  # the writer is outside our PID namespace
            return None, None
        cached = processes.get(pid)
        if cached is not None:
            return pid, cached
        if self.pidfd_mode and pidfd == abi.FAN_NOPIDFD:
            return pid, vanished(pid, "process exited before its event was read")
        live = pidfd is not None and pidfd >= 0
        info = inspect_process(pid, pidfd if live else None)
        if (live or not self.pidfd_mode) and info.reason is None:
            processes[pid] = info
        return pid, info


def _close_fds(events: list[abi.FanotifyEvent]) -> None:
    for event in events:
        for fd in (event.fd, event.pidfd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _chunk_size() -> int:
    """Read buffer size: large for throughput, small enough that its pidfds cannot exhaust RLIMIT_NOFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16 * 1024, min(256 * 1024, (soft // 4) * _MIN_EVENT_WITH_PIDFD))
