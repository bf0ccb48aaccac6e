"""Re-run a command where its recorded paths show the scratch tree, and nothing outside it can be written there.

A recorded command may name its files by absolute path inside its own code
(`open('/data/in.csv')`), where no argv rewriting reaches. So a replay runs
it in a private mount namespace in which each directory holding the run's
inputs and outputs (and its working directory) is the scratch tree's mirror
of it, bind-mounted over the original: the command reads the restored inputs
and writes its outputs into --out, at the paths it recorded. Nothing changes
outside the namespace. Needs CAP_SYS_ADMIN (root); without it the caller falls
back to rewriting argv and says what that cannot cover.

Run as ``python -I .../isolate.py BINDS_JSON CWD -- COMMAND...`` (as a
script: it needs nothing from the package, and starts fast): it unshares the
mount namespace, makes it private, bind-mounts each ``[source, target]`` pair
(sources opened first, so that an earlier mount cannot redirect a later
source), changes to CWD and executes COMMAND.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
from collections.abc import Sequence

CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def minimal_directories(directories: Sequence[str]) -> list[str]:
    """The directories to mount over: each listed one, unless one of its ancestors is listed too."""
    chosen: list[str] = []
    for directory in sorted(set(directories)):
        if not any(directory == top or directory.startswith(top.rstrip("/") + "/") for top in chosen):
            chosen.append(directory)
    return chosen


def command_line(binds: Sequence[tuple[str, str]], cwd: str, command: Sequence[str]) -> list[str]:
    """The argv that runs `command` isolated (see the module's docstring)."""
    return [sys.executable, "-I", os.path.abspath(__file__), json.dumps([list(b) for b in binds]), cwd, "--", *command]


def can_isolate() -> bool:
    """Whether this process may create a mount namespace (tried in a child, so nothing here changes)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only reports
        try:
            _check(_libc.unshare(CLONE_NEWNS), "unshare")
        except OSError:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def main(argv: Sequence[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: isolate.py BINDS_JSON CWD -- COMMAND...\n")
        return 2
    binds = [(str(source), str(target)) for source, target in json.loads(argv[0])]
    cwd, command = argv[1], list(argv[3:])
    try:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making the mounts private")
        # Opened in the new namespace (a bind source must belong to it) and before any mount.
        sources = [os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for source, _ in binds]
        for fd, (_, target) in zip(sources, binds, strict=True):
            _check(
                _libc.mount(f"/proc/self/fd/{fd}".encode(), os.fsencode(target), None, MS_BIND | MS_REC, None),
                f"bind-mounting the scratch tree over {target}",
            )
        os.chdir(cwd)
    except OSError as exc:
        sys.stderr.write(f"error: cannot isolate the re-run: {exc.strerror or exc}\n")
        return 125
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"error: cannot re-run: {command[0]}: {exc.strerror or exc}\n")
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
