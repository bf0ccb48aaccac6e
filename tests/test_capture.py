"""Kernel event capture against the real kernel: fanotify and inotify, no mocks.

Every change is made by a real program (sh, cp, mv, rm, truncate, chmod, dd,
cat, a Python process) and must come back from the kernel as the expected
RawEvents, with the same paths from both backends. fanotify must also name the
writer; these tests skip it only when fanotify genuinely cannot run here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from provanchor.agent.capture import (
    CaptureUnavailable,
    EventKind,
    FanotifyWatcher,
    InvalidWatchPath,
    RawEvent,
    Watcher,
    inspect_process,
    open_watcher,
)
from provanchor.agent.capture.procinfo import container_identity
from provanchor.errors import ProvanchorError, UsageError

K = EventKind
BURST = 10_000


def _fanotify_unavailable() -> str | None:
    probe_dir = tempfile.mkdtemp(prefix="capture-probe-")
    try:
        watcher = FanotifyWatcher([probe_dir])
        watcher.start()
        watcher.close()
        return None
    except CaptureUnavailable as exc:
        return str(exc)
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)


FANOTIFY_UNAVAILABLE = _fanotify_unavailable()
needs_fanotify = pytest.mark.skipif(FANOTIFY_UNAVAILABLE is not None, reason=FANOTIFY_UNAVAILABLE or "")


@pytest.fixture(params=["fanotify", "inotify"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "fanotify" and FANOTIFY_UNAVAILABLE is not None:
        pytest.skip(FANOTIFY_UNAVAILABLE)
    return name


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    return Path(os.path.realpath(data))


class Collector:
    """Reads a watcher until the events seen so far satisfy a condition."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.events: list[RawEvent] = []

    def until(self, done: Callable[[list[RawEvent]], bool], timeout: float = 10.0) -> list[RawEvent]:
        deadline = time.monotonic() + timeout
        while not done(self.events):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out; events so far: {self.summary()}")
            self.events.extend(self.watcher.read(0.05))
        return self.events

    def settle(self, quiet: float = 0.2) -> list[RawEvent]:
        """Read until nothing arrives for `quiet` seconds."""
        while batch := self.watcher.read(quiet):
            self.events.extend(batch)
        return self.events

    def kinds(self, path: Path | str) -> list[EventKind]:
        return [event.kind for event in self.events if event.path == str(path)]

    def has(self, kind: EventKind, path: Path | str) -> Callable[[list[RawEvent]], bool]:
        return lambda events: any(e.kind is kind and e.path == str(path) for e in events)

    def summary(self) -> str:
        return ", ".join(f"{e.kind.value} {e.path}" + (f" <- {e.old_path}" if e.old_path else "") for e in self.events)


@contextmanager
def watching(paths: list[Path], backend: str, **options: object) -> Iterator[Collector]:
    watcher, _ = open_watcher([str(path) for path in paths], backend=backend, **options)  # type: ignore[arg-type]
    try:
        assert watcher.backend == backend
        yield Collector(watcher)
    finally:
        watcher.close()


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["sh", "-c", command], cwd=cwd, check=True, capture_output=True)


def assert_attribution(events: list[RawEvent], backend: str) -> None:
    for event in events:
        if backend == "inotify":
            assert event.pid is None and event.process is None
        else:
            assert event.pid is not None and event.pid > 0
            assert event.process is not None and event.process.pid == event.pid


# ------------------------------------------------------------------ single changes


def test_shell_redirect_creates_writes_and_closes(backend: str, root: Path) -> None:
    with watching([root], backend) as seen:
        sh("echo hi > f", root)
        seen.until(seen.has(K.CLOSE_WRITE, root / "f"))
        assert seen.kinds(root / "f") == [K.CREATE, K.MODIFY, K.CLOSE_WRITE]
        assert_attribution(seen.events, backend)


def test_cp_creates_the_copy(backend: str, root: Path) -> None:
    (root / "src").write_text("payload")
    with watching([root], backend) as seen:
        sh("cp src dst", root)
        seen.until(seen.has(K.CLOSE_WRITE, root / "dst"))
        kinds = seen.kinds(root / "dst")
        assert kinds[0] is K.CREATE and K.MODIFY in kinds and kinds[-1] is K.CLOSE_WRITE
        assert not seen.kinds(root / "src"), "reading the source is not a change"


