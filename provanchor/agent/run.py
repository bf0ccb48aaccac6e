"""`provanchor run -- CMD`: one recorded computation.

The command runs as a child. While it runs, fanotify watches every local
filesystem of the machine as a whole (one filesystem mark each, reads
included), keeping only the events of the command's process tree, and the
process table records every fork, so that at the end the run's whole process
tree is known and each event can be attributed to it or not. Attribution is by
process, not by directory: a script that opens `/data/in.csv` is seen wherever
that file lives. Then:

- **environment** dependencies are the files the tree read under system
  prefixes (/usr, /lib*, /etc, /bin, /sbin, an interpreter's prefix, a Python
  virtual environment, any site-packages or dist-packages): path and sha256,
  no content kept;
- **inputs** are the other files the tree read that it had not written first,
  each with its hash and content as read (kept for IPFS, so a replay can
  restore them); the command's own executable and scripts are its code, not inputs;
- **outputs** are the files it wrote that still exist at the end, with their
  final hash and content; a file written and then renamed is the output under
  its final name, and one written then deleted is a temporary, not an output;
- one write record per output carries the run id, and one `run` record ties
  the code identity, argv, working directory, a digest of the environment
  variables that matter, the inputs, the outputs, the exit code and the
  duration together.

Where fanotify is unavailable, inotify watches the working directory, the
directories of path arguments and `--watch` directories only: files elsewhere
are not seen, every change under the watched paths during the run is
attributed to it, and the run's notes (and the CLI, on stderr) say so. A run
whose capture saw no output says so too.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import os
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from provanchor.agent.capture import EventKind, FanotifyWatcher, InotifyWatcher, RawEvent, Watcher
from provanchor.agent.capture.paths import local_mount_points
from provanchor.agent.processtree import RunProcessTree
from provanchor.agent.proctable import ProcessTable, ProcessTableUnavailable
from provanchor.errors import CaptureUnavailable, UsageError
from provanchor.formats.cid import CID
from provanchor.formats.unixfs import cid_for_bytes
from provanchor.home import Home
from provanchor.pipeline.recorder import RecordRef
from provanchor.pipeline.session import AgentSession
from provanchor.records import Capture, CaptureBackend, Change, ContentRef, Op, file_location, identify_command
from provanchor.records.codehash import interpreter_family, sha256_file
from provanchor.records.environment import env_digest

DEFAULT_EXCLUDES = ("*/__pycache__/*", "*.pyc", "*/.git/*")
SYSTEM_PREFIXES = ("/usr/", "/lib/", "/lib32/", "/lib64/", "/libx32/", "/etc/", "/bin/", "/sbin/")
"""Files read under these are the run's environment (path and sha256), not inputs."""
_PACKAGE_DIRS = ("/site-packages/", "/dist-packages/")
RUN_ID_ENV = "PROVANCHOR_RUN_ID"
"""The run id, passed to the command's environment so its own provenance records can name the run."""
_MAX_INPUT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class FileSeen:
    path: str
    sha256: bytes
    size: int
    cid: CID | None

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "sha256": self.sha256.hex(),
            "size": self.size,
            "cid": self.cid.encode() if self.cid else None,
        }


@dataclass
class RunResult:
    run_id: str
    exit_code: int
    inputs: list[FileSeen]
    outputs: list[FileSeen]
    duration_ns: int
    record: RecordRef | None = None
    backend: str = ""
    notes: list[str] = field(default_factory=list)
    environment: list[FileSeen] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)
    """What the capture could see: mount points watched whole (fanotify) or directories (inotify)."""


@dataclass
class _Observed:
    first_kind: EventKind
    environment: bool = False
    events: list[RawEvent] = field(default_factory=list)
    read_content: FileSeen | None = None
    read_bytes: bytes | None = None


