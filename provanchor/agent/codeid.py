"""Code identities of writers, cached.

A burst of `cp` processes writing 10,000 files would otherwise hash the `cp`
executable 10,000 times. The cache key is the command (executable, argv, cwd)
plus the stat signature (inode, size, mtime) of the executable and of every
argv entry that names an existing file, so a changed binary or script is
hashed again and never served from a stale entry.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from provanchor.agent.capture import ProcessInfo
from provanchor.records import CodeIdentity, identify_command

_MAX_ENTRIES = 4096

Signature = tuple[int, int, int] | None


def _signature(path: str) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


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
        identity = identify_command(process.exe, process.argv or (process.exe,), cwd)
        self._entries[key] = identity
        if len(self._entries) > _MAX_ENTRIES:
            self._entries.popitem(last=False)
        return identity