def test_mv_is_one_rename_with_both_names(backend: str, root: Path) -> None:
    (root / "a").write_text("x")
    with watching([root], backend) as seen:
        sh("mv a b", root)
        seen.until(seen.has(K.RENAME, root / "b"))
        seen.settle()
        renames = [e for e in seen.events if e.kind is K.RENAME]
        assert [(e.old_path, e.path, e.is_dir) for e in renames] == [(str(root / "a"), str(root / "b"), False)]
        assert not seen.kinds(root / "a"), "no separate DELETE/CREATE for a rename"


def test_rm_deletes(backend: str, root: Path) -> None:
    (root / "gone").write_text("x")
    with watching([root], backend) as seen:
        sh("rm gone", root)
        seen.until(seen.has(K.DELETE, root / "gone"))


def test_truncate_modifies(backend: str, root: Path) -> None:
    (root / "t").write_text("some content")
    with watching([root], backend) as seen:
        sh("truncate -s 0 t", root)
        seen.until(seen.has(K.CLOSE_WRITE, root / "t"))
        assert K.MODIFY in seen.kinds(root / "t")


def test_chmod_changes_attributes(backend: str, root: Path) -> None:
    (root / "m").write_text("x")
    (root / "dir").mkdir()
    with watching([root], backend) as seen:
        sh("chmod 600 m && chmod 700 dir", root)
        seen.until(lambda _: seen.has(K.ATTRIB, root / "m")(_) and seen.has(K.ATTRIB, root / "dir")(_))
        seen.settle()
        assert seen.kinds(root / "m") == [K.ATTRIB]
        assert seen.kinds(root / "dir") == [K.ATTRIB], "one ATTRIB per directory, not one per watch"
        assert [e.is_dir for e in seen.events if e.path == str(root / "dir")] == [True]


def test_dd_notrunc_modifies_in_place(backend: str, root: Path) -> None:
    (root / "img").write_bytes(b"\0" * 4096)
    with watching([root], backend) as seen:
        sh("dd if=/dev/urandom of=img bs=512 count=1 seek=2 conv=notrunc status=none", root)
        seen.until(seen.has(K.CLOSE_WRITE, root / "img"))
        assert K.MODIFY in seen.kinds(root / "img")
        assert K.CREATE not in seen.kinds(root / "img")


def test_python_writer_in_process(backend: str, root: Path) -> None:
    with watching([root], backend) as seen:
        path = root / "py.out"
        with open(path, "wb") as handle:
            handle.write(b"one")
            handle.flush()
        # Read in between: fanotify merges an unread event with a later identical one of the same process.
        seen.until(seen.has(K.CLOSE_WRITE, path))
        with open(path, "ab") as handle:
            handle.write(b"two")
        seen.until(lambda events: seen.kinds(path).count(K.CLOSE_WRITE) == 2)
        assert seen.kinds(path) == [K.CREATE, K.MODIFY, K.CLOSE_WRITE, K.MODIFY, K.CLOSE_WRITE]
        if backend == "fanotify":  # a live writer: its snapshot must be complete
            process = seen.events[0].process
            assert process is not None and process.reason is None
            assert seen.events[0].pid == os.getpid()
            assert process.exe == os.path.realpath(sys.executable)
            assert process.cwd == os.getcwd()
            assert process.uid == os.getuid()


def test_new_directory_contents_are_reported(backend: str, root: Path) -> None:
    """Files created in a new directory before its inotify watch exists must still be reported."""
    with watching([root], backend) as seen:
        sh("mkdir -p d/e && echo a > d/f && echo b > d/e/g", root)
        seen.until(lambda _: seen.has(K.CLOSE_WRITE, root / "d/f")(_) and seen.has(K.CLOSE_WRITE, root / "d/e/g")(_))
        sh("echo c > d/e/h", root)  # the new directories are watched from now on
        seen.until(seen.has(K.CLOSE_WRITE, root / "d/e/h"))
        seen.settle()
        creates = Counter(e.path for e in seen.events if e.kind is K.CREATE)
        expected = {str(root / p): 1 for p in ("d", "d/e", "d/f", "d/e/g", "d/e/h")}
        assert creates == expected, "every entry exactly once"
        assert {e.path for e in seen.events if e.is_dir} == {str(root / "d"), str(root / "d/e")}


