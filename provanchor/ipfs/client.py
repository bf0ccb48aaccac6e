"""A trustless client for Kubo's RPC API.

Nothing a daemon returns is believed: every block is hashed against the CID it
was asked for, files are walked block by block and each block verified, CARs
exported by the daemon are checked section by section, and every CID the
daemon reports for an upload is recomputed locally. A lying or corrupted
daemon therefore produces `BlockMismatch`, never wrong data.

Uploads are verified *before* they leave too: a block stored under the wrong
CID can never be replaced afterwards (re-puts are skipped as "already have"),
so `put_blocks` refuses to send a block that does not match its CID.

Every lookup of a block the daemon may not have carries Kubo's ``timeout``
option and a slightly longer HTTP read timeout, so a missing block is
`BlockNotFound` within a bounded time whatever the daemon's routing does.

ipfshttpclient (unmaintained since 2021) is used where its calls fit Kubo;
the calls it lacks or gets wrong for Kubo (``block/put``'s codec option was
renamed, CAR export) go to the RPC API over plain HTTP.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import ipaddress
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import ipfshttpclient
import requests
from ipfshttpclient import exceptions as ipfs_exc

from provanchor.errors import BlockMismatch, BlockNotFound, InvalidCid, IpfsUnavailable, UsageError
from provanchor.errors import IpfsError as IpfsError
from provanchor.formats.car import car_bytes
from provanchor.formats.cid import CID, DAG_CBOR, DAG_PB, RAW
from provanchor.formats.unixfs import (
    CHUNK_SIZE,
    UNIXFS_FILE,
    UNIXFS_RAW,
    UnixFSError,
    cid_for_bytes,
    cid_for_file,
    decode_pbnode,
    decode_unixfs,
)

__all__ = ["IpfsClient", "IpfsError", "api_multiaddr", "api_url", "parse_cid"]

# ipfshttpclient 0.7.0 passes urllib3 a parameter urllib3 2.x deprecates; the
# warning is about the library, not about anything a provanchor user can fix.
warnings.filterwarnings("ignore", message="The 'strict' parameter is no longer needed", category=FutureWarning)

_CODEC_NAMES = {RAW: "raw", DAG_PB: "dag-pb", DAG_CBOR: "dag-cbor"}
_UNIXFS_TYPES = {0: "raw", 1: "directory", 2: "file", 3: "metadata", 4: "symlink", 5: "HAMT shard"}
# Extra seconds the HTTP read timeout allows beyond the daemon-side `timeout`, so the
# daemon's own (more precise) "timed out" answer arrives before the socket gives up.
_HTTP_SLACK = 5.0
_NOT_FOUND_HINTS = ("not found", "timed out", "timeout", "could not find", "no such", "not available")


def _one_line(text: object, limit: int = 300) -> str:
    """One line, and a short one: daemon errors can quote whole request URLs."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _error_text(reply: requests.Response) -> str:
    """The daemon's error message (Kubo answers `{"Message": ...}`), on one line."""
    try:
        body = reply.json()
    except ValueError:
        return _one_line(reply.text) or f"HTTP {reply.status_code}"
    message = body.get("Message") if isinstance(body, dict) else None
    return _one_line(message or reply.text)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def parse_cid(value: CID | str) -> CID:
    """`CID.parse`, with every malformed input reported as InvalidCid.

    ``CID.parse`` lets an IndexError escape for inputs that are empty after
    stripping (``" "``, ``"/ipfs/"``); callers of this client only ever see InvalidCid.
    """
    try:
        return CID.parse(value)
    except (IndexError, ValueError, TypeError) as exc:
        raise InvalidCid(f"not a CID: {value!r}") from exc


