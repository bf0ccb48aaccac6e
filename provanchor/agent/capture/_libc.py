"""ctypes bindings for the few Linux calls the capture layer needs.

Why ctypes: these calls are cheap next to the Python work around them, and it
keeps the agent a pure-Python install. Every wrapper raises `OSError` with the
C errno, so callers can map errno values to typed capture errors. A libc that
lacks a function (old glibc, musl) reports ENOSYS, which callers treat like a
kernel without the feature.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import Any

AT_FDCWD = -100  # <linux/fcntl.h>
MAX_HANDLE_SZ = 128  # <linux/exportfs.h>: largest struct file_handle payload
_FILE_HANDLE_HEADER = struct.Struct("<Ii")  # struct file_handle: handle_bytes, handle_type
_NR_PIDFD_SEND_SIGNAL = 424  # same number on every architecture (unified syscall table since 5.1)

_libc = ctypes.CDLL(None, use_errno=True)


def _bind(name: str, argtypes: tuple[Any, ...], restype: Any = ctypes.c_int) -> Any:
    function = getattr(_libc, name, None)
    if function is not None:
        function.argtypes = argtypes
        function.restype = restype
    return function


_fanotify_init = _bind("fanotify_init", (ctypes.c_uint, ctypes.c_uint))
_fanotify_mark = _bind("fanotify_mark", (ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p))
_open_by_handle_at = _bind("open_by_handle_at", (ctypes.c_int, ctypes.c_char_p, ctypes.c_int))
_name_to_handle_at = _bind(
    "name_to_handle_at",
    (ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int),
)
_inotify_init1 = _bind("inotify_init1", (ctypes.c_int,))
_inotify_add_watch = _bind("inotify_add_watch", (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32))
_inotify_rm_watch = _bind("inotify_rm_watch", (ctypes.c_int, ctypes.c_int))
_syscall = _bind("syscall", (), ctypes.c_long)
if _syscall is not None:
    _syscall.argtypes = None  # variadic: arguments are passed as explicit ctypes values


def _call(function: Any, *args: Any) -> int:
    if function is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    result = int(function(*args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def fanotify_init(flags: int, event_f_flags: int) -> int:
    return _call(_fanotify_init, flags, event_f_flags)


def fanotify_mark(fd: int, flags: int, mask: int, path: str) -> None:
    _call(_fanotify_mark, fd, flags, mask, AT_FDCWD, os.fsencode(path))


def open_by_handle_at(mount_fd: int, handle: bytes, flags: int) -> int:
    """Open the object named by a `struct file_handle` (header included)."""
    return _call(_open_by_handle_at, mount_fd, handle, flags)


def name_to_handle_at(path: str) -> bytes:
    """The `struct file_handle` (header included) of `path`, as fanotify reports it."""
    buffer = ctypes.create_string_buffer(_FILE_HANDLE_HEADER.size + MAX_HANDLE_SZ)
    _FILE_HANDLE_HEADER.pack_into(buffer, 0, MAX_HANDLE_SZ, 0)
    mount_id = ctypes.c_int()
    _call(_name_to_handle_at, AT_FDCWD, os.fsencode(path), buffer, ctypes.byref(mount_id), 0)
    size, _ = _FILE_HANDLE_HEADER.unpack_from(buffer, 0)
    return buffer.raw[: _FILE_HANDLE_HEADER.size + size]


def inotify_init1(flags: int) -> int:
    return _call(_inotify_init1, flags)


def inotify_add_watch(fd: int, path: str, mask: int) -> int:
    return _call(_inotify_add_watch, fd, os.fsencode(path), mask)


def inotify_rm_watch(fd: int, wd: int) -> None:
    _call(_inotify_rm_watch, fd, wd)


def pidfd_send_signal(pidfd: int, signal: int) -> None:
    _call(
        _syscall,
        ctypes.c_long(_NR_PIDFD_SEND_SIGNAL),
        ctypes.c_long(pidfd),
        ctypes.c_long(signal),
        None,
        ctypes.c_long(0),
    )
