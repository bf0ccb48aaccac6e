"""Which processes belong to a recorded run: its command and everything it forked, however deep.

A whole-machine fanotify watch sees every process's file traffic; a run must
keep only its own, and decide before the expensive part of event handling
(naming the file, inspecting the process). The process connector's table
(`ProcessTable`) knows every fork it saw; /proc's parent links fill in what it
has not reported yet. A process that has already exited and that the table
never saw cannot be placed: it is kept for now, and the run's final
classification (by the table's complete tree) decides.
"""

from __future__ import annotations

import time

from provanchor.agent.proctable import ProcessTable

_MAX_DEPTH = 128
_OUTSIDER_TTL = 1.0  # seconds a "not ours" answer is trusted (pids are recycled, slowly)


class RunProcessTree:
    """A pid predicate: true for the run's root process and its descendants."""

    def __init__(self, table: ProcessTable | None) -> None:
        self._table = table
        self.root: int | None = None
        self.members: set[int] = set()
        self._outsiders: dict[int, float] = {}

    def start(self, root: int) -> None:
        self.root = root
        self.members.add(root)

    def __call__(self, pid: int) -> bool:
        if self.root is None or pid <= 0:
            return False
        if pid in self.members:
            return True
        now = time.monotonic()
        seen = self._outsiders.get(pid)
        if seen is not None and now - seen < _OUTSIDER_TTL:
            return False
        chain = [pid]
        current = pid
        for _ in range(_MAX_DEPTH):
            parent = self._parent(current)
            if parent is None:
                return True  # exited before it could be placed: kept, the final tree decides
            if parent in self.members:
                self.members.update(chain)
                return True
            if parent <= 1:
                break
            chain.append(parent)
            current = parent
        if len(self._outsiders) > 65_536:
            self._outsiders.clear()
        self._outsiders[pid] = now
        return False

    def _parent(self, pid: int) -> int | None:
        if self._table is not None:
            parent = self._table.parent_of(pid)
            if parent is not None:
                return parent
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            return None
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        try:
            return int(fields[1])
        except (IndexError, ValueError):
            return None
