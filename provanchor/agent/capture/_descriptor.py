"""The kernel-descriptor lifecycle both watchers share: poll registration, fileno, close, `with`."""

from __future__ import annotations

import contextlib
import os
import select
from types import TracebackType
from typing import Self

from provanchor.errors import CaptureError


class WatcherDescriptor:
    """Owns one non-blocking notification fd (fanotify or inotify) and its poll object."""

    _name = "watcher"

    def __init__(self) -> None:
        self._fd = -1
        self._poll = select.poll()

    def start(self) -> None:
        raise NotImplementedError

    def _adopt(self, fd: int) -> None:
        self._fd = fd
        self._poll.register(fd, select.POLLIN)

    def fileno(self) -> int:
        if self._fd < 0:
            raise CaptureError(f"{self._name} watcher is not started")
        return self._fd

    def _close_fd(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self._poll.unregister(self._fd)
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        self._close_fd()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