def test_paths_are_as_of_the_event_across_directory_renames(backend: str, root: Path) -> None:
    (root / "old").mkdir()
    with watching([root], backend) as seen:
        sh("echo a > old/f && mv old new && echo b > new/g", root)
        seen.until(seen.has(K.CLOSE_WRITE, root / "new/g"))
        order = [(e.kind, e.path) for e in seen.events if e.kind in (K.CREATE, K.RENAME)]
        assert order == [
            (K.CREATE, str(root / "old/f")),
            (K.RENAME, str(root / "new")),
            (K.CREATE, str(root / "new/g")),
        ]
        rename = next(e for e in seen.events if e.kind is K.RENAME)
        assert rename.old_path == str(root / "old") and rename.is_dir


def test_moves_across_the_watched_boundary(backend: str, root: Path) -> None:
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "in.txt").write_text("x")
    (outside / "tree").mkdir()
    (outside / "tree" / "leaf").write_text("y")
    (root / "out.txt").write_text("z")
    with watching([root], backend) as seen:
        sh(f"mv {outside}/in.txt . && mv {outside}/tree . && mv out.txt {outside}/", root)
        seen.until(seen.has(K.DELETE, root / "out.txt"))
        seen.settle()
        assert seen.kinds(root / "in.txt") == [K.CREATE, K.CLOSE_WRITE]
        assert seen.kinds(root / "tree") == [K.CREATE]
        assert seen.kinds(root / "tree" / "leaf") == [K.CREATE, K.CLOSE_WRITE]
        assert seen.kinds(root / "out.txt") == [K.DELETE]
        assert not any(e.path.startswith(str(outside)) for e in seen.events)
        assert not any(e.kind is K.RENAME for e in seen.events)


def test_sibling_with_common_prefix_is_not_reported(backend: str, tmp_path: Path) -> None:
    base = Path(os.path.realpath(tmp_path))
    data, data2 = base / "data", base / "data2"
    data.mkdir()
    data2.mkdir()
    with watching([data], backend) as seen:
        sh("echo no > ../data2/f && mkdir ../data2/sub && echo yes > marker", data)
        seen.until(seen.has(K.CLOSE_WRITE, data / "marker"))
        seen.settle()
        assert seen.events and all(e.path.startswith(str(data) + "/") for e in seen.events), seen.summary()


def test_several_and_nested_roots_report_each_change_once(backend: str, tmp_path: Path) -> None:
    base = Path(os.path.realpath(tmp_path))
    one, two = base / "one", base / "two"
    (one / "inner").mkdir(parents=True)
    two.mkdir()
    with watching([one, one / "inner", two], backend) as seen:
        sh("echo a > one/inner/f && echo b > two/g", base)
        seen.until(lambda _: seen.has(K.CLOSE_WRITE, one / "inner/f")(_) and seen.has(K.CLOSE_WRITE, two / "g")(_))
        seen.settle()
        assert seen.kinds(one / "inner/f") == [K.CREATE, K.MODIFY, K.CLOSE_WRITE]
        assert seen.kinds(two / "g") == [K.CREATE, K.MODIFY, K.CLOSE_WRITE]


# ------------------------------------------------------------------ attribution (fanotify)


@needs_fanotify
def test_cp_is_attributed_to_the_cp_executable(root: Path) -> None:
    """cp reads its source from a pipe we hold open, so it is still alive when its CREATE is read."""
    cp = os.path.realpath(shutil.which("cp") or "cp")
    with watching([root], "fanotify") as seen:
        proc = subprocess.Popen(["cp", "/dev/stdin", "copy"], cwd=root, stdin=subprocess.PIPE)
        try:
            seen.until(seen.has(K.CREATE, root / "copy"))
            event = next(e for e in seen.events if e.kind is K.CREATE)
            assert event.pid == proc.pid
            process = event.process
            assert process is not None, event
            assert process.exe == cp or (process.exe or "").endswith("/cp"), process
            assert process.argv == ("cp", "/dev/stdin", "copy")
            assert process.cwd == str(root)
            assert process.uid == 0 and process.user == "root"
            assert process.reason is None
        finally:
            assert proc.stdin is not None
            proc.stdin.write(b"data")
            proc.stdin.close()
            assert proc.wait(timeout=10) == 0
        seen.until(seen.has(K.CLOSE_WRITE, root / "copy"))
        assert {e.pid for e in seen.events} == {proc.pid}