class RunRecorder:
    def __init__(
        self,
        session: AgentSession,
        host_id: str,
        watch: Sequence[str] = (),
        exclude: Sequence[str] = DEFAULT_EXCLUDES,
        name: str | None = None,
    ) -> None:
        self.session = session
        self.host_id = host_id
        self.extra_watch = [os.path.realpath(p) for p in watch]
        self.exclude = tuple(exclude)
        self.name = name
        self._contents: dict[str, bytes] = {}
        self.sub_code: list[FileSeen] = []
        self._environment_prefixes: tuple[str, ...] = SYSTEM_PREFIXES
        self.unreadable: list[str] = []
        self.output_refs: list[RecordRef] = []

    def run(self, argv: Sequence[str], cwd: str | None = None, stdout: TextIO | None = None) -> RunResult:
        """Run and record `argv`; `stdout` redirects the command's standard output (the CLI's --json
        sends it to stderr, so that the JSON stays parseable)."""
        if not argv:
            raise UsageError("nothing to run: give the command after --")
        cwd = os.path.realpath(cwd or os.getcwd())
        exe = shutil.which(argv[0], path=os.environ.get("PATH")) if os.sep not in argv[0] else argv[0]
        if exe is None or not os.path.exists(os.path.join(cwd, exe)):
            raise UsageError(f"command not found: {argv[0]}")
        code = identify_command(exe, list(argv), cwd)
        code_files = {f.path for f in ([code.exe] if code.exe else []) + list(code.scripts)}
        self._environment_prefixes = _environment_prefixes(exe, cwd, code.exe.path if code.exe else None)
        notes: list[str] = []
        listener = ProcessTable(keep_parents=True)
        table: ProcessTable | None = listener
        try:
            listener.start()
        except ProcessTableUnavailable as exc:
            table = None
            notes.append(f"no process table ({exc}): only the command's own pid identifies it")
        tree = RunProcessTree(table)
        try:
            watcher, watched = self._open_watcher(argv, cwd, tree, notes)
        except BaseException:
            if table is not None:
                table.close()
            raise
        observed: dict[str, _Observed] = {}
        # Known before the child starts, and handed to it, so that what the child records itself
        # (ML events through provanchor.ml.Tracker) carries the same run id as this run's records.
        run_id = uuid.uuid4().hex
        started_ns = time.time_ns()
        try:
            child = subprocess.Popen(list(argv), cwd=cwd, env={**os.environ, RUN_ID_ENV: run_id}, stdout=stdout)
            tree.start(child.pid)
            while child.poll() is None:
                self._collect(watcher.read(0.05), observed, code_files)
            # The kernel queues a file event inside the system call that causes it, so once the tree has
            # exited everything is queued: drain until a read comes back empty.
            while events := watcher.read(0.02):
                self._collect(events, observed, code_files)
            exit_code = child.returncode
        finally:
            watcher.close()
        duration = time.time_ns() - started_ns
        members = (table.descendants(child.pid) if table is not None else {child.pid}) | tree.members
        if table is not None:
            for entry in observed.values():  # writers that exited before /proc could be read
                entry.events = [replace(e, process=table.resolve(e.process, e.pid, wait=0)) for e in entry.events]
            table.close()
        attributed = watcher.attributed
        self._settle_environment(observed)
        inputs, outputs, writers = self._classify(observed, members, attributed)
        environment = self._environment(observed, members, attributed)
        if self.unreadable:
            more = len(self.unreadable) - 5
            shown = ", ".join(self.unreadable[:5]) + (f" and {more} more" if more > 0 else "")
            notes.append(
                f"{len(self.unreadable)} file(s) the command read could not be read by the agent (gone or "
                f"unreadable by then), so they are not recorded as inputs: {shown}"
            )
        if not outputs:
            fanotify = watcher.backend == "fanotify"
            where = "on this machine's local filesystems" if fanotify else "under the watched paths"
            notes.append(
                f"the capture saw no output: the command wrote no file {where} that still exists "
                "(a replay of this run cannot show that it reproduces)"
            )
        result = RunResult(
            run_id, exit_code, inputs, outputs, duration, backend=watcher.backend, notes=notes,
            environment=environment, watched=watched,
        )
        result.record = self._record(result, argv, cwd, code, started_ns, writers, observed, attributed)
        return result

    def _open_watcher(
        self, argv: Sequence[str], cwd: str, tree: RunProcessTree, notes: list[str]
    ) -> tuple[Watcher, list[str]]:
        """fanotify on every local filesystem, filtered to the run's processes; else inotify on directories."""
        mounts = [point for point, _ in local_mount_points()]
        fanotify = FanotifyWatcher(
            mounts, exclude_pids=(os.getpid(),), want_reads=True, pid_filter=tree, whole_filesystems=True,
            first_only=True,
        )
        try:
            fanotify.start()
        except CaptureUnavailable as exc:
            roots = self._roots(argv, cwd)
            inotify = InotifyWatcher(roots, exclude_pids=(os.getpid(),), want_reads=True)
            inotify.start()
            notes.append(
                f"{exc}: captured with inotify, which watches only {', '.join(roots)}; files the command reads "
                "or writes elsewhere are not seen, and every change under those directories during the run "
                "is counted as the run's (writers cannot be attributed)"
            )
            return inotify, roots
        for point, why in fanotify.unwatched:
            notes.append(f"files on the filesystem mounted at {point} are not seen: {why}")
        return fanotify, [point for point in mounts if point not in {p for p, _ in fanotify.unwatched}]

    # ------------------------------------------------------------ capture

    def _roots(self, argv: Sequence[str], cwd: str) -> list[str]:
        roots = {cwd, *self.extra_watch}
        for arg in argv[1:]:
            candidate = os.path.realpath(os.path.join(cwd, arg)) if arg and not arg.startswith("-") else None
            if candidate and os.path.exists(os.path.dirname(candidate)) and candidate != "/":
                roots.add(candidate if os.path.isdir(candidate) else os.path.dirname(candidate))
        return sorted(r for r in roots if os.path.isdir(r))

    def _collect(self, events: list[RawEvent], observed: dict[str, _Observed], code_files: set[str]) -> None:
        import fnmatch

        for event in events:
            if event.is_dir or event.kind == EventKind.OVERFLOW:
                continue
            if any(fnmatch.fnmatchcase(event.path, p) for p in self.exclude) or event.path in code_files:
                continue
            entry = observed.get(event.path)
            if entry is None:
                entry = observed[event.path] = _Observed(event.kind, self._is_environment(event))
            entry.events.append(event)
            if (
                event.kind == EventKind.OPEN_READ
                and entry.read_content is None
                and entry.first_kind == EventKind.OPEN_READ
                and not entry.environment
            ):
                entry.read_content, entry.read_bytes = _snapshot(event.path)
            if event.kind == EventKind.RENAME and event.old_path is not None:
                # The content moves with the name: follow it.
                old = observed.pop(event.old_path, None)
                if old is not None:
                    old.events.extend(entry.events)
                    observed[event.path] = old

    def _classify(
        self, observed: dict[str, _Observed], tree: set[int], attributed: bool
    ) -> tuple[list[FileSeen], list[FileSeen], dict[str, RawEvent]]:
        inputs: list[FileSeen] = []
        outputs: list[FileSeen] = []
        writers: dict[str, RawEvent] = {}
        for path, entry in sorted(observed.items()):
            mine = [e for e in entry.events if not attributed or e.pid in tree]
            if not mine:
                continue
            wrote = [
                e
                for e in mine
                if e.kind in (EventKind.CREATE, EventKind.MODIFY, EventKind.CLOSE_WRITE, EventKind.RENAME)
            ]
            read_first = mine[0].kind == EventKind.OPEN_READ
            if entry.environment and not wrote:
                continue  # an environment dependency: see _environment
            if read_first and entry.read_content is not None and any(_is_script_of(e) for e in mine):
                self.sub_code.append(entry.read_content)  # a sub-step's script: code, not data
            elif read_first and entry.read_content is not None:
                inputs.append(entry.read_content)
                self._keep(entry.read_content, entry.read_bytes)
            elif read_first and not wrote:
                self.unreadable.append(path)  # gone or unreadable by the time the agent read it
            if wrote and os.path.isfile(path):
                seen, data = _snapshot(path)
                if seen is not None:
                    outputs.append(seen)
                    writers[path] = wrote[-1]
                    self._keep(seen, data)
        return inputs, outputs, writers

    def _is_environment(self, event: RawEvent) -> bool:
        """Under a system prefix, a package directory, or the prefix of the interpreter that read it."""
        path = event.path
        if path.startswith(self._environment_prefixes) or any(part in path for part in _PACKAGE_DIRS):
            return True
        process = event.process
        exe = process.exe if process is not None else None
        if exe is not None and interpreter_family(exe) is not None and path.startswith(_prefix_of(exe)):
            return True
        if _installation_library(path):
            return True
        return _virtualenv_root(os.path.dirname(path)) is not None  # the only test that touches the disk: last

    def _settle_environment(self, observed: dict[str, _Observed]) -> None:
        """Decide again, with every reader now named, which files are environment.

        While the run goes on, a short-lived interpreter may exit before its events are read: its
        reads of its own installation then carry no executable, and looked like data. By the end
        the process table has named it, so the interpreters of the whole tree are known.
        """
        prefixes = {
            _prefix_of(process.exe)
            for entry in observed.values()
            for event in entry.events
            if (process := event.process) is not None
            and process.exe is not None
            and interpreter_family(process.exe) is not None
        }
        prefixes.discard("/")
        tree_prefixes = tuple(sorted(prefixes))
        # The path-only rules already ran when the entry was collected; only the interpreter
        # (who read it) can have become known since, and every interpreter of the tree is here.
        for path, entry in observed.items():
            if not entry.environment and path.startswith(tree_prefixes):
                entry.environment = True

    def _environment(self, observed: dict[str, _Observed], tree: set[int], attributed: bool) -> list[FileSeen]:
        """Environment files the tree read and did not write: path, sha256 and size, content not kept."""
        found: list[FileSeen] = []
        for path, entry in sorted(observed.items()):
            if not entry.environment:
                continue
            mine = [e for e in entry.events if not attributed or e.pid in tree]
            if not mine or any(e.kind != EventKind.OPEN_READ for e in mine):
                continue
            seen = _hash_only(path)
            if seen is not None:
                found.append(seen)
        return found

    def _keep(self, seen: FileSeen, data: bytes | None) -> None:
        if data is not None and seen.cid is not None:
            self._contents[seen.cid.encode()] = data

    # ------------------------------------------------------------ records

    def _record(
        self,
        result: RunResult,
        argv: Sequence[str],
        cwd: str,
        code: object,
        started_ns: int,
        writers: dict[str, RawEvent],
        observed: dict[str, _Observed],
        attributed: bool,
    ) -> RecordRef:
        from provanchor.records import CodeIdentity

        assert isinstance(code, CodeIdentity)
        user = getpass.getuser()
        backend = CaptureBackend.RUN
        note = None if attributed else "inotify: every change under the watched paths during the run is counted"
        contents = self._contents
        for seen in result.outputs:
            event = writers[seen.path]
            created = observed[seen.path].first_kind == EventKind.CREATE
            change = Change(
                time=event.time_ns,
                host=self.host_id,
                location=file_location(self.host_id, seen.path),
                op=Op.CREATE if created else Op.WRITE,
                capture=Capture(backend=backend, attributed=True, reason=note),
                user=user,
                uid=os.getuid(),
                after=ContentRef(sha256=seen.sha256, size=seen.size, cid=seen.cid),
                code=code,
                pid=event.pid,
                run=result.run_id,
                mode=os.stat(seen.path).st_mode if created else None,
            )
            ref = self.session.record(change, contents.get(seen.cid.encode()) if seen.cid else None)
            self.output_refs.append(ref)
        digest, names = env_digest(dict(os.environ))
        for seen in result.inputs:
            data = contents.get(seen.cid.encode()) if seen.cid else None
            if data is not None and seen.cid is not None:  # kept so a replay can restore the input exactly
                self.session.spool.keep_content(seen.cid.encode(), data)
        payload: dict[str, object] = {
            "run_id": result.run_id,
            "name": self.name,
            "argv": list(argv),
            "cwd": cwd,
            "env": {"sha256": digest, "names": names},
            "inputs": [_wire(s, self.host_id) for s in result.inputs],
            "outputs": [_wire(s, self.host_id) for s in result.outputs],
            "code_files": [_wire(s, self.host_id) for s in self.sub_code],
            "environment": [{"path": s.path, "sha256": s.sha256, "size": s.size} for s in result.environment],
            "watched": result.watched,
            "notes": result.notes,
            "exit_code": result.exit_code,
            "started_ns": started_ns,
            "duration_ns": result.duration_ns,
            "capture": result.backend,
        }
        run_change = Change(
            time=started_ns,
            host=self.host_id,
            location=f"run://{self.host_id}/{result.run_id}",
            op=Op.RUN,
            capture=Capture(backend=backend, attributed=True, reason=note),
            user=user,
            uid=os.getuid(),
            code=code,
            pid=None,
            run=result.run_id,
            payload=payload,
        )
        return self.session.record(run_change)


