"""Who wrote it: a snapshot of an event's process, taken before the process goes away.

Speed matters because short-lived writers (`sh -c 'echo > f'`, `cp`) exit
within a millisecond of their last write, and /proc/PID vanishes once they are
reaped. Correctness matters more: a pid can be recycled, and attributing a
change to the wrong program is worse than attributing it to none. So:

- /proc/PID is opened once as a directory fd and every file is read relative
  to it. Such an fd stays bound to the process it was opened for; if that
  process dies, reads fail instead of silently showing a newer process that
  got the same pid.
- With a pidfd (fanotify's FAN_REPORT_PIDFD), the process is checked to be
  alive *after* /proc/PID was opened: then the directory fd is known to be the
  event's process, not a successor.
- A vanished process never raises: the snapshot has None fields and `reason`.
"""

from __future__ import annotations

import errno
import functools
import os
import pwd
import re

from provanchor.agent.capture import _libc
from provanchor.agent.capture.events import ProcessInfo

EXITED = "process exited before it could be inspected"


def vanished(pid: int, reason: str = EXITED) -> ProcessInfo:
    """The snapshot of a process that can no longer be inspected."""
    return ProcessInfo(pid=pid, exe=None, argv=(), cwd=None, uid=None, user=None, container=None, reason=reason)


def pidfd_alive(pidfd: int) -> bool:
    """Whether the process behind a pidfd still exists (a zombie counts: its pid is still reserved)."""
    try:
        _libc.pidfd_send_signal(pidfd, 0)
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


def inspect_process(pid: int, pidfd: int | None = None) -> ProcessInfo:
    """Snapshot exe, argv, cwd, real uid, user name and container of `pid`; never raises for a dead process."""
    try:
        proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return vanished(pid)
    try:
        if pidfd is not None and not pidfd_alive(pidfd):
            return vanished(pid)
        return _read_process(pid, proc)
    finally:
        os.close(proc)


class _Reader:
    """Reads /proc/PID entries relative to a directory fd, remembering why any failed."""

    def __init__(self, proc: int) -> None:
        self.proc = proc
        self.failures: dict[str, int] = {}

    def link(self, name: str) -> str | None:
        try:
            return os.readlink(name, dir_fd=self.proc)
        except OSError as exc:
            self.failures[name] = exc.errno or 0
            return None

    def text(self, name: str) -> bytes | None:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.proc)
        except OSError as exc:
            self.failures[name] = exc.errno or 0
            return None
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            self.failures[name] = exc.errno or 0
            return None
        finally:
            os.close(fd)


def _read_process(pid: int, proc: int) -> ProcessInfo:
    reader = _Reader(proc)
    # exe and argv live in the process's memory, released first on exit: read them first.
    exe = reader.link("exe")
    cmdline = reader.text("cmdline")
    cwd = reader.link("cwd")
    status = reader.text("status")
    cgroup = reader.text("cgroup")
    argv = tuple(os.fsdecode(arg) for arg in cmdline.split(b"\0")[:-1]) if cmdline else ()
    uid = _real_uid(status) if status is not None else None
    zombie = status is not None and b"\nState:\tZ" in status
    present = {"exe": exe is not None, "argv": bool(argv), "cwd": cwd is not None, "uid": uid is not None}
    missing = [name for name, ok in present.items() if not ok]
    reason = None
    if missing:
        codes = set(reader.failures.values())
        if zombie:
            cause = EXITED + " (it had exited but was not yet reaped)"
        elif codes & {errno.EACCES, errno.EPERM}:
            cause = "permission denied reading /proc"
        elif status is not None and b"\nKthread:\t1" in status:
            cause = "kernel thread: no executable"
        elif status is not None and not codes - {errno.ENOENT}:
            # Its memory (exe, argv) is released early in exit, before it becomes a zombie.
            cause = "process was exiting when inspected"
        else:
            cause = EXITED
        reason = f"{cause}; missing {', '.join(missing)}"
    return ProcessInfo(
        pid=pid,
        exe=exe,
        argv=argv,
        cwd=cwd,
        uid=uid,
        user=user_name(uid) if uid is not None else None,
        container=container_identity(os.fsdecode(cgroup)) if cgroup is not None else None,
        reason=reason,
    )


def _real_uid(status: bytes) -> int | None:
    """The real uid: the account that ran the program, even through a setuid binary."""
    for line in status.split(b"\n"):
        if line.startswith(b"Uid:"):
            fields = line.split()
            return int(fields[1]) if len(fields) > 1 else None
    return None


@functools.lru_cache(maxsize=256)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


_CONTAINER_ID = re.compile(r"(?:^|[/:-])([0-9a-f]{64})(?:\.scope)?(?=/|$)")
_RUNTIMES = (
    ("cri-containerd", "containerd"),
    ("containerd", "containerd"),
    ("docker", "docker"),
    ("libpod", "podman"),
    ("crio", "cri-o"),
)


def container_identity(cgroup: str) -> str | None:
    """Container id from /proc/PID/cgroup ("docker://<id>"...), else the most specific cgroup path.

    The 64-hex id is what `docker ps`, `crictl ps` and `podman ps` show, so an
    auditor can match records to containers; without one, the cgroup path still
    separates systemd units and pods.
    """
    unified: str | None = None
    legacy: str | None = None
    for line in cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        match = _CONTAINER_ID.search(path)
        if match is not None:
            return f"{_runtime(path[: match.start(1)])}://{match.group(1)}"
        if hierarchy == "0" and not controllers:
            unified = path
        elif legacy is None and path != "/":
            legacy = path
    if unified is not None and unified != "/":
        return unified
    return legacy or unified


def _runtime(prefix: str) -> str:
    for marker, runtime in _RUNTIMES:
        if marker in prefix:
            return runtime
    return "container"
