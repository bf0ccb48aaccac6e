"""From raw capture events to changes: the agent's view of every watched file.

The kernel says *that* something happened to a path; this module decides what
it means and what to record, with defined outcomes for the awkward cases:

- **writes**: recorded at close-after-write (many writes to one open file make
  one record); the content is read then, hashed, and kept for IPFS.
- **mmap writes / files still open**: a MODIFY with no CLOSE_WRITE is recorded
  once the file has been quiet for `settle_seconds`, marked as settled.
- **create**: a file that did not exist in the agent's view; `before` is null.
- **truncate**: the file shrank to zero, or shrank and its remaining bytes are
  the start of the previous content (checked against the stored old content).
- **rename**: one record with `from` and the new location, content unchanged;
  a renamed directory renames every known file under it.
- **delete**: `before` is the last known content, `after` null.
- **chmod**: the mode changed (ATTRIB events that change nothing are dropped).
- **created and deleted before the agent read it**: a `create` whose `after`
  is null with the reason, followed by the `delete`.
- **written, then renamed before the agent read it**: the write is read
  under the name the file has at the end of the batch of events; when the
  rename comes in a later batch, the file is marked stale and re-read (and
  re-stat'ed) where the rename puts it, so the rename record is followed by
  the write (or chmod) it carried. A file that another file was renamed over
  before it was read is treated as gone, never read under the other's name.
- **modified without a close, then renamed**: the settle timer follows the
  file to its new name.
- **unreadable files**: the record says it could not read them, and why.
- **queue overflow**: a rescan compares the trees with the agent's view and
  records every difference, marked as found by rescan.

Who wrote: the process captured with the event (executable, argv, cwd, uid),
turned into a code identity by the documented `code_hash` rule. When the
backend cannot tell (inotify) or the process was gone, the record says so.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from provanchor.agent.capture import EventKind, ProcessInfo, RawEvent
from provanchor.agent.codeid import CodeIdentityCache
from provanchor.agent.config import AgentConfig
from provanchor.formats.cid import CID, RAW
from provanchor.formats.unixfs import CHUNK_SIZE, cid_for_bytes
from provanchor.records import Capture, CaptureBackend, Change, ContentRef, Op, file_location

Submit = Callable[[Change, bytes | None], None]


@dataclass
class FileState:
    sha256: bytes | None
    size: int | None
    cid: CID | None
    mode: int | None = None


@dataclass
class _Dirty:
    first_ns: int
    last_ns: int
    event: RawEvent


@dataclass
class TrackerStats:
    captured: int = 0
    rescans: int = 0
    overflows: int = 0
    found_by_rescan: int = 0
    unreadable: int = 0
    errors: int = 0
    by_op: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Content:
    ref: ContentRef | None
    data: bytes | None
    reason: str | None
    mode: int | None = None


class ChangeTracker:
    def __init__(
        self,
        config: AgentConfig,
        host_id: str,
        backend: str,
        submit: Submit,
        known: dict[str, FileState] | None = None,
        old_content: Callable[[CID], bytes | None] | None = None,
        resolve_process: Callable[[ProcessInfo | None, int | None], ProcessInfo | None] | None = None,
        store_large: Callable[[str], CID | None] | None = None,
    ) -> None:
        self.config = config
        self.host_id = host_id
        self.backend = backend
        self.submit_change = submit
        self.known: dict[str, FileState] = dict(known or {})
        self.dirty: dict[str, _Dirty] = {}
        self.created: set[str] = set()
        self.stats = TrackerStats()
        self.code = CodeIdentityCache()
        self._old_content = old_content
        self._read_aliases: dict[str, str | None] = {}
        # Known files whose write could not be read because they had been renamed away by then:
        # their content is re-read where the rename that follows puts them.
        self.stale: set[str] = set()
        self._resolve_process = resolve_process
        self._store_large = store_large
        self.on_error: Callable[[RawEvent, Exception], None] | None = None
        self._roots = tuple(os.path.join(p, "") for p in config.capture.paths)

    # ------------------------------------------------------------ events

    def handle_batch(self, events: list[RawEvent]) -> None:
        """Handle events read together; a file written then renamed is read under its final name.

        `cp a b && mv b c` often reaches the agent as one batch: by the time the
        close of `b` is handled, `b` is already `c`. Following the renames that come
        later in the batch reads the content where it now lives, so the create
        record carries it and the rename that follows keeps it.
        """
        renames: dict[str, list[tuple[int, str]]] = {}
        replaced: dict[str, list[int]] = {}  # names another file was renamed over, and when
        for i, event in enumerate(events):
            if event.kind == EventKind.RENAME and event.old_path is not None and not event.is_dir:
                renames.setdefault(event.old_path, []).append((i, event.path))
                replaced.setdefault(event.path, []).append(i)
        for i, event in enumerate(events):
            if renames and event.kind == EventKind.CLOSE_WRITE and not event.is_dir:
                self._read_aliases[event.path] = _final_name(event.path, i, renames, replaced)
            try:
                self.handle(event)
            except Exception as exc:  # one bad event must never stop the agent
                self.stats.errors += 1
                if self.on_error is not None:
                    self.on_error(event, exc)
        self._read_aliases.clear()

    def handle(self, event: RawEvent) -> None:
        if self._resolve_process is not None and event.pid is not None:
            process = self._resolve_process(event.process, event.pid)
            if process is not event.process:
                event = replace(event, process=process)
        if event.kind == EventKind.OVERFLOW:
            self.stats.overflows += 1
            self.rescan("the kernel event queue overflowed")
            return
        if event.kind == EventKind.OPEN_READ:
            return
        if not self._watched(event.path):
            return
        if event.is_dir:
            self._handle_dir(event)
            return
        kind = event.kind
        if kind == EventKind.CREATE:
            if event.path not in self.known:
                self.created.add(event.path)
            self.dirty.setdefault(event.path, _Dirty(event.time_ns, event.time_ns, event))
        elif kind == EventKind.MODIFY:
            entry = self.dirty.get(event.path)
            if entry is None:
                self.dirty[event.path] = _Dirty(event.time_ns, event.time_ns, event)
            else:
                entry.last_ns = event.time_ns
                entry.event = event
        elif kind == EventKind.CLOSE_WRITE:
            self.dirty.pop(event.path, None)
            self._record_content(event, settled=False)
        elif kind == EventKind.DELETE:
            self._record_delete(event)
        elif kind == EventKind.RENAME and event.old_path is not None:
            self._record_rename(event.old_path, event.path, event)
        elif kind == EventKind.ATTRIB:
            self._record_chmod(event)

    def sweep(self, now_ns: int | None = None) -> None:
        """Record files modified without a close once they have been quiet for settle_seconds."""
        now_ns = now_ns or time.time_ns()
        quiet = int(self.config.capture.settle_seconds * 1e9)
        for path, entry in list(self.dirty.items()):
            if now_ns - entry.last_ns >= quiet:
                del self.dirty[path]
                # The file may have been renamed since its last MODIFY: its key here is its name now.
                self._record_content(replace(entry.event, path=path, old_path=None, time_ns=now_ns), settled=True)

    # ------------------------------------------------------------ rescans

    def rescan(self, why: str) -> int:
        """Compare the watched trees with the agent's view; record every difference. Returns the count."""
        self.stats.rescans += 1
        seen: set[str] = set()
        found = 0
        for path in self._walk():
            seen.add(path)
            known = self.known.get(path)
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            if known is not None and known.size == st.st_size and known.sha256 is not None:
                content = self._read(path)
                if content.ref is not None and content.ref.sha256 == known.sha256:
                    if known.mode is None:
                        known.mode = st.st_mode
                    continue
            else:
                content = self._read(path)
            op = Op.WRITE if known is not None else Op.CREATE
            why_here = f"{why}; {content.reason}" if content.reason else why
            self._emit(
                path,
                op,
                None,
                content,
                _rescan_capture(why_here),
                mode=st.st_mode if op == Op.CREATE else None,
                time_ns=time.time_ns(),
            )
            found += 1
        for path in [p for p in self.known if p not in seen and self._watched(p)]:
            self._emit(path, Op.DELETE, None, _Content(None, None, None), _rescan_capture(why), time_ns=time.time_ns())
            found += 1
        self.stats.found_by_rescan += found
        return found

    # ------------------------------------------------------------ recording

    def _record_content(self, event: RawEvent, settled: bool, where_it_is: bool = False) -> None:
        """Read and record a file's content; ``where_it_is`` reads ``event.path`` itself, never an alias."""
        path = event.path
        was_created = path in self.created
        self.created.discard(path)
        alias = path if where_it_is else self._read_aliases.get(path, path)
        content = self._read(alias) if alias is not None else _Content(None, None, "vanished")
        known = self.known.get(path)
        if content.reason == "vanished":
            # Gone from this name when read: deleted (a DELETE event follows and records it) or
            # renamed away (the RENAME that follows re-reads it where it went: see `stale`).
            if was_created and known is None:
                capture = self._capture(event, extra="the file was deleted (or renamed) before the agent could read it")
                self._emit(path, Op.CREATE, event, _Content(None, None, content.reason), capture)
            if path in self.known:
                self.stale.add(path)
            return
        if known is not None and content.ref is not None and known.sha256 == content.ref.sha256:
            return  # closed after writing the same bytes: nothing changed
        op = Op.CREATE if known is None else self._write_or_truncate(known, content)
        settle = "modified without a close (mmap or still open); read after it settled" if settled else None
        # Why the content is missing or partial (unreadable, too large) belongs in the record too.
        note = "; ".join(n for n in (settle, content.reason) if n) or None
        mode = content.mode if op == Op.CREATE else None
        self._emit(path, op, event, content, self._capture(event, extra=note), mode=mode)

    def _record_delete(self, event: RawEvent) -> None:
        path = event.path
        self.dirty.pop(path, None)
        self.stale.discard(path)
        if path in self.created and path not in self.known:
            # Created and deleted between two reads: say so rather than lose it.
            self.created.discard(path)
            capture = self._capture(event, extra="the file was deleted (or renamed) before the agent could read it")
            self._emit(path, Op.CREATE, event, _Content(None, None, "vanished"), capture)
        self._emit(path, Op.DELETE, event, _Content(None, None, None), self._capture(event))

    def _record_rename(self, old: str, new: str, event: RawEvent) -> None:
        old_watched, new_watched = self._watched(old), self._watched(new)
        if old in self.dirty:
            self.dirty[new] = self.dirty.pop(old)
        if old in self.created:
            self.created.discard(old)
            self.created.add(new)
        if not new_watched:
            self._emit(old, Op.DELETE, event, _Content(None, None, None), self._capture(event))
            return
        known = self.known.get(old) if old_watched else None
        if known is None:
            # Moved in from outside the watched tree (or never seen): it is new here.
            self._record_content(replace(event, path=new), settled=False)
            return
        ref = _ref(known)
        self.stale.discard(new)  # renamed over: whatever was pending for the replaced file is moot
        self._emit(new, Op.RENAME, event, _Content(ref, None, None), self._capture(event), from_location=old)
        if old in self.stale:
            # Written (or chmod-ed) before it moved, but gone from its old name when the agent looked:
            # the rename record carries what the agent knew, and these records the current state.
            self.stale.discard(old)
            moved = replace(event, path=new, old_path=None)
            self._record_content(replace(moved, kind=EventKind.CLOSE_WRITE), settled=False, where_it_is=True)
            self._record_chmod(replace(moved, kind=EventKind.ATTRIB))

    def _record_chmod(self, event: RawEvent) -> None:
        path = event.path
        known = self.known.get(path)
        try:
            mode = os.stat(path, follow_symlinks=False).st_mode
        except OSError:
            if known is not None:
                self.stale.add(path)  # renamed away before it was seen: the rename checks it again
            return
        if known is None or known.mode == mode:
            if known is not None:
                known.mode = mode
            return
        ref = _ref(known)
        self._emit(path, Op.CHMOD, event, _Content(ref, None, None), self._capture(event), mode=mode)

    def _handle_dir(self, event: RawEvent) -> None:
        if event.kind == EventKind.RENAME and event.old_path is not None:
            prefix = os.path.join(event.old_path, "")
            for path in sorted(p for p in self.known if p.startswith(prefix)):
                self._record_rename(path, os.path.join(event.path, path[len(prefix) :]), event)
        elif event.kind == EventKind.DELETE:
            prefix = os.path.join(event.path, "")
            for path in sorted(p for p in self.known if p.startswith(prefix)):
                self._emit(path, Op.DELETE, event, _Content(None, None, None), self._capture(event))

    def _write_or_truncate(self, known: FileState, content: _Content) -> Op:
        ref = content.ref
        if ref is None or known.size is None or ref.size >= known.size:
            return Op.WRITE
        if ref.size == 0:
            return Op.TRUNCATE
        if known.cid is not None and self._old_content is not None and content.data is not None:
            old = self._old_content(known.cid)
            if old is not None and old[: ref.size] == content.data:
                return Op.TRUNCATE
        return Op.WRITE

    def _emit(
        self,
        path: str,
        op: Op,
        event: RawEvent | None,
        content: _Content,
        capture: Capture,
        mode: int | None = None,
        from_location: str | None = None,
        time_ns: int | None = None,
    ) -> None:
        known = self.known.get(from_location or path)
        before = None
        if op != Op.CREATE and known is not None and known.sha256 is not None and known.size is not None:
            before = ContentRef(sha256=known.sha256, size=known.size)
        after = None if op == Op.DELETE else content.ref
        process = event.process if event is not None else None
        code = self.code.identify(process) if process is not None else None
        user, uid = self._user(process)
        payload: dict[str, object] | None = None
        if process is not None and process.container:
            payload = {"container": process.container}
        change = Change(
            time=time_ns or (event.time_ns if event is not None else time.time_ns()),
            host=self.host_id,
            location=file_location(self.host_id, path),
            op=op,
            capture=capture,
            user=user,
            uid=uid,
            before=before,
            after=after,
            code=code,
            pid=process.pid if process is not None else (event.pid if event is not None else None),
            from_location=file_location(self.host_id, from_location) if from_location else None,
            mode=mode if op in (Op.CREATE, Op.CHMOD) else None,
            payload=payload,
        )
        self.submit_change(change, content.data)
        self.stats.captured += 1
        self.stats.by_op[op.value] = self.stats.by_op.get(op.value, 0) + 1
        self._update_view(path, op, after, mode, from_location)

    def _update_view(
        self, path: str, op: Op, after: ContentRef | None, mode: int | None, from_location: str | None
    ) -> None:
        if op == Op.DELETE:
            self.known.pop(path, None)
            return
        if op == Op.RENAME and from_location is not None:
            previous = self.known.pop(from_location, None)
            self.known[path] = previous or FileState(None, None, None)
            return
        state = self.known.get(path) or FileState(None, None, None)
        if after is not None:
            state.sha256, state.size, state.cid = after.sha256, after.size, after.cid
        if mode is not None:
            state.mode = mode
        # Otherwise the mode stays as the ledger knows it. Learning it from the disk here (after a write,
        # which cannot carry a mode) would make the next chmod check see "no change" and record nothing,
        # so a file created and renamed before the agent read it would replay with the default mode.
        self.known[path] = state

    # ------------------------------------------------------------ helpers

    def _capture(self, event: RawEvent, extra: str | None = None) -> Capture:
        backend = CaptureBackend(self.backend)
        reasons: list[str] = []
        process = event.process
        if process is None:
            if self.backend == "inotify":
                reasons.append("inotify does not report the writing process")
            else:
                reasons.append("the kernel reported no process for this change")
        elif process.exe is None:
            reasons.append(process.reason or "the writing process could not be inspected")
        if extra:
            reasons.append(extra)
        attributed = process is not None and process.exe is not None
        if attributed and not extra:
            return Capture(backend=backend, attributed=True, reason=None)
        return Capture(backend=backend, attributed=attributed, reason="; ".join(reasons) or None)

    def _user(self, process: ProcessInfo | None) -> tuple[str | None, int | None]:
        if self.config.user_rule == "fixed":
            return self.config.fixed_user, None
        if process is None:
            return None, None
        if self.config.user_rule == "loginuid":
            uid = _loginuid(process.pid)
            if uid is not None:
                return _user_name(uid), uid
        return process.user, process.uid

    def _read(self, path: str) -> _Content:
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return _Content(None, None, "vanished")
        except OSError as exc:
            self.stats.unreadable += 1
            return _Content(None, None, f"could not read: {exc.strerror}")
        if not stat.S_ISREG(st.st_mode):
            return _Content(None, None, "not a regular file")
        try:
            if st.st_size <= self.config.capture.max_content_bytes:
                data = Path(path).read_bytes()
                digest = hashlib.sha256(data).digest()
                # One chunk: the CIDv1 (raw leaves) is the raw CID of the bytes, the same digest.
                cid = CID(1, RAW, digest) if len(data) <= CHUNK_SIZE else CID.parse(cid_for_bytes(data))
                return _Content(ContentRef(sha256=digest, size=len(data), cid=cid), data, None, st.st_mode)
            digest = _sha256_file(path)
            size = os.stat(path).st_size
            # Too large for the spool: stored on IPFS straight away when it can be. A record only
            # names a CID whose content is stored, so links from records never dangle.
            stored = self._store_large(path) if self._store_large is not None else None
            if stored is not None and _sha256_file(path) == digest:
                return _Content(ContentRef(sha256=digest, size=size, cid=stored), None, None, st.st_mode)
            return _Content(
                ContentRef(sha256=digest, size=size, cid=None),
                None,
                "content larger than capture.max_content_bytes and not stored on IPFS: hashed only",
                st.st_mode,
            )
        except FileNotFoundError:
            return _Content(None, None, "vanished")
        except OSError as exc:
            self.stats.unreadable += 1
            return _Content(None, None, f"could not read: {exc.strerror}")

    def _watched(self, path: str) -> bool:
        if not path:
            return False
        inside = any(path.startswith(root) or path == root[:-1] for root in self._roots)
        return inside and not self.config.capture.excluded(path)

    def _walk(self) -> Iterator[str]:
        for root in self.config.capture.paths:
            for directory, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if not self.config.capture.excluded(os.path.join(directory, d))]
                for name in files:
                    path = os.path.join(directory, name)
                    if self._watched(path) and os.path.isfile(path) and not os.path.islink(path):
                        yield path


