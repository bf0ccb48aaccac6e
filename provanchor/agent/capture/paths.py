"""Watched roots: validation, the "is this path ours?" test, and tree walks.

Both backends report canonical paths (absolute, symlinks resolved) because
fanotify can only name a directory by resolving its file handle, which yields
the real path. Roots are canonicalised the same way so both backends report
identical paths for the same change.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence

from provanchor.errors import InvalidWatchPath


def canonical_roots(paths: Sequence[str]) -> tuple[str, ...]:
    """Validate and canonicalise the watched directories; nested roots collapse into their parent."""
    if isinstance(paths, str | bytes):
        raise InvalidWatchPath(str(paths), "pass a list of directories, not a single string")
    if not paths:
        raise InvalidWatchPath("", "no directory to watch was given")
    resolved: list[str] = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise InvalidWatchPath(path, "it does not exist") from None
        except OSError as exc:
            raise InvalidWatchPath(path, exc.strerror or str(exc)) from None
        if not stat.S_ISDIR(mode):
            raise InvalidWatchPath(path, "it is not a directory")
        resolved.append(os.path.realpath(path))
    roots: list[str] = []
    for root in sorted(set(resolved), key=len):
        if not PathFilter(roots).contains(root):
            roots.append(root)
    return tuple(roots)


class PathFilter:
    """Whether a path lies inside one of the roots, by path component: `/d/a` does not contain `/d/ab`."""

    def __init__(self, roots: Iterable[str]) -> None:
        self.roots = tuple(roots)
        self._exact = frozenset(self.roots)
        self._prefixes = tuple(root if root.endswith("/") else root + "/" for root in self.roots)

    def contains(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._prefixes)


def join(parent: str, name: str) -> str:
    if name in ("", "."):
        return parent
    return parent + name if parent.endswith("/") else parent + "/" + name


def walk(top: str) -> Iterator[tuple[str, bool]]:
    """Every entry below `top` as (path, is_dir), parents before children, symlinks not followed.

    Entries that vanish during the walk are skipped silently: the events for
    their removal are already on their way.
    """
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                children = list(entries)
        except OSError:
            continue
        for entry in children:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            yield entry.path, is_dir
            if is_dir:
                stack.append(entry.path)


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
# Kernel pseudo filesystems: no user data to record, and fanotify cannot mark them anyway.
_PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "efivarfs",
        "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore", "rpc_pipefs", "securityfs", "sysfs",
        "tracefs",
    }
)  # fmt: skip


# Network filesystems are not "this machine's": their files are other machines' to record.
_NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs", "lustre"})
# Kernel interfaces, never data (/dev/shm, a tmpfs for shared memory files, is kept).
_INTERFACE_TREES = ("/proc", "/sys", "/dev/pts", "/dev/mqueue", "/dev/hugepages")


def _mounts(mountinfo: str) -> list[tuple[str, str]] | None:
    """(mount point, filesystem type) of every line of a mountinfo file; None when it cannot be read."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    found: list[tuple[str, str]] = []
    for line in lines:
        fields = line.split(" ")
        try:
            fstype = fields[fields.index("-") + 1]
        except (ValueError, IndexError):
            continue
        found.append((_OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), fields[4]), fstype))
    return found


def local_mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every local data filesystem: what a whole-machine watch marks.

    Pseudo filesystems, device nodes (devtmpfs), kernel interfaces and network
    filesystems are left out; "/" comes first.
    """
    mounts = _mounts(mountinfo)
    if mounts is None:
        return [("/", "unknown")]
    found: dict[str, str] = {}
    for point, fstype in mounts:
        base = fstype.split(".", 1)[0]  # fuse.sshfs -> fuse
        if fstype in _PSEUDO_FILESYSTEMS or fstype == "devtmpfs" or base in _NETWORK_FILESYSTEMS:
            continue
        if fstype.startswith("fuse.") and fstype.split(".", 1)[1] in {"sshfs", "s3fs", "gcsfuse", "rclone"}:
            continue
        if any(point == tree or point.startswith(tree + "/") for tree in _INTERFACE_TREES):
            continue
        found[point] = fstype
    ordered = sorted(found.items(), key=lambda item: (item[0] != "/", item[0]))
    return ordered or [("/", "unknown")]


def mount_points_under(path_filter: PathFilter, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points of data filesystems inside the watched trees: each needs its own filesystem mark."""
    found: list[str] = []
    for point, fstype in _mounts(mountinfo) or []:
        if fstype not in _PSEUDO_FILESYSTEMS and path_filter.contains(point) and point not in found:
            found.append(point)
    return found