def _is_script_of(event: RawEvent) -> bool:
    """Whether the reading process is an interpreter running this file as its script."""
    process = event.process
    if process is None or process.exe is None or interpreter_family(process.exe) is None:
        return False
    cwd = process.cwd or "/"
    for arg in process.argv[1:]:
        if arg.startswith("-"):
            continue
        return os.path.realpath(os.path.join(cwd, arg)) == event.path
    return False


def _wire(seen: FileSeen, host_id: str) -> dict[str, object]:
    return {"location": file_location(host_id, seen.path), "sha256": seen.sha256, "size": seen.size, "cid": seen.cid}


def _prefix_of(executable: str) -> str:
    """The installation prefix of an executable in PREFIX/bin/, with a trailing slash."""
    return os.path.dirname(os.path.dirname(executable)).rstrip("/") + "/"


def _environment_prefixes(exe: str, cwd: str, resolved_exe: str | None) -> tuple[str, ...]:
    """System prefixes, plus the command's interpreter's own prefix (a virtual environment's too)."""
    prefixes = list(SYSTEM_PREFIXES)
    for path in (os.path.abspath(os.path.join(cwd, exe)), resolved_exe):
        if path is not None and interpreter_family(path) is not None and _prefix_of(path) != "/":
            prefixes.append(_prefix_of(path))
    return tuple(dict.fromkeys(prefixes))