def _final_name(
    path: str, position: int, renames: dict[str, list[tuple[int, str]]], replaced: dict[str, list[int]]
) -> str | None:
    """Where the file closed at ``position`` lives at the end of its batch; None when it was replaced.

    Follows the renames of the name that come later in the batch. If another
    file is renamed over the name first, the written file was destroyed then:
    reading the name would return the other file's content.
    """
    final = path
    while True:
        later = next(((j, new) for j, new in renames.get(final, ()) if j > position), None)
        overwritten = next((k for k in replaced.get(final, ()) if k > position), None)
        if overwritten is not None and (later is None or overwritten < later[0]):
            return None
        if later is None:
            return final
        position, final = later


def _ref(state: FileState) -> ContentRef | None:
    if state.sha256 is None or state.size is None:
        return None
    return ContentRef(sha256=state.sha256, size=state.size, cid=state.cid)


def _rescan_capture(why: str) -> Capture:
    return Capture(backend=CaptureBackend.RESCAN, attributed=False, reason=f"found by rescan: {why}")


def _sha256_file(path: str) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def _loginuid(pid: int) -> int | None:
    try:
        value = int(Path(f"/proc/{pid}/loginuid").read_text().strip())
    except (OSError, ValueError):
        return None
    return None if value == 0xFFFFFFFF else value


def _user_name(uid: int) -> str | None:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