def api_multiaddr(addr: str) -> str:
    """Normalise an API address to the multiaddr ipfshttpclient wants (``.../tcp/PORT/http``).

    Accepts ``/ip4/HOST/tcp/PORT`` (with or without ``/http``), ``/dns*/...``,
    ``/ip6/...`` and ``http(s)://HOST:PORT`` URLs; anything else is a UsageError.
    """
    text = addr.strip()
    if text.startswith("/"):
        parts = text.strip("/").split("/")
        if len(parts) < 4 or parts[0] not in ("ip4", "ip6", "dns", "dns4", "dns6") or parts[2] != "tcp":
            raise UsageError(f"not an IPFS API address: {addr!r} (expected /ip4/HOST/tcp/PORT)")
        if not parts[3].isdigit():
            raise UsageError(f"not an IPFS API address: {addr!r} (bad port)")
        if len(parts) == 4:
            parts.append("http")
        elif len(parts) != 5 or parts[4] not in ("http", "https"):
            raise UsageError(f"not an IPFS API address: {addr!r}")
        return "/" + "/".join(parts)
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UsageError(f"not an IPFS API address: {addr!r} (expected a multiaddr or http://HOST:PORT)")
    if url.path.rstrip("/") not in ("", "/api/v0"):
        raise UsageError(f"not an IPFS API address: {addr!r} (unexpected path {url.path!r})")
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError as exc:
        raise UsageError(f"not an IPFS API address: {addr!r} (bad port)") from exc
    try:
        family = "ip4" if ipaddress.ip_address(url.hostname).version == 4 else "ip6"
    except ValueError:
        family = "dns"
    return f"/{family}/{url.hostname}/tcp/{port}/{url.scheme}"


_LIBC = ctypes.CDLL(None, use_errno=True)


def _libc_syncfs(fd: int) -> int:
    return int(_LIBC.syncfs(fd))


def api_url(addr: str) -> str:
    """The API address as a URL (``http://HOST:PORT``), for calls made over plain HTTP."""
    parts = api_multiaddr(addr).strip("/").split("/")
    host = f"[{parts[1]}]" if parts[0] == "ip6" else parts[1]
    return f"{parts[4]}://{host}:{parts[3]}"


_PIN_CHUNK = 1024  # ~64 KB of query string per request: well under Kubo's HTTP header limit (1 MB)


