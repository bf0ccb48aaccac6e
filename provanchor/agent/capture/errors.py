"""Typed errors of the capture layer.

The agent decides what to do from the type alone: `CaptureUnavailable` means
"this backend cannot run here, pick another", `InvalidWatchPath` means the
operator asked for something impossible, and any other `CaptureError` means a
watcher that was working has failed.
"""

from __future__ import annotations

from provanchor.errors import ProvanchorError, UsageError


class CaptureError(ProvanchorError):
    """Kernel event capture failed."""


class CaptureUnavailable(CaptureError):
    """This capture backend cannot run on this kernel, filesystem or with these privileges."""


class InvalidWatchPath(CaptureError, UsageError):
    """A path to watch does not exist or is not a directory."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(f"cannot watch {path!r}: {problem}")
