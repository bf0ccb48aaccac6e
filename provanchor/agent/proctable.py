"""Who ran what: a process table fed by the kernel's process connector.

fanotify tells the writer's pid, but a short-lived writer (`cp`, `mv`, `rm`,
a shell redirect) has usually exited and been reaped by the time its event is
read, so `/proc/PID` is gone and the writer would stay unknown. The process
connector (netlink, `NETLINK_CONNECTOR`/`CN_IDX_PROC`, root only) announces
every fork and exec as it happens; inspecting the process at its exec, while
it is alive, and remembering the answer for a while after it exits closes that
gap. Forks without exec (a shell's subshell) inherit their parent's entry.

The listener runs as its own small process (`python -m
provanchor.agent.procwatch`): inside the agent it would compete for the GIL
with event handling and lose the race against `cp` far too often. It prints
one JSON line per process it saw; the agent keeps them keyed by pid, and keeps
exited entries for `ttl` seconds. Pid reuse within that window is possible but
rare; an event is only attributed from the table when /proc no longer answers.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace

from provanchor.agent.capture import ProcessInfo
from provanchor.errors import ProcessTableUnavailable as ProcessTableUnavailable


@dataclass
class _Entry:
    info: ProcessInfo
    exited_at: float | None = None
    # Copied from the parent at fork: true only until the child execs. Trusted only once the
    # child has exited without an exec (the listener reports fork, exec and exit in order).
    inherited: bool = False

    @property
    def final(self) -> bool:
        return not self.inherited or self.exited_at is not None


class ProcessTable:
    def __init__(self, ttl: float = 30.0, keep_parents: bool = False) -> None:
        """`keep_parents` keeps every fork link for the table's lifetime (a recorded run needs
        its whole process tree at the end, however long ago a branch exited)."""
        self.ttl = ttl
        self.keep_parents = keep_parents
        self._entries: dict[int, _Entry] = {}
        self._parents: dict[int, int] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._child: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self.execs_seen = 0

    def start(self, timeout: float = 10.0) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "provanchor.agent.procwatch"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self._child.stdout is not None
        first = self._child.stdout.readline()
        if not first.startswith(b"{"):
            error = (first + (self._child.stderr.read() if self._child.stderr else b"")).decode(errors="replace")
            self._child.wait()
            raise ProcessTableUnavailable(error.strip().splitlines()[-1] if error.strip() else "listener died")
        self._thread = threading.Thread(target=self._read_loop, name="proc-table", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._child is not None:
            self._child.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(timeout=5)
            if self._child.poll() is None:
                self._child.kill()
                self._child.wait()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def lookup(self, pid: int, wait: float = 0.0) -> ProcessInfo | None:
        """The entry for `pid`; waits up to `wait` seconds for the listener to report it."""
        deadline = time.monotonic() + wait
        with self._changed:
            while True:
                entry = self._entries.get(pid)
                remaining = deadline - time.monotonic()
                if entry is not None and entry.info.exe is not None and entry.final:
                    return entry.info
                if remaining <= 0:
                    return None  # unknown, or a fork that may yet exec: never guess the writer
                self._changed.wait(remaining)

    def resolve(self, process: ProcessInfo | None, pid: int | None, wait: float = 0.05) -> ProcessInfo | None:
        """The best description of an event's writer: live /proc data, else what the table saw."""
        if process is not None and process.exe is not None:
            return process
        wanted = pid if pid is not None else (process.pid if process is not None else None)
        if wanted is None:
            return process
        known = self.lookup(wanted, wait=wait)
        if known is None or known.exe is None:
            return process
        return replace(known, reason=None)

    def _read_loop(self) -> None:
        assert self._child is not None and self._child.stdout is not None
        last_cleanup = time.monotonic()
        for line in self._child.stdout:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            pid = int(data["pid"])
            with self._changed:
                if data.get("exit"):
                    entry = self._entries.get(pid)
                    if entry is not None:
                        entry.exited_at = time.monotonic()
                else:
                    inherited = "ppid" in data
                    if inherited:
                        self._parents[pid] = int(data["ppid"])
                    self.execs_seen += 1
                    self._entries[pid] = _Entry(
                        ProcessInfo(
                            pid=pid,
                            exe=data.get("exe"),
                            argv=tuple(data.get("argv", ())),
                            cwd=data.get("cwd"),
                            uid=data.get("uid"),
                            user=data.get("user"),
                            container=data.get("container"),
                            reason=data.get("reason"),
                        ),
                        inherited=inherited,
                    )
                self._changed.notify_all()
            now = time.monotonic()
            if now - last_cleanup > 5:
                self._cleanup(now)
                last_cleanup = now

    def parent_of(self, pid: int) -> int | None:
        """The parent the listener saw fork `pid`, if it did."""
        with self._lock:
            return self._parents.get(pid)

    def descendants(self, root: int) -> set[int]:
        """`root` and every process forked from it (as far as the listener saw)."""
        with self._lock:
            children: dict[int, list[int]] = {}
            for child, parent in self._parents.items():
                children.setdefault(parent, []).append(child)
        tree, stack = {root}, [root]
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in tree:
                    tree.add(child)
                    stack.append(child)
        return tree

    def _cleanup(self, now: float) -> None:
        with self._lock:
            stale = [
                pid for pid, e in self._entries.items() if e.exited_at is not None and now - e.exited_at > self.ttl
            ]
            for pid in stale:
                del self._entries[pid]