@needs_fanotify
def test_short_lived_writer_keeps_its_pid_and_says_why_details_are_missing(root: Path) -> None:
    with watching([root], "fanotify") as seen:
        proc = subprocess.run(["sh", "-c", "echo hi > f; echo $$"], cwd=root, check=True, capture_output=True)
        seen.until(seen.has(K.CLOSE_WRITE, root / "f"))
        shell_pid = int(proc.stdout)
        for event in seen.events:
            assert event.pid == shell_pid
            process = event.process
            assert process is not None
            if process.exe is None:  # exited before it could be inspected: never guessed
                assert process.reason and "exit" in process.reason
            else:
                assert os.path.basename(process.exe) in ("dash", "bash", "sh", "busybox")


@needs_fanotify
def test_excluded_pids_are_dropped(root: Path) -> None:
    with watching([root], "fanotify", exclude_pids=[os.getpid()]) as seen:
        (root / "mine").write_text("the agent's own write")
        sh("echo theirs > theirs", root)
        seen.until(seen.has(K.CLOSE_WRITE, root / "theirs"))
        seen.settle()
        assert not seen.kinds(root / "mine")
        assert os.getpid() not in {e.pid for e in seen.events}


@needs_fanotify
def test_reads_are_reported_with_the_reader_pid(root: Path) -> None:
    (root / "input").write_text("read me")
    with watching([root], "fanotify", want_reads=True) as seen:
        proc = subprocess.Popen(["cat", "input"], cwd=root, stdout=subprocess.PIPE)
        output, _ = proc.communicate(timeout=10)
        assert output == b"read me" and proc.returncode == 0
        seen.until(seen.has(K.OPEN_READ, root / "input"))
        seen.settle()
        reads = [e for e in seen.events if e.kind is K.OPEN_READ]
        assert len(reads) == 1 and reads[0].path == str(root / "input")
        assert reads[0].pid == proc.pid
        process = reads[0].process
        assert process is not None and (process.exe is None or process.exe.endswith("/cat"))
        assert not seen.kinds(root), "listing or opening the directory is not a read of a file"


def test_inotify_reads_are_best_effort(root: Path) -> None:
    (root / "input").write_text("read me")
    with watching([root], "inotify", want_reads=True) as seen:
        sh("cat input > /dev/null", root)
        seen.until(seen.has(K.OPEN_READ, root / "input"))
        assert all(e.pid is None for e in seen.events)


# ------------------------------------------------------------------ bursts and overflow


def test_burst_of_10000_files_loses_nothing(backend: str, root: Path) -> None:
    writer = (
        "import os, sys\n"
        f"for i in range({BURST}):\n"
        "    fd = os.open(f'f{i:05d}', os.O_WRONLY | os.O_CREAT, 0o644)\n"
        "    os.write(fd, b'x')\n"
        "    os.close(fd)\n"
    )
    with watching([root], backend) as seen:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", writer], cwd=root)
        busy = 0.0
        while True:  # read while it writes: inotify's queue holds 16,384 events, the burst makes 30,000
            before = time.perf_counter()
            batch = seen.watcher.read(0.2)
            if batch:
                busy += time.perf_counter() - before
                seen.events.extend(batch)
            elif proc.poll() is not None:
                break
        elapsed = time.perf_counter() - started
        assert proc.returncode == 0
        overflows = [e for e in seen.events if e.kind is K.OVERFLOW]
        creates = [e.path for e in seen.events if e.kind is K.CREATE]
        # Loss may never be silent: missing CREATEs without an OVERFLOW would be a bug in the reader.
        assert len(set(creates)) == BURST or overflows
        assert not overflows, f"reader fell behind (loss reported by OVERFLOW): {len(set(creates))}/{BURST}"
        assert len(creates) == len(set(creates)) == BURST
        assert Counter(e.kind for e in seen.events) == {K.CREATE: BURST, K.MODIFY: BURST, K.CLOSE_WRITE: BURST}
        if backend == "fanotify":
            assert {e.pid for e in seen.events} == {proc.pid}
            missing = sum(1 for e in seen.events if e.process is None or e.process.exe is None)
            assert all(e.process and (e.process.exe or e.process.reason) for e in seen.events)
        else:
            missing = len(seen.events)
        print(
            f"\n{backend}: {len(seen.events)} events in {elapsed:.2f}s, reader busy {busy:.2f}s "
            f"({len(seen.events) / max(busy, 1e-9):.0f} events/s), process info missing on {missing}"
        )