class IpfsClient:
    """Typed, verifying operations over ``ipfshttpclient.Client``.

    ``timeout`` bounds ordinary requests (uploads, pins) and ``block_timeout``
    bounds single-block lookups, which is how long a missing block takes to be
    reported as `BlockNotFound` on a daemon that cannot tell "absent" from "not
    yet found". The client keeps an HTTP connection open: use it as a context
    manager or call `close`.
    """

    def __init__(
        self, addr: str, *, timeout: float = 60.0, block_timeout: float = 10.0, repo: str | None = None
    ) -> None:
        self.addr = addr
        self.multiaddr = api_multiaddr(addr)
        self.timeout = timeout
        self.block_timeout = block_timeout
        self.repo = repo
        self.url = api_url(addr)
        self._local = threading.local()
        try:
            self._api: Any = ipfshttpclient.Client(self.multiaddr, timeout=timeout, session=True)
        except ipfs_exc.Error as exc:
            raise UsageError(f"not an IPFS API address: {addr!r}: {_one_line(exc)}") from exc

    # -- lifecycle ----------------------------------------------------------

    def persist(self) -> bool:
        """Make every block stored so far durable, when the daemon's repository is on this machine.

        Kubo writes blocks without fsync by default (flatfs `sync: false`), which
        is why its imports are fast; one `syncfs(2)` of the repository's
        filesystem after a batch's import is the durability point before the
        batch is anchored. Returns False when the repository is not local (a
        production node is configured for durability by its operator).
        """
        if self.repo is None:
            return False
        try:
            fd = os.open(self.repo, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False  # the repository is not here after all (the descriptor came from elsewhere)
        try:
            if _libc_syncfs(fd) != 0:
                error = ctypes.get_errno()
                raise IpfsError(f"could not make the IPFS repository {self.repo} durable: {os.strerror(error)}")
        finally:
            os.close(fd)
        return True

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> IpfsClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------

    def _unavailable(self, exc: Exception) -> IpfsUnavailable:
        # requests buries the reason ("Connection refused") inside a long repr; keep just that.
        found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
        reason = found.group(1).strip() if found else "cannot connect"
        return IpfsUnavailable(f"IPFS daemon at {self.addr} does not answer ({reason}): is it running?")

    @contextlib.contextmanager
    def _calling(self, what: str, cid: CID | None = None) -> Iterator[None]:
        """Translate ipfshttpclient's exceptions into provanchor's typed, one-line errors."""
        try:
            yield
        except ipfs_exc.ConnectionError as exc:
            raise self._unavailable(exc) from exc
        except ipfs_exc.TimeoutError as exc:
            if cid is not None:
                raise BlockNotFound(str(cid), f"IPFS block {cid} is not available (no answer in time)") from exc
            raise IpfsUnavailable(f"IPFS daemon at {self.addr} did not answer {what} in time") from exc
        except ipfs_exc.ErrorResponse as exc:
            message = _one_line(exc)
            if "no space left" in message.lower():
                raise IpfsError(
                    f"the IPFS daemon at {self.addr} is out of disk space ({what} failed: no space left on device): "
                    "free space where its repository lives, then retry; nothing already recorded is lost"
                ) from exc
            if cid is not None and any(hint in message.lower() for hint in _NOT_FOUND_HINTS):
                raise BlockNotFound(str(cid), f"IPFS block {cid} is not available: {message}") from exc
            raise IpfsError(f"IPFS daemon refused {what}: {message}") from exc
        except ipfs_exc.Error as exc:  # protocol errors, HTTP status without a message...
            raise IpfsError(f"IPFS daemon at {self.addr} failed {what}: {_one_line(exc)}") from exc
        except (requests.RequestException, OSError) as exc:  # a connection dropped mid-response
            raise IpfsUnavailable(f"IPFS daemon at {self.addr} dropped the connection during {what}") from exc

    def _reply_cid(self, reply: Any, key: str, what: str) -> CID:
        """The CID in a daemon reply; a malformed reply is the daemon's fault (IpfsError), not the caller's."""
        try:
            value = reply[key]
            if isinstance(value, Mapping):  # a dag-json link: {"/": "bafy..."}
                value = value["/"]
            return CID.parse(str(value))
        except (InvalidCid, KeyError, TypeError, IndexError) as exc:
            raise IpfsError(f"IPFS daemon sent a malformed reply to {what}: {_one_line(reply)[:200]}") from exc

    def _daemon_timeout(self, seconds: float) -> dict[str, str]:
        return {"timeout": f"{max(1, int(seconds * 1000))}ms"}

    # -- information --------------------------------------------------------

    def version(self) -> str:
        """The daemon's version string (Kubo's release, e.g. ``0.43.1``)."""
        with self._calling("version"):
            reply = self._api.version()
        return str(reply["Version"])

    def peer_id(self) -> str:
        """The daemon's peer id: which block store this is (a cache of what it holds is only valid for it)."""
        with self._calling("id"):
            reply = self._api.id()
        return str(reply["ID"])

    # -- blocks -------------------------------------------------------------

    def put_blocks(self, blocks: Sequence[tuple[CID, bytes]], pin_roots: Sequence[CID] = ()) -> None:
        """Store a batch of blocks in one request (a CAR through ``dag import``) and pin ``pin_roots``.

        Every block is checked against its CID first (BlockMismatch naming it):
        see the module docstring for why that matters. Pins are recursive, so
        each root's whole DAG must be in the batch or already stored; the
        request is idempotent. One import of a whole batch (1,025 ~1 KiB blocks)
        costs one round trip, against one per block with ``block put``
        (benchmarks/ipfs_bulk.py).
        """
        roots = [parse_cid(root) for root in pin_roots]
        for cid, block in blocks:
            if not isinstance(cid, CID):
                raise TypeError("put_blocks takes (CID, bytes) pairs")
            if not cid.matches(block):
                raise BlockMismatch(str(cid), f"block {cid} does not match its CID: refusing to upload it")
        if not blocks and not roots:
            return
        car = car_bytes(roots, blocks)
        opts = {"pin-roots": "true" if roots else "false", **self._daemon_timeout(self.timeout)}
        try:
            with self._calling("dag import"):
                replies = list(
                    self._api.dag.imprt(io.BytesIO(car), stream=True, opts=opts, timeout=self.timeout + _HTTP_SLACK)
                )
        except IpfsError as exc:
            if roots and "timed out" in str(exc):
                # A recursive pin waits for missing linked blocks; say what that usually means.
                raise IpfsError(f"{exc} (is the DAG under {', '.join(map(str, roots))} incomplete?)") from exc
            raise
        pinned: set[CID] = set()
        for reply in replies:
            root = reply.get("Root") if hasattr(reply, "get") else None
            if not root:
                continue
            error = root.get("PinErrorMsg")
            cid = self._reply_cid(root, "Cid", "dag import")
            if error:
                raise IpfsError(f"IPFS daemon could not pin {cid}: {_one_line(error)}")
            pinned.add(cid.to_v1())
        missing = [str(root) for root in roots if root.to_v1() not in pinned]
        if missing:
            raise IpfsError(f"IPFS daemon did not confirm pinning {', '.join(missing)}")

    def put_block(self, data: bytes, codec: int) -> CID:
        """Store one block with ``codec``; the daemon's CID must equal the locally computed one."""
        if codec not in _CODEC_NAMES:
            raise UsageError(f"unsupported codec 0x{codec:x}")
        local = CID.for_block(codec, data)
        # Kubo's name; it silently ignores unknown options such as the old `format`.
        opts = {"cid-codec": _CODEC_NAMES[codec], "mhtype": "sha2-256"}
        with self._calling("block put"):
            reply = self._api.block.put(io.BytesIO(data), opts=opts)
        remote = self._reply_cid(reply, "Key", "block put")
        if remote.to_v1() != local:
            raise BlockMismatch(str(local), f"IPFS stored block {local} as {remote}: refusing to trust it")
        return local

    def get_block(self, cid: CID | str) -> bytes:
        """A block's bytes, verified against ``cid`` (BlockMismatch / BlockNotFound / IpfsUnavailable)."""
        wanted = parse_cid(cid)
        return self._get_verified(wanted)

    def has_block(self, cid: CID | str) -> bool:
        """Whether the daemon can produce the block (within ``block_timeout``)."""
        wanted = parse_cid(cid)
        try:
            with self._calling("block stat", wanted):
                self._api.block.stat(
                    wanted.encode(),
                    opts=self._daemon_timeout(self.block_timeout),
                    timeout=self.block_timeout + _HTTP_SLACK,
                )
        except BlockNotFound:
            return False
        return True

    def _get_verified(self, cid: CID, root: CID | None = None) -> bytes:
        """Fetch and hash-check one block; errors name ``root`` (what the caller asked for) when given."""
        named = root if root is not None else cid
        try:
            with self._calling("block get", cid):
                data = self._api.block.get(
                    cid.encode(),
                    opts=self._daemon_timeout(self.block_timeout),
                    timeout=self.block_timeout + _HTTP_SLACK,
                )
        except BlockNotFound as exc:
            if root is None or root == cid:
                raise
            raise BlockNotFound(str(root), f"IPFS block {cid} of {root} is not available") from exc
        if not isinstance(data, bytes) or not cid.matches(data):
            if root is None or root == cid:
                raise BlockMismatch(str(named))
            raise BlockMismatch(str(root), f"IPFS returned wrong bytes for block {cid} of {root}: refusing them")
        return data

    # -- files --------------------------------------------------------------

    def _add(self, source: str | io.BytesIO, what: str) -> CID:
        with self._calling(f"add {what}"):
            reply = self._api.add(
                source,
                cid_version=1,
                raw_leaves=True,
                chunker=f"size-{CHUNK_SIZE}",
                pin=True,
                timeout=self.timeout,
            )
        return self._reply_cid(reply, "Hash", f"add {what}")

    def add_file(self, path: str | os.PathLike[str]) -> CID:
        """Add and pin a file (CIDv1, raw leaves, 256 KiB chunks), streamed from disk.

        The local CID is computed first, so a daemon that reports a different
        one (wrong chunking, corrupted upload, lying) raises BlockMismatch.
        """
        file_path = Path(path)
        if not file_path.is_file():
            raise UsageError(f"not a regular file: {file_path}")
        local = parse_cid(cid_for_file(file_path))
        remote = self._add(str(file_path), str(file_path))
        if remote != local:
            raise BlockMismatch(str(local), f"IPFS stored {file_path} as {remote}, expected {local}: refusing it")
        return local

    def add_bytes(self, data: bytes) -> CID:
        """Add and pin ``data`` as a UnixFS file; same parameters and check as `add_file`."""
        local = parse_cid(cid_for_bytes(data))
        remote = self._add(io.BytesIO(data), f"{len(data)} bytes")
        if remote != local:
            raise BlockMismatch(str(local), f"IPFS stored the data as {remote}, expected {local}: refusing it")
        return local

    def iter_file(self, cid: CID | str) -> Iterator[bytes]:
        """The content of a UnixFS file (or raw block) in order, each block verified as it arrives.

        Walks the DAG depth-first with one ``block get`` per block, so it works
        for any chunking or layout, not only the parameters `add_file` uses.
        The CID is parsed now (InvalidCid at the call, not at the first ``next``).
        """
        return self._walk(parse_cid(cid))

    def _walk(self, root: CID) -> Iterator[bytes]:
        stack = [root]
        expected: int | None = None
        total = 0
        while stack:
            current = stack.pop()
            block = self._get_verified(current, root)
            if current.codec == RAW:
                total += len(block)
                yield block
                continue
            if current.codec != DAG_PB:
                raise UnixFSError(f"{root} is not a UnixFS file: block {current} is {current.codec_name}")
            node = decode_pbnode(block)
            if node.data is None:
                raise UnixFSError(f"{root} is not a UnixFS file: block {current} has no UnixFS data")
            info = decode_unixfs(node.data)
            if info.type not in (UNIXFS_FILE, UNIXFS_RAW):
                kind = _UNIXFS_TYPES.get(info.type, str(info.type))
                raise UnixFSError(f"{root} is not a UnixFS file: block {current} is a {kind}")
            if current == root:
                expected = info.filesize
            if info.data:
                total += len(info.data)
                yield info.data
            stack.extend(link.cid for link in reversed(node.links))
        if expected is not None and total != expected:
            raise UnixFSError(f"UnixFS file {root} declares {expected} bytes but its blocks hold {total}")

    def stream_content(self, cid: CID | str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """A file's bytes as Kubo's `cat` streams them: one request however many blocks the file has.

        The bytes are NOT checked block by block here: the caller must hash
        them against a digest it trusts (a record's signed sha256 and size),
        which proves every byte at once. Use `iter_file` where no such digest
        is known. A daemon that cannot produce the file is BlockNotFound.
        """
        wanted = parse_cid(cid)
        session = self._http()
        try:
            reply = session.post(
                f"{self.url}/api/v0/cat",
                params={"arg": wanted.encode(), **self._daemon_timeout(self.timeout)},
                stream=True,
                timeout=self.timeout + _HTTP_SLACK,
            )
        except requests.RequestException as exc:
            raise self._unavailable(exc) from exc
        with reply:
            if reply.status_code != 200:
                raise BlockNotFound(str(wanted), f"IPFS content {wanted} is not available: {_error_text(reply)}")
            try:
                yield from reply.iter_content(chunk)
            except requests.RequestException as exc:
                raise IpfsUnavailable(f"IPFS daemon at {self.addr} dropped the connection during cat") from exc

    def _http(self) -> requests.Session:
        """A plain HTTP session for calls ipfshttpclient lacks (one per thread: sessions are not shared)."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def cat(self, cid: CID | str) -> bytes:
        """A whole file's content, every block verified (see `iter_file`)."""
        return b"".join(self.iter_file(cid))

    def fetch_file(self, cid: CID | str, dest_path: str | os.PathLike[str]) -> None:
        """Write a file's verified content to ``dest_path``.

        The bytes go to a temporary file in the destination directory, renamed
        over ``dest_path`` only once every block has been verified, so a
        failure never leaves unverified (or partial) content under that name.
        """
        pieces = self.iter_file(cid)
        dest = Path(dest_path)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for piece in pieces:
                    out.write(piece)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # -- pins ---------------------------------------------------------------

    def pin(self, cid: CID | str) -> None:
        """Pin recursively; BlockNotFound if part of the DAG is missing (within ``timeout``)."""
        wanted = parse_cid(cid)
        with self._calling("pin add", wanted):
            self._api.pin.add(
                wanted.encode(),
                recursive=True,
                opts=self._daemon_timeout(self.timeout),
                timeout=self.timeout + _HTTP_SLACK,
            )

    def pin_direct(self, cids: Sequence[CID | str]) -> None:
        """Pin blocks themselves, not what they link to, in one request.

        A batch pins its record and manifest blocks this way: nothing is walked,
        so a record linking to content stored elsewhere (or too large to store)
        can never stall the pin, and the cost does not depend on the DAG.
        """
        wanted = [parse_cid(c).encode() for c in cids]
        for start in range(0, len(wanted), _PIN_CHUNK):  # arguments travel in the URL: keep it short
            chunk = wanted[start : start + _PIN_CHUNK]
            try:
                self._pin_direct(chunk)
            except IpfsError as exc:
                if "already pinned recursively" not in str(exc):
                    raise
                # A daemon may refuse a direct pin of a block a recursive pin already holds (the
                # same content recorded earlier, say), and the whole request with it: that block
                # is pinned, so pin the others one by one.
                for one in chunk:
                    try:
                        self._pin_direct([one])
                    except IpfsError as single:
                        if "already pinned recursively" not in str(single):
                            raise

    def _pin_direct(self, cids: list[str]) -> None:
        with self._calling("pin add"):
            self._api.pin.add(
                *cids,
                recursive=False,
                opts=self._daemon_timeout(self.timeout),
                timeout=self.timeout + _HTTP_SLACK,
            )

    def unpin(self, cid: CID | str) -> None:
        """Remove a recursive pin (IpfsError if ``cid`` is not pinned that way)."""
        wanted = parse_cid(cid)
        with self._calling("pin rm"):
            self._api.pin.rm(wanted.encode(), timeout=self.timeout)

    def is_pinned(self, cid: CID | str) -> bool:
        """Whether ``cid`` is pinned directly, recursively or through a pinned parent."""
        wanted = parse_cid(cid)
        try:
            # A daemon may look for a block it does not have even here; that is "not pinned" too.
            with self._calling("pin ls", wanted):
                reply = self._api.pin.ls(
                    wanted.encode(),
                    type="all",
                    opts=self._daemon_timeout(self.block_timeout),
                    timeout=self.block_timeout + _HTTP_SLACK,
                )
        except BlockNotFound:
            return False
        except IpfsError as exc:
            if "not pinned" in str(exc):
                return False
            raise
        keys = reply.get("Keys") or {}
        return any(self._reply_cid({"k": key}, "k", "pin ls").to_v1() == wanted.to_v1() for key in keys)
