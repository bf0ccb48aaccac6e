"""Kernel event capture: the agent's lowest layer, from file changes to `RawEvent`s.

Two backends share one interface (`Watcher`):

- fanotify (needs CAP_SYS_ADMIN, Linux 5.17+): every event names its writer's
  pid and a snapshot of the process (`attributed = True`);
- inotify (always available): the same changes, with no writer
  (`attributed = False`).

`open_watcher` prefers fanotify and, in "auto" mode, falls back to inotify
with a one-line warning the agent should show, because records made without
attribution say less and the operator should know why.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal, Protocol

from provanchor.agent.capture.events import EventKind, ProcessInfo, RawEvent
from provanchor.agent.capture.fanotify import FanotifyWatcher
from provanchor.agent.capture.inotify import InotifyWatcher
from provanchor.agent.capture.paths import canonical_roots
from provanchor.agent.capture.procinfo import inspect_process
from provanchor.errors import CaptureError, CaptureUnavailable, InvalidWatchPath, UsageError

__all__ = [
    "CaptureError",
    "CaptureUnavailable",
    "EventKind",
    "FanotifyWatcher",
    "InotifyWatcher",
    "InvalidWatchPath",
    "ProcessInfo",
    "RawEvent",
    "Watcher",
    "inspect_process",
    "open_watcher",
]

Backend = Literal["auto", "fanotify", "inotify"]
_UNATTRIBUTED = "writers cannot be attributed"


class Watcher(Protocol):
    """What the agent needs from a capture backend."""

    @property
    def backend(self) -> str: ...

    @property
    def attributed(self) -> bool: ...

    def start(self) -> None: ...

    def read(self, timeout: float) -> list[RawEvent]:
        """Events available within `timeout` seconds, in kernel order; [] when none."""
        ...

    def fileno(self) -> int:
        """A descriptor that polls readable when `read` has something to do."""
        ...

    def close(self) -> None: ...


def open_watcher(
    paths: Sequence[str],
    *,
    backend: Backend = "auto",
    exclude_pids: Collection[int] = (),
    want_reads: bool = False,
) -> tuple[Watcher, str | None]:
    """Start a watcher on `paths`; returns it and a warning when writers will not be attributed.

    `backend="fanotify"` raises `CaptureUnavailable` rather than fall back: the
    caller asked for attribution explicitly.
    """
    if backend not in ("auto", "fanotify", "inotify"):
        raise UsageError(f"unknown capture backend {backend!r}: use auto, fanotify or inotify")
    canonical_roots(paths)  # fail on a bad path before touching the kernel
    warning: str | None = f"inotify selected: {_UNATTRIBUTED}"
    if backend != "inotify":
        fanotify = FanotifyWatcher(paths, exclude_pids=exclude_pids, want_reads=want_reads)
        try:
            fanotify.start()
        except CaptureUnavailable as exc:
            if backend == "fanotify":
                raise
            warning = f"{exc}; using inotify: {_UNATTRIBUTED}"
        else:
            return fanotify, None
    inotify = InotifyWatcher(paths, exclude_pids=exclude_pids, want_reads=want_reads)
    inotify.start()
    return inotify, warning
