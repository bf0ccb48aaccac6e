"""Process locks that the kernel releases when their holder dies, however it dies.

Several processes write one agent's spool: the capture service, `record`,
`run`, `snapshot take`, `anchor`, the ML tracker. SQLite serialises their
record inserts (seq and prev are assigned inside the inserting transaction),
but cutting, storing and anchoring batches talks to IPFS and the chain between
transactions, so it must be done by one process at a time. These locks are
`flock(2)` locks: they belong to an open file description, so

- a SIGKILLed holder releases them (the kernel closes its files), and no stale
  lock file ever needs cleaning by hand;
- unlike POSIX `fcntl` locks, they are not dropped when some other descriptor
  of the same file is closed in the holder's process.

A lock file we own also carries the holder's pid, for the one-line message
that names who holds it. A lock on a file we must not write (the keystore) is
taken on a read-only descriptor, and its holder is found in /proc/locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from provanchor.errors import ConfigError, LockBusy


class ProcessLock:
    """An exclusive flock on `path`, optionally recording the holder's pid in the file."""

    def __init__(self, path: Path, *, record_pid: bool = True) -> None:
        self.path = path
        self.record_pid = record_pid
        self._fd: int | None = None
        # The pid the lock file named when we took it: another process's pid means someone else
        # held the lock since we last did (for example, sent transactions from the same key).
        self.last_holder: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float | None = 0.0, poll: float = 0.05) -> bool:
        """Take the lock; wait up to `timeout` seconds (None: forever). False when it stayed busy."""
        if self._fd is not None:
            return True
        fd = self._open()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        os.close(fd)
                        return False
                    time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        self._fd = fd
        if self.record_pid:
            with contextlib.suppress(OSError, ValueError):
                text = os.pread(fd, 32, 0).decode("ascii").strip()
                self.last_holder = int(text) if text else None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # the pid stays in the file: see `last_holder`
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def holder(self) -> int | None:
        """The pid holding the lock now, when it can be told (None if free or unknown)."""
        if self.record_pid:
            with contextlib.suppress(OSError, ValueError):
                text = self.path.read_text(encoding="ascii").strip()
                if text and _lock_held(self.path):
                    return int(text)
            return None
        return flock_holder(self.path)

    @contextlib.contextmanager
    def hold(self, timeout: float | None, what: str) -> Iterator[None]:
        """Hold the lock for a block; `LockBusy` names the holder when it stays busy past `timeout`."""
        if not self.acquire(timeout):
            raise LockBusy(busy_message(what, self.holder(), timeout))
        try:
            yield
        finally:
            self.release()

    def _open(self) -> int:
        if self.record_pid:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags, mode = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
        else:
            flags, mode = os.O_RDONLY | os.O_CLOEXEC, 0
        try:
            return os.open(self.path, flags, mode)
        except PermissionError as exc:
            raise ConfigError(f"cannot open lock file {self.path}: permission denied") from exc
        except FileNotFoundError as exc:
            raise ConfigError(f"cannot lock {self.path}: it does not exist") from exc

    def __enter__(self) -> ProcessLock:
        if not self.acquire(None):  # pragma: no cover - acquire(None) waits until it succeeds
            raise LockBusy(busy_message(str(self.path), self.holder(), None))
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def busy_message(what: str, pid: int | None, timeout: float | None) -> str:
    who = f"process {pid}" if pid is not None else "another process"
    waited = "" if not timeout else f" (waited {timeout:g} s)"
    return f"{what} is held by {who}{waited}"


def _lock_held(path: Path) -> bool:
    """Whether some process holds an flock on `path` (probed without taking it for long)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing our descriptor releases the probe's shared lock
    return False


def flock_holder(path: Path) -> int | None:
    """The pid holding an flock on `path`, from /proc/locks (None if none or unknown)."""
    try:
        st = os.stat(path)
        table = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" ("->" marks waiters, which hold nothing)
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[2] == "->":
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
        except ValueError:
            continue
        if int(inode) == st.st_ino and os.makedev(int(major, 16), int(minor, 16)) == st.st_dev:
            return pid
    return None