def _installation_library(path: str) -> bool:
    """Whether `path` is in an interpreter's own library: PREFIX/lib/NAME/... beside PREFIX/bin/NAME
    (python3.11's stdlib and lib-dynload, ruby's, perl's), wherever that prefix is (pyenv, asdf, /opt)."""
    marker = path.find("/lib/")
    while marker >= 0:
        name = path[marker + 5 :].split("/", 1)[0]
        if name and interpreter_family(name) is not None and _is_executable(f"{path[:marker]}/bin/{name}"):
            return True
        marker = path.find("/lib/", marker + 1)
    return False


@functools.lru_cache(maxsize=1024)
def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


@functools.lru_cache(maxsize=4096)
def _virtualenv_root(directory: str) -> str | None:
    """The Python virtual environment (a directory holding pyvenv.cfg) that `directory` is in, if any."""
    while directory not in ("", "/"):
        if os.path.isfile(os.path.join(directory, "pyvenv.cfg")):
            return directory
        directory = os.path.dirname(directory)
    return None


_hash_cache: dict[tuple[int, int, int, int], bytes] = {}


def _hash_only(path: str) -> FileSeen | None:
    """SHA-256 and size of an environment file, remembered by (device, inode, size, mtime) across runs."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        digest = _hash_cache.get(key)
        if digest is None:
            digest = sha256_file(path)
            if len(_hash_cache) > 65_536:
                _hash_cache.clear()
            _hash_cache[key] = digest
    except OSError:
        return None
    return FileSeen(path, digest, st.st_size, None)


def _snapshot(path: str) -> tuple[FileSeen | None, bytes | None]:
    """Hash and content of a regular file; None for anything else (a FIFO or device would block or never end)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None, None
        size = st.st_size
        if size > _MAX_INPUT_BYTES:
            return FileSeen(path, sha256_file(path), size, None), None
        data = Path(path).read_bytes()
    except OSError:
        return None, None
    return FileSeen(path, hashlib.sha256(data).digest(), len(data), CID.parse(cid_for_bytes(data))), data


