"""The local content cache: content a replay verified once, kept by sha256 to restore again quickly.

Entries are only ever created from bytes that were just verified against
their recorded sha256 (and, coming from IPFS, every block against its CID).
Each entry's stat stamp (size, mtime, ctime, inode) is recorded when it is
written. Restoring from an entry whose stamp is unchanged copies it in the
kernel without hashing it again, as git trusts its index and DVC its cache;
any change to the entry (a write, a chmod, a replacement) changes its ctime,
and such an entry is hashed before use, and dropped if it no longer matches.
``verify_every_byte`` hashes every copy regardless.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

__all__ = ["ContentCache"]

_COPY_CHUNK = 1 << 24
Stamp = tuple[int, int, int, int]


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class ContentCache:
    def __init__(self, root: Path, *, verify_every_byte: bool = False) -> None:
        self.root = root
        self.verify_every_byte = verify_every_byte
        self._stamps: dict[bytes, Stamp] = {}
        self._updates: list[tuple[bytes, Stamp | None]] = []  # list.append is atomic: workers share it
        self._db: sqlite3.Connection | None = None
        try:
            root.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(root / "stamps.sqlite")
            with self._db:
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS stamps (sha256 BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                    " ctime_ns INTEGER, inode INTEGER)"
                )
            for sha, *stamp in self._db.execute("SELECT sha256, size, mtime_ns, ctime_ns, inode FROM stamps"):
                self._stamps[bytes(sha)] = (stamp[0], stamp[1], stamp[2], stamp[3])
        except (OSError, sqlite3.Error):
            self._db = None  # no usable stamps: every entry is hashed before use

    def path_of(self, sha256: bytes) -> Path:
        hexdigest = sha256.hex()
        return self.root / hexdigest[:2] / hexdigest

    def restore(self, sha256: bytes, size: int, dest: Path) -> bool:
        """Copy the entry for ``sha256`` to ``dest``; False (and nothing at ``dest``) when there is no good entry."""
        cached = self.path_of(sha256)
        try:
            with open(cached, "rb") as source, open(dest, "wb") as target:
                stamp = _stamp(os.fstat(source.fileno()))
                copy_file(source.fileno(), target.fileno(), stamp[0])
        except FileNotFoundError:
            return False
        except OSError:
            dest.unlink(missing_ok=True)
            return False
        if not self.verify_every_byte and self._stamps.get(sha256) == stamp and stamp[0] == size:
            return True
        if digest_of(dest) == (sha256, size):
            self._updates.append((sha256, stamp))
            return True
        cached.unlink(missing_ok=True)  # corrupted or tampered with: never use it again
        self._updates.append((sha256, None))
        dest.unlink(missing_ok=True)
        return False

    def add(self, sha256: bytes, size: int, verified: Path) -> None:
        """Keep a copy of ``verified`` (whose content was just checked to be ``sha256``)."""
        cached = self.path_of(sha256)
        if cached.exists():
            return
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            temp = cached.with_name(f".{cached.name}.{os.getpid()}.{id(verified)}")
            with open(verified, "rb") as source, open(temp, "wb") as target:
                copy_file(source.fileno(), target.fileno(), size)
            os.chmod(temp, 0o444)
            os.replace(temp, cached)
            self._updates.append((sha256, _stamp(os.stat(cached))))
        except OSError:
            pass  # the cache is an optimisation: a full disk must not fail the replay

    def close(self) -> None:
        """Record the stamps learnt during this replay (called from one thread, after the writers)."""
        if self._db is None:
            return
        try:
            with self._db:
                for sha, stamp in self._updates:
                    if stamp is None:
                        self._db.execute("DELETE FROM stamps WHERE sha256 = ?", (sha,))
                    else:
                        self._db.execute("INSERT OR REPLACE INTO stamps VALUES (?, ?, ?, ?, ?)", (sha, *stamp))
            self._db.close()
        except sqlite3.Error:
            pass
        self._db = None
        self._updates.clear()


def copy_file(source: int, target: int, size: int) -> None:
    """Kernel-side copy (no user-space buffers), falling back to read/write where unsupported."""
    remaining = size
    try:
        while remaining > 0:
            copied = os.copy_file_range(source, target, min(remaining, _COPY_CHUNK))
            if copied == 0:
                break
            remaining -= copied
        if remaining == 0:
            return
    except OSError:
        pass
    os.lseek(source, size - remaining, os.SEEK_SET)
    while remaining > 0:
        chunk = os.read(source, min(remaining, 1 << 20))
        if not chunk:
            break
        os.write(target, chunk)
        remaining -= len(chunk)


def digest_of(path: Path) -> tuple[bytes, int]:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
        return digest.digest(), handle.tell()
