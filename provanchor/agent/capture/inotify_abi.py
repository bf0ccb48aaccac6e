"""inotify's binary interface: constants from <linux/inotify.h> and an event parser.

    struct inotify_event { s32 wd; u32 mask; u32 cookie; u32 len; char name[len]; }

`name` is NUL-padded to `len` bytes and empty for events on the watched
directory itself.
"""

from __future__ import annotations

import os
import struct

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

IN_CLOEXEC = os.O_CLOEXEC
IN_NONBLOCK = os.O_NONBLOCK

_HEADER = struct.Struct("<iIII")


def parse_events(buffer: bytes) -> list[tuple[int, int, int, str]]:
    """(wd, mask, cookie, name) for every event in one read() buffer."""
    events: list[tuple[int, int, int, str]] = []
    unpack, size = _HEADER.unpack_from, _HEADER.size
    offset, end = 0, len(buffer)
    while end - offset >= size:
        wd, mask, cookie, length = unpack(buffer, offset)
        offset += size
        name = os.fsdecode(buffer[offset : offset + length].split(b"\0", 1)[0]) if length else ""
        offset += length
        events.append((wd, mask, cookie, name))
    return events
