"""fanotify's binary interface: constants from <linux/fanotify.h> and an event parser.

Kept apart from the watcher so the byte layout is checked in one place. The
layouts, from the UAPI header:

    struct fanotify_event_metadata { u32 event_len; u8 vers; u8 reserved;
                                     u16 metadata_len; u64 mask; s32 fd; s32 pid; }
    struct fanotify_event_info_header { u8 info_type; u8 pad; u16 len; }
    struct fanotify_event_info_fid { header; __kernel_fsid_t fsid (2 x s32);
                                     struct file_handle { u32 handle_bytes; s32 handle_type;
                                                          u8 f_handle[handle_bytes]; };
                                     [NUL-terminated name, padded, for *_DFID_NAME] }
    struct fanotify_event_info_pidfd { header; s32 pidfd; }
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from provanchor.errors import MalformedEvent as MalformedEvent

# fanotify_init() flags
FAN_CLOEXEC = 0x00000001
FAN_NONBLOCK = 0x00000002
FAN_CLASS_NOTIF = 0x00000000
FAN_UNLIMITED_QUEUE = 0x00000010
FAN_REPORT_PIDFD = 0x00000080
FAN_REPORT_FID = 0x00000200
FAN_REPORT_DIR_FID = 0x00000400
FAN_REPORT_NAME = 0x00000800
FAN_REPORT_TARGET_FID = 0x00001000
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME

# fanotify_mark() flags
FAN_MARK_ADD = 0x00000001
FAN_MARK_DONT_FOLLOW = 0x00000004
FAN_MARK_IGNORED_MASK = 0x00000020
FAN_MARK_IGNORED_SURV_MODIFY = 0x00000040
FAN_MARK_FILESYSTEM = 0x00000100

# event mask bits
FAN_ACCESS = 0x00000001
FAN_MODIFY = 0x00000002
FAN_ATTRIB = 0x00000004
FAN_CLOSE_WRITE = 0x00000008
FAN_CLOSE_NOWRITE = 0x00000010
FAN_OPEN = 0x00000020
FAN_MOVED_FROM = 0x00000040
FAN_MOVED_TO = 0x00000080
FAN_CREATE = 0x00000100
FAN_DELETE = 0x00000200
FAN_Q_OVERFLOW = 0x00004000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_RENAME = 0x10000000
FAN_ONDIR = 0x40000000

# info record types
FAN_EVENT_INFO_TYPE_FID = 1
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
FAN_EVENT_INFO_TYPE_DFID = 3
FAN_EVENT_INFO_TYPE_PIDFD = 4
FAN_EVENT_INFO_TYPE_OLD_DFID_NAME = 10
FAN_EVENT_INFO_TYPE_NEW_DFID_NAME = 12

FANOTIFY_METADATA_VERSION = 3
FAN_NOFD = -1
FAN_NOPIDFD = FAN_NOFD  # the process had exited when the event was read
FAN_EPIDFD = -2  # the kernel could not create a pidfd (fd limit...)

_METADATA = struct.Struct("<IBBHQii")
_INFO_HEADER = struct.Struct("<BBH")
_HANDLE_BYTES = struct.Struct("<I")
_PIDFD = struct.Struct("<i")
_FSID_SIZE = 8
_FILE_HANDLE_HEADER_SIZE = 8
_FID_TYPES = frozenset(
    {
        FAN_EVENT_INFO_TYPE_FID,
        FAN_EVENT_INFO_TYPE_DFID,
        FAN_EVENT_INFO_TYPE_DFID_NAME,
        FAN_EVENT_INFO_TYPE_OLD_DFID_NAME,
        FAN_EVENT_INFO_TYPE_NEW_DFID_NAME,
    }
)


@dataclass(frozen=True, slots=True)
class DirEntry:
    """A directory (by file id) and a name in it; name "." means the directory itself."""

    dir_key: bytes
    name: str


@dataclass(slots=True)
class FanotifyEvent:
    """One parsed event. Keys are fsid + struct file_handle: unique per object and filesystem."""

    mask: int
    pid: int
    fd: int = FAN_NOFD
    pidfd: int | None = None  # None when the group does not report pidfds
    entry: DirEntry | None = None  # DFID_NAME / DFID
    old: DirEntry | None = None  # FAN_RENAME: source
    new: DirEntry | None = None  # FAN_RENAME: destination
    object_key: bytes | None = None  # FID: the object itself (the target, for directory-entry events)


def handle_of(key: bytes) -> bytes:
    """The `struct file_handle` part of a key, as open_by_handle_at wants it."""
    return key[_FSID_SIZE:]


def fsid_of(key: bytes) -> bytes:
    return key[:_FSID_SIZE]


def make_key(fsid: bytes, handle: bytes) -> bytes:
    return fsid + handle


def parse_events(buffer: bytes) -> list[FanotifyEvent]:
    """Every event in one read() buffer, with all of its info records.

    On malformed input the events parsed so far travel with the exception, so
    the caller can still close every fd and pidfd they carry.
    """
    events: list[FanotifyEvent] = []
    offset, end = 0, len(buffer)
    while end - offset >= _METADATA.size:
        event_len, version, _, metadata_len, mask, fd, pid = _METADATA.unpack_from(buffer, offset)
        if version != FANOTIFY_METADATA_VERSION:
            raise MalformedEvent(f"fanotify metadata version {version} is not supported (expected 3)", events)
        if event_len < metadata_len or offset + event_len > end:
            raise MalformedEvent("malformed fanotify event (length out of range)", events)
        event = FanotifyEvent(mask=mask, pid=pid, fd=fd)
        events.append(event)
        if not _parse_records(buffer, offset + metadata_len, offset + event_len, event):
            raise MalformedEvent("malformed fanotify info record (length out of range)", events)
        offset += event_len
    return events


def _parse_records(buffer: bytes, offset: int, end: int, event: FanotifyEvent) -> bool:
    while end - offset >= _INFO_HEADER.size:
        info_type, _, length = _INFO_HEADER.unpack_from(buffer, offset)
        if length < _INFO_HEADER.size or offset + length > end:
            return False
        body = offset + _INFO_HEADER.size
        if info_type == FAN_EVENT_INFO_TYPE_PIDFD:
            (event.pidfd,) = _PIDFD.unpack_from(buffer, body)
        elif info_type in _FID_TYPES:
            (handle_bytes,) = _HANDLE_BYTES.unpack_from(buffer, body + _FSID_SIZE)
            key_end = body + _FSID_SIZE + _FILE_HANDLE_HEADER_SIZE + handle_bytes
            key = buffer[body:key_end]
            if info_type == FAN_EVENT_INFO_TYPE_FID:
                event.object_key = key
            else:
                name = ""
                if info_type != FAN_EVENT_INFO_TYPE_DFID:
                    name = os.fsdecode(buffer[key_end : offset + length].split(b"\0", 1)[0])
                entry = DirEntry(key, name or ".")
                if info_type == FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
                    event.old = entry
                elif info_type == FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
                    event.new = entry
                else:
                    event.entry = entry
        offset += length
    return True
