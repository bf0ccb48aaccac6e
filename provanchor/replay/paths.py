"""Keeping every write of a replay inside its target directory.

Paths in a replay come from data we did not write ourselves (snapshot
manifests and records fetched from IPFS, possibly from a hostile agent), so
each one is checked before anything is created: relative, no empty, ``.`` or
``..`` components, no NUL or backslash, and no symlink whose target leads out
of the tree. Writing then goes through `OutputTree.join`, which also refuses
to follow any symlink that already exists on the way (a symlink restored by
the replay itself is never traversed).
"""

from __future__ import annotations

import os
import posixpath
import shutil
from pathlib import Path

from provanchor.errors import OutputDirError, UnsafePath
from provanchor.formats.snapshot_manifest import relative_path_problem

__all__ = ["OutputTree", "check_relative_path", "refuse_overlap", "relative_path_problem", "symlink_escapes"]


def check_relative_path(path: str, what: str) -> str:
    problem = relative_path_problem(path)
    if problem is not None:
        raise UnsafePath(f"refusing {what}: path {problem}; nothing was written for it")
    return path


def symlink_escapes(link_path: str, target: str) -> bool:
    """Whether a symlink at relative ``link_path`` pointing to ``target`` resolves outside the tree.

    Absolute targets always escape (they name the restoring machine's files).
    Relative targets are resolved textually from the link's directory; a later
    symlink in the chain is itself checked when it is restored, so the whole
    chain stays inside.
    """
    if not target or target.startswith("/") or "\x00" in target:
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))
    return resolved == ".." or resolved.startswith("../") or resolved.startswith("/")


def refuse_overlap(out: str | os.PathLike[str], live: str, what: str) -> None:
    """Refuse an --out that is, holds, or sits inside ``live`` (a --force would empty live data)."""
    target = os.path.realpath(out)
    real = os.path.realpath(live)
    if target == real or target.startswith(real.rstrip("/") + "/") or real.startswith(target.rstrip("/") + "/"):
        raise OutputDirError(f"--out {out} overlaps {what} {live}: restore somewhere else")


class OutputTree:
    """The replay's target directory, and the only place a replay writes to.

    Checked when constructed (a file, a symlink, or a non-empty directory
    without ``force`` is refused) but created, or emptied with ``force``, only
    by `prepare`, once the replay knows it has something to write: a replay
    that fails early never touches the user's directory.
    """

    def __init__(self, root: str | os.PathLike[str], force: bool = False) -> None:
        path = Path(root)
        if path.is_symlink():
            raise OutputDirError(f"--out {root} is a symlink: give the real directory")
        if path.exists() and not path.is_dir():
            raise OutputDirError(f"--out {root} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not force:
            raise OutputDirError(f"--out {root} is not empty: choose an empty directory or pass --force")
        self.root = path.absolute()
        self.created = False
        self.prepared = False

    def prepare(self) -> None:
        try:
            if self.root.exists():
                self.clear()
            else:
                self.root.mkdir(parents=True)
                self.created = True
        except OSError as exc:
            raise OutputDirError(f"cannot prepare --out {self.root}: {exc.strerror or exc}") from None
        self.root = self.root.resolve()
        self.prepared = True

    def join(self, relative: str) -> Path:
        """The absolute path for ``relative``, refusing anything that leaves the tree."""
        check_relative_path(relative, "a path")
        current = self.root
        parts = relative.split("/")
        for part in parts[:-1]:
            current = current / part
            if current.is_symlink():
                raise UnsafePath(f"refusing to write {relative!r}: {current} is a symlink")
        return current / parts[-1]

    def clear(self) -> None:
        for child in self.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                _make_writable(child)
                shutil.rmtree(child)
            else:
                child.unlink()

    def discard(self) -> None:
        """After a failure: leave nothing partial (remove the directory if this replay created it)."""
        if not self.prepared:
            return
        try:
            self.clear()
            if self.created:
                self.root.rmdir()
        except OSError:
            pass


def _make_writable(directory: Path) -> None:
    """Restored modes may make directories read-only; removing their contents needs write permission."""
    for current, subdirs, _ in os.walk(directory):
        for name in subdirs:
            sub = os.path.join(current, name)
            if not os.path.islink(sub):
                os.chmod(sub, 0o700)
    os.chmod(directory, 0o700)