@dataclass(frozen=True)
class RecordedRun:
    """What `provanchor run` reports: the run, its record, and the approval warning."""

    result: RunResult
    warning: str | None
    anchored_size: int | None
    openlineage: dict[str, object] | None = None
    """Where the run's OpenLineage events went (with --openlineage): url, sent, waiting, error."""

    def to_json(self) -> dict[str, object]:
        result = self.result
        return {
            "run_id": result.run_id,
            "exit_code": result.exit_code,
            "inputs": [s.to_json() for s in result.inputs],
            "outputs": [s.to_json() for s in result.outputs],
            "duration_s": result.duration_ns / 1e9,
            "record_id": result.record.record_id if result.record else None,
            "capture": result.backend,
            "watched": result.watched,
            "environment": [s.to_json() for s in result.environment],
            "notes": result.notes,
            "anchored_size": self.anchored_size,
            "warning": self.warning,
            "openlineage": self.openlineage,
        }


def record_run(
    home: Home,
    argv: Sequence[str],
    *,
    name: str | None = None,
    watch: Sequence[str] = (),
    flush: bool = False,
    password_file: str | None = None,
    stdout: TextIO | None = None,
    on_warning: Callable[[str], None] | None = None,
    openlineage_url: str | None = None,
) -> RecordedRun:
    """Run `argv` as the configured agent and record it; the approval check runs while the command does."""
    from concurrent.futures import ThreadPoolExecutor

    from provanchor.hostid import default_host_id

    with AgentSession.open(home, password_file=password_file) as session:
        with ThreadPoolExecutor(max_workers=1) as background:
            approval = background.submit(session.approval_warning)
            recorder = RunRecorder(session, default_host_id(), watch=watch, name=name)
            result = recorder.run(argv, stdout=stdout)
            warning = approval.result()
        if warning and on_warning is not None:
            on_warning(warning)
        status = session.flush() if flush else None
        lineage = None
        if openlineage_url is not None and result.record is not None:
            lineage = _emit_run(session, result.record, recorder.output_refs, openlineage_url, on_warning)
    return RecordedRun(result, warning, status.size if status is not None else None, lineage)


def _emit_run(
    session: AgentSession,
    run: RecordRef,
    outputs: Sequence[RecordRef],
    url: str,
    on_warning: Callable[[str], None] | None,
) -> dict[str, object]:
    """Send the run as OpenLineage events now (anchoring facts included when --flush anchored it first)."""
    from provanchor.agent.lineage_emitter import anchored_in_spool, events_for_run
    from provanchor.errors import EmitFailed
    from provanchor.interop.outbox import Delivery, Outbox

    spool = session.spool
    events = events_for_run(
        anchored_in_spool(spool, run.seq), [anchored_in_spool(spool, ref.seq) for ref in outputs]
    )
    try:
        delivery = Outbox(session.home).emit(url, events)
    except EmitFailed as exc:
        if on_warning is not None:
            on_warning(str(exc))
        waiting = len(Outbox(session.home).waiting(url))
        delivery = Delivery(url, 0, waiting, str(exc))
    return delivery.to_json()
