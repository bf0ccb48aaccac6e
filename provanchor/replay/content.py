"""Writing recorded content into a replay's target, verified, from a local cache or IPFS.

Content comes from two places:

- the local content cache (``<home>/cache/content``, see `ContentCache`),
  filled only with content that was just verified; it makes a second
  replay of the same data as fast as a local copy;
- IPFS, by the content's CID, every block hashed against its CID as it
  arrives (`IpfsClient.iter_file`), and the whole content against the
  recorded sha256 and size before the file is kept.

Several files are written in parallel: copying and hashing release the GIL,
and IPFS answers concurrent block requests.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from provanchor.errors import BlockMismatch, BlockNotFound, IpfsUnavailable, ReplayError
from provanchor.formats.cid import CID
from provanchor.ipfs.client import IpfsClient
from provanchor.progress import ProgressFn
from provanchor.replay.cache import ContentCache

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

    def __init__(
        self, ipfs: IpfsClient | None, cache_dir: Path | None, workers: int = 4, verify_every_byte: bool = False
    ) -> None:
        self.ipfs = ipfs
        self.cache_dir = cache_dir
        self.verify_every_byte = verify_every_byte
        self.workers = workers
        self._cache: ContentCache | None = None
        self.from_cache = 0  # counters: `+=` on ints is atomic enough under the GIL for reporting
        self.from_ipfs = 0
        self.bytes_written = 0
        self.progress: ProgressFn | None = None  # told ("restoring files", done, total) as files land

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
        done = itertools.count(1)
        progress = self.progress

        def write_share(share: list[tuple[Blob, Path, str]]) -> None:
            for blob, dest, name in share:
                if failed.is_set():
                    return
                try:
                    self.write(blob, dest, name)
                except BaseException:
                    failed.set()
                    raise
                if progress is not None:
                    progress("restoring files", next(done), len(items))

        self._cache = ContentCache(self.cache_dir, verify_every_byte=self.verify_every_byte) if self.cache_dir else None
        try:
            with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="replay-write") as pool:
                futures = [pool.submit(write_share, share) for share in shares]
                errors = [f.exception() for f in futures]
        finally:
            if self._cache is not None:
                self._cache.close()
        for error in errors:
            if error is not None:
                raise error

    def write(self, blob: Blob, dest: Path, name: str) -> None:
        if blob.size == 0 and blob.sha256 == EMPTY_SHA256:
            dest.write_bytes(b"")
            return
        cache = self._cache
        if cache is not None and cache.restore(blob.sha256, blob.size, dest):
            self.from_cache += 1
        else:
            self._from_ipfs(blob, dest, name)
            self.from_ipfs += 1
            if cache is not None:
                cache.add(blob.sha256, blob.size, dest)
        self.bytes_written += blob.size

    # ------------------------------------------------------------ IPFS

    def _from_ipfs(self, blob: Blob, dest: Path, name: str) -> None:
        if blob.cid is None:
            raise ReplayError(f"the content of {name} ({blob.sha256.hex()[:16]}…) was never stored: cannot restore it")
        if self.ipfs is None:
            raise ReplayError(f"the content of {name} is not in the local cache and no IPFS daemon is configured")
        digest = hashlib.sha256()
        size = 0
        try:
            # One streamed `cat` per file; every byte is then proved at once by the record's signed
            # sha256 and size below (a block-by-block walk would cost a request per 256 KiB).
            with open(dest, "wb") as target:
                for piece in self.ipfs.stream_content(blob.cid):
                    size += len(piece)
                    if size > blob.size:
                        break  # more than the record says: refused below, without reading the rest
                    digest.update(piece)
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
