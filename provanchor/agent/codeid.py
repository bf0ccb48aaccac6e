"""Code identities of writers, cached.

A burst of `cp` processes writing 10,000 files would otherwise hash the `cp`
executable 10,000 times. The cache key is the command (executable, argv, cwd)
plus the stat signature (inode, size, mtime) of the executable and of every
argv entry that names an existing file, so a changed binary or script is
hashed again and never served from a stale entry.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

from provanchor.agent.capture import ProcessInfo
from provanchor.records import CodeIdentity, identify_command
from provanchor.records.codehash import interpreter_family, python_module_argument

_MAX_ENTRIES = 4096

Signature = tuple[int, int, int] | None


_SIGNATURE_TTL = 0.5
_signatures: dict[str, tuple[float, Signature]] = {}


def _signature(path: str) -> Signature:
    """stat signature, remembered for half a second: a burst of events by one program stats once."""
    now = time.monotonic()
    cached = _signatures.get(path)
    if cached is not None and now - cached[0] < _SIGNATURE_TTL:
        return cached[1]
    try:
        st = os.stat(path)
        value: Signature = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        value = None
    if len(_signatures) > 8192:
        _signatures.clear()
    _signatures[path] = (now, value)
    return value


class CodeIdentityCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[object, ...], CodeIdentity] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def identify(self, process: ProcessInfo) -> CodeIdentity | None:
        """The writer's code identity, or None when the process could not be inspected."""
        if process.exe is None:
            return None
        cwd = process.cwd or "/"
        files = tuple(
            (arg, _signature(os.path.join(cwd, arg)))
            for arg in process.argv[1:]
            if arg and not arg.startswith("-") and len(arg) < 4096
        )
        key = (process.exe, _signature(process.exe), process.argv, cwd, files)
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return found
        self.misses += 1
        identity = identify_command(process.exe, process.argv or (process.exe,), cwd, environ=_module_environ(process))
        self._entries[key] = identity
        if len(self._entries) > _MAX_ENTRIES:
            self._entries.popitem(last=False)
        return identity


def _module_environ(process: ProcessInfo) -> dict[str, str] | None:
    """PYTHONPATH of a ``python -m`` writer, read from /proc (it decides which module file ran)."""
    if process.exe is None or interpreter_family(process.exe) != "python":
        return None
    if python_module_argument(process.argv) is None:
        return None
    try:
        with open(f"/proc/{process.pid}/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return {}  # gone: resolve against the working directory and the interpreter's own paths only
    for entry in entries:
        if entry.startswith(b"PYTHONPATH="):
            return {"PYTHONPATH": entry[len(b"PYTHONPATH="):].decode("utf-8", "surrogateescape")}
    return {}
