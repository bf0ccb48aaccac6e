"""Writing recorded content into a replay's target, verified, from a local cache or IPFS.

Every byte a replay writes is checked against the recorded sha256 (and size)
*after* it is written, so nothing unverified survives under its final name.
Content comes from two places:

- a local content cache (``<home>/cache/content``, files named by sha256),
  filled only with content that was just verified. It makes a second replay
  of the same data as fast as a local copy. Cache entries are never trusted:
  the copy is hashed, and a corrupt entry is dropped and fetched again;
- IPFS, by the content's CID, every block hashed against its CID as it
  arrives (`IpfsClient.iter_file`), and the whole content against sha256.

Several files are written in parallel: copying and hashing release the GIL,
and IPFS answers concurrent block requests.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from provanchor.errors import BlockMismatch, BlockNotFound, IpfsUnavailable, ReplayError
from provanchor.ipfs.cid import CID
from provanchor.ipfs.client import IpfsClient

__all__ = ["EMPTY_SHA256", "Blob", "ContentWriter"]

EMPTY_SHA256 = hashlib.sha256(b"").digest()
_COPY_CHUNK = 1 << 24


@dataclass(frozen=True)
class Blob:
    """Content as the ledger names it: sha256 and size always, the CID when it was stored."""

    sha256: bytes
    size: int
    cid: CID | None


class ContentWriter:
    """Materialises blobs at paths, verified; ``cache_dir`` None disables the local cache."""

    def __init__(self, ipfs: IpfsClient | None, cache_dir: Path | None, workers: int = 4) -> None:
        self.ipfs = ipfs
        self.cache_dir = cache_dir
        self.workers = workers
        self.from_cache = 0  # counters: `+=` on ints is atomic enough under the GIL for reporting
        self.from_ipfs = 0
        self.bytes_written = 0

    def write_all(self, items: Sequence[tuple[Blob, Path, str]]) -> None:
        """Write each (blob, destination, name for messages); the first failure is raised after all stop.

        The items are dealt round-robin (largest first) to one thread per
        worker, which writes its share in turn: a task per file costs more
        than copying a small file.
        """
        if not items:
            return
        ordered = sorted(items, key=lambda item: item[0].size, reverse=True)
        shares = [ordered[worker :: self.workers] for worker in range(min(self.workers, len(ordered)))]
        failed = threading.Event()

        def write_share(share: list[tuple[Blob, Path, str]]) -> None:
            for blob, dest, name in share:
                if failed.is_set():
                    return
                try:
                    self.write(blob, dest, name)
                except BaseException:
                    failed.set()
                    raise

        with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="replay-write") as pool:
            futures = [pool.submit(write_share, share) for share in shares]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error

    def write(self, blob: Blob, dest: Path, name: str) -> None:
        if blob.size == 0 and blob.sha256 == EMPTY_SHA256:
            dest.write_bytes(b"")
            return
        if self._from_cache(blob, dest):
            self.from_cache += 1
        else:
            self._from_ipfs(blob, dest, name)
            self.from_ipfs += 1
            self._remember(blob, dest)
        self.bytes_written += blob.size

    # ------------------------------------------------------------ cache

    def _cache_path(self, sha256: bytes) -> Path | None:
        if self.cache_dir is None:
            return None
        hexdigest = sha256.hex()
        return self.cache_dir / hexdigest[:2] / hexdigest

    def _from_cache(self, blob: Blob, dest: Path) -> bool:
        cached = self._cache_path(blob.sha256)
        if cached is None:
            return False
        try:
            with open(cached, "rb") as source, open(dest, "wb") as target:
                _copy(source.fileno(), target.fileno(), os.fstat(source.fileno()).st_size)
        except FileNotFoundError:
            return False
        except OSError:
            dest.unlink(missing_ok=True)
            return False
        if _digest(dest) == (blob.sha256, blob.size):
            return True
        cached.unlink(missing_ok=True)  # corrupted or tampered with: never use it again
        dest.unlink(missing_ok=True)
        return False

    def _remember(self, blob: Blob, verified: Path) -> None:
        cached = self._cache_path(blob.sha256)
        if cached is None or cached.exists():
            return
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            temp = cached.with_name(f".{cached.name}.{os.getpid()}.{id(blob)}")
            with open(verified, "rb") as source, open(temp, "wb") as target:
                _copy(source.fileno(), target.fileno(), blob.size)
            os.replace(temp, cached)
        except OSError:
            pass  # the cache is an optimisation: a full disk must not fail the replay

    # ------------------------------------------------------------ IPFS

    def _from_ipfs(self, blob: Blob, dest: Path, name: str) -> None:
        if blob.cid is None:
            raise ReplayError(f"the content of {name} ({blob.sha256.hex()[:16]}…) was never stored: cannot restore it")
        if self.ipfs is None:
            raise ReplayError(f"the content of {name} is not in the local cache and no IPFS daemon is configured")
        digest = hashlib.sha256()
        size = 0
        try:
            with open(dest, "wb") as target:
                for piece in self.ipfs.iter_file(blob.cid):
                    digest.update(piece)
                    size += len(piece)
                    target.write(piece)
        except (BlockNotFound, BlockMismatch, IpfsUnavailable) as exc:
            dest.unlink(missing_ok=True)
            raise type(exc)(*_reason(exc, name)) from None
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        if (digest.digest(), size) != (blob.sha256, blob.size):
            dest.unlink(missing_ok=True)
            raise BlockMismatch(
                str(blob.cid), f"IPFS content {blob.cid} of {name} does not have the recorded sha256/size: refused"
            )


def _reason(exc: Exception, name: str) -> tuple[str, ...]:
    if isinstance(exc, BlockNotFound | BlockMismatch):
        return (exc.cid, f"{exc} (restoring {name})")
    return (f"{exc} (restoring {name})",)


def _copy(source: int, target: int, size: int) -> None:
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


def _digest(path: Path) -> tuple[bytes, int]:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
        return digest.digest(), handle.tell()
