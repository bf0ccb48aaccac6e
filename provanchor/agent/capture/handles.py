"""Directory file handles → paths, for fanotify events.

fanotify names a changed file by its directory's file handle plus a name. A
handle can always be turned into the directory's *current* path with
open_by_handle_at, but events are read a little after they happen: by then
the directory may have been renamed (an older event would get the new name)
or deleted (its handle no longer resolves, so its files' DELETE events could
not be placed). So the table is kept by the event stream itself:

- at start, every directory under the watched roots is recorded (up to a cap);
- a CREATE of a directory records its handle with the path it was created at;
- a RENAME of a directory rewrites its path and every path below it;
- a DELETE of a directory forgets it and everything below it;

and open_by_handle_at is only the fallback for directories never seen
(outside the watched trees, or beyond the cap). Each entry then holds the path
as of the event being processed, which is what the event must carry.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os

from provanchor.agent.capture import _libc
from provanchor.agent.capture.fanotify_abi import fsid_of, handle_of, make_key
from provanchor.agent.capture.paths import PathFilter, walk

log = logging.getLogger(__name__)

SEED_LIMIT = 100_000
_SIZE_LIMIT = 200_000
_UNRESOLVABLE = (errno.ESTALE, errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EINVAL, errno.EOVERFLOW)


class DirectoryPaths:
    def __init__(self, mount_fds: dict[bytes, int], watched: PathFilter) -> None:
        self._mount_fds = mount_fds  # fsid -> fd of a directory on that filesystem
        self._watched = watched
        self._paths: dict[bytes, str] = {}
        self._fsid_by_dev: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._paths)

    def seed(self, top: str, limit: int = SEED_LIMIT) -> int:
        """Record `top` and the directories below it; returns how many were recorded."""
        count = 0
        for path in itertools.chain([top], (path for path, is_dir in walk(top) if is_dir)):
            if count >= limit:
                log.info("fanotify: %d directories under %s recorded; others will be resolved on demand", count, top)
                break
            key = self._key_of(path)
            if key is not None:
                self._paths[key] = path
                count += 1
        return count

    def lookup(self, key: bytes) -> str | None:
        """The directory's path as of the event being processed, or None if it cannot be known."""
        path = self._paths.get(key)
        if path is None:
            path = resolve(self._mount_fds, key, directory=True)
            if path is not None:
                self.remember(key, path)
        return path

    def remember(self, key: bytes, path: str) -> None:
        self._paths[key] = path
        if len(self._paths) > _SIZE_LIMIT:
            self._shrink()

    def renamed(self, key: bytes | None, old: str, new: str) -> None:
        prefix = old + "/"
        for entry_key, path in list(self._paths.items()):
            if path == old or path.startswith(prefix):
                self._paths[entry_key] = new + path[len(old) :]
        if key is not None:
            self.remember(key, new)

    def removed(self, key: bytes | None, path: str) -> None:
        prefix = path + "/"
        for entry_key, entry_path in list(self._paths.items()):
            if entry_path == path or entry_path.startswith(prefix):
                del self._paths[entry_key]
        if key is not None:
            self._paths.pop(key, None)

    def clear(self) -> None:
        """Forget everything learnt from the stream (after lost events it may be wrong)."""
        self._paths.clear()

    def _shrink(self) -> None:
        """Keep the watched trees' entries (they carry history); directories elsewhere can be re-resolved."""
        self._paths = {key: path for key, path in self._paths.items() if self._watched.contains(path)}
        if len(self._paths) > _SIZE_LIMIT:
            self._paths.clear()

    def _key_of(self, path: str) -> bytes | None:
        try:
            device = os.stat(path, follow_symlinks=False).st_dev
            fsid = self._fsid_by_dev.get(device)
            if fsid is None:
                fsid = self._fsid_by_dev[device] = fsid_bytes(path)
            return make_key(fsid, _libc.name_to_handle_at(path))
        except OSError:
            return None


def fsid_bytes(path: str) -> bytes:
    """The filesystem id of `path` in the byte order fanotify reports it (two native s32)."""
    return os.statvfs(path).f_fsid.to_bytes(8, "little")


def resolve(mount_fds: dict[bytes, int], key: bytes, *, directory: bool) -> str | None:
    """The current path of the object behind a handle, or None if it no longer has one."""
    mount_fd = mount_fds.get(fsid_of(key))
    if mount_fd is None:
        return None
    flags = os.O_PATH | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
    try:
        fd = _libc.open_by_handle_at(mount_fd, handle_of(key), flags)
    except OSError as exc:
        if exc.errno not in _UNRESOLVABLE:
            log.debug("open_by_handle_at failed: %s", exc)
        return None
    try:
        if os.fstat(fd).st_nlink == 0:
            return None  # deleted: the kernel would show "<path> (deleted)"
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return path if path.startswith("/") else None