def test_inotify_overflow_is_reported_then_watching_resumes(root: Path) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    a, b = root / "a", root / "b"
    a.write_text("a")
    b.write_text("b")
    with watching([root], "inotify") as seen:
        for i in range(limit // 2 + 10):  # alternate so the kernel cannot coalesce them: > limit events
            os.utime(a, (i, i))
            os.utime(b, (i, i))
        (root / "sub").mkdir()  # a directory born during the overflow must still get a watch
        seen.settle()
        assert [e for e in seen.events if e.kind is K.OVERFLOW], "lost events must be reported"
        overflow = next(e for e in seen.events if e.kind is K.OVERFLOW)
        assert overflow.path == "" and overflow.old_path is None
        sh("echo after > sub/after", root)
        seen.until(seen.has(K.CLOSE_WRITE, root / "sub/after"))


# ------------------------------------------------------------------ open_watcher and helpers


def test_open_watcher_prefers_fanotify_and_warns_for_inotify(root: Path) -> None:
    watcher, warning = open_watcher([str(root)], backend="inotify")
    watcher.close()
    assert watcher.backend == "inotify" and not watcher.attributed
    assert warning and "cannot be attributed" in warning and "\n" not in warning
    if FANOTIFY_UNAVAILABLE is None:
        watcher, warning = open_watcher([str(root)])
        watcher.close()
        assert watcher.backend == "fanotify" and watcher.attributed and warning is None


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_without_cap_sys_admin_auto_falls_back_and_fanotify_refuses(root: Path) -> None:
    child = (
        "import json, sys\n"
        "from provanchor.agent.capture import CaptureUnavailable, open_watcher\n"
        "w, warning = open_watcher([sys.argv[1]])\n"
        "w.close()\n"
        "try:\n"
        "    open_watcher([sys.argv[1]], backend='fanotify')\n"
        "    refused = None\n"
        "except CaptureUnavailable as exc:\n"
        "    refused = str(exc)\n"
        "print(json.dumps({'backend': w.backend, 'warning': warning, 'refused': refused}))\n"
    )
    drop = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"]
    proc = subprocess.run([*drop, sys.executable, "-c", child, str(root)], capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout)
    assert result["backend"] == "inotify"
    assert result["warning"] == (
        "fanotify unavailable (EPERM: needs CAP_SYS_ADMIN); using inotify: writers cannot be attributed"
    )
    assert result["refused"] == "fanotify unavailable (EPERM: needs CAP_SYS_ADMIN)"


def test_watch_paths_are_validated(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(InvalidWatchPath, match="missing") as caught:
        open_watcher([missing])
    assert caught.value.path == missing and isinstance(caught.value, ProvanchorError)
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(InvalidWatchPath, match="not a directory"):
        open_watcher([str(file)], backend="inotify")
    with pytest.raises(UsageError, match="unknown capture backend"):
        open_watcher([str(tmp_path)], backend="bogus")  # type: ignore[arg-type]


def test_inspect_process_never_guesses_a_vanished_process() -> None:
    live = inspect_process(os.getpid(), os.pidfd_open(os.getpid()))
    assert live.exe == os.path.realpath(sys.executable) and live.reason is None and live.user
    proc = subprocess.Popen(["true"])
    pidfd = os.pidfd_open(proc.pid)
    try:
        proc.wait()
        gone = inspect_process(proc.pid, pidfd)
    finally:
        os.close(pidfd)
    assert gone.pid == proc.pid
    assert (gone.exe, gone.argv, gone.cwd, gone.uid, gone.user, gone.container) == (None, (), None, None, None, None)
    assert gone.reason and "exited" in gone.reason


def test_container_identity_from_cgroup() -> None:
    cid = "a" * 64
    assert container_identity(f"0::/system.slice/docker-{cid}.scope\n") == f"docker://{cid}"
    assert container_identity(f"12:memory:/docker/{cid}\n0::/\n") == f"docker://{cid}"
    assert container_identity(f"0::/kubepods/burstable/pod1/cri-containerd-{cid}.scope\n") == f"containerd://{cid}"
    assert container_identity(f"0::/machine.slice/libpod-{cid}.scope/container\n") == f"podman://{cid}"
    assert container_identity("0::/user.slice/user-1000.slice/session-2.scope\n") == (
        "/user.slice/user-1000.slice/session-2.scope"
    )
    assert container_identity("4:memory:/process_api/5054\n0::/\n") == "/process_api/5054"
    assert container_identity("0::/\n") == "/"
    assert container_identity("") is None
