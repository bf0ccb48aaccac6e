"""Where a verifier gets blocks from, none of them trusted: IPFS, a gateway, a CAR bundle, an index.

Every source hands out only bytes that hash to the CID asked for; anything
else is `BlockMismatch`, and a block it cannot produce is `BlockNotFound`.
So the choice of source changes how fast a verification runs, never what it
concludes. The index is a hint in a second sense: it is asked for a record
by (agent, seq), and what it answers is used only when it hashes to the CID
the anchored manifest lists at that position; otherwise the block is fetched
from the real source.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import requests

from provanchor.errors import BlockMismatch, BlockNotFound, IpfsUnavailable, UsageError
from provanchor.formats.cid import CID, DAG_PB, RAW
from provanchor.formats.unixfs import UNIXFS_FILE, UNIXFS_RAW, UnixFSError, decode_pbnode, decode_unixfs
from provanchor.ipfs.client import IpfsClient, api_url
from provanchor.ipfs.pipelined import PipelinedBlocks

__all__ = [
    "BlockSource",
    "GatewaySource",
    "IpfsSource",
    "MemorySource",
    "content_bytes",
    "dag_blocks",
]

_PARALLEL_FROM = 4


class BlockSource(Protocol):
    """Verified blocks by CID."""

    description: str

    def get(self, cid: CID) -> bytes:
        """The block's bytes, checked against `cid` (BlockMismatch / BlockNotFound)."""
        ...

    def get_many(self, cids: Sequence[CID]) -> list[bytes | Exception]:
        """Many blocks; an unusable one comes back as its BlockMismatch / BlockNotFound."""
        ...


def _one(get: Callable[[CID], bytes], cid: CID) -> bytes | Exception:
    try:
        return get(cid)
    except (BlockNotFound, BlockMismatch) as exc:
        return exc


class IpfsSource:
    """An IPFS daemon's RPC API; every block hash-checked against its CID.

    Sets of blocks are fetched with pipelined `block/get` requests on two
    connections (`PipelinedBlocks`): no round trip is waited for, so a reader
    is not capped at one block per HTTP exchange. A single block goes through
    `IpfsClient`.
    """

    def __init__(self, api: str, workers: int = 8, block_timeout: float = 10.0) -> None:
        self.api = api
        self.description = f"IPFS API {api}"
        self._block_timeout = block_timeout
        self.client = IpfsClient(api, block_timeout=block_timeout)
        url = api_url(api)
        self._pipelined = PipelinedBlocks(url, timeout=block_timeout) if url.startswith("http://") else None
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify-fetch")

    def _client(self) -> IpfsClient:
        client: IpfsClient | None = getattr(self._local, "client", None)
        if client is None:
            client = IpfsClient(self.api, block_timeout=self._block_timeout)
            self._local.client = client
        return client

    def get(self, cid: CID) -> bytes:
        return self.client.get_block(cid)

    def get_many(self, cids: Sequence[CID]) -> list[bytes | Exception]:
        if len(cids) < _PARALLEL_FROM:
            return [_one(self.client.get_block, cid) for cid in cids]
        if self._pipelined is not None:
            return self._pipelined.get_many(cids)
        return list(self._pool.map(lambda cid: _one(self._client().get_block, cid), cids))

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.client.close()


class GatewaySource:
    """A trustless HTTP gateway (``GET /ipfs/CID?format=raw``), for auditors without an IPFS node."""

    def __init__(self, url: str, timeout: float = 30.0, workers: int = 8) -> None:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"a gateway is an http(s) URL, got {url!r}")
        self.url = url.rstrip("/")
        self.description = f"gateway {self.url}"
        self.timeout = timeout
        self._session = requests.Session()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify-gateway")

    def get(self, cid: CID) -> bytes:
        try:
            reply = self._session.get(
                f"{self.url}/ipfs/{cid.encode()}",
                params={"format": "raw"},
                headers={"Accept": "application/vnd.ipld.raw"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise IpfsUnavailable(f"IPFS gateway {self.url} does not answer: {type(exc).__name__}") from exc
        if reply.status_code != 200:
            raise BlockNotFound(str(cid), f"gateway {self.url} has no block {cid} (HTTP {reply.status_code})")
        if not cid.matches(reply.content):
            raise BlockMismatch(str(cid))
        return reply.content

    def get_many(self, cids: Sequence[CID]) -> list[bytes | Exception]:
        return list(self._pool.map(lambda cid: _one(self.get, cid), cids))

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._session.close()


class MemorySource:
    """Blocks held in memory (an audit bundle's), checked against their CIDs on the way in."""

    def __init__(self, blocks: Iterable[tuple[CID, bytes]] = (), description: str = "bundle") -> None:
        self.description = description
        self._blocks: dict[CID, bytes] = {}
        for cid, data in blocks:
            self.add(cid, data)

    def add(self, cid: CID, data: bytes, hashed: bool = False) -> None:
        """Keep a block; `hashed` says the caller has just checked it (the CAR reader does), saving a rehash."""
        if not hashed and not cid.matches(data):
            raise BlockMismatch(str(cid))
        self._blocks[_key(cid)] = data

    def __contains__(self, cid: CID) -> bool:
        return _key(cid) in self._blocks

    def find(self, cid: CID) -> bytes | None:
        """The block, or None when the bundle lacks it."""
        return self._blocks.get(_key(cid))

    def __len__(self) -> int:
        return len(self._blocks)

    def get(self, cid: CID) -> bytes:
        data = self._blocks.get(_key(cid))
        if data is None:
            raise BlockNotFound(str(cid), f"block {cid} is not in the {self.description}")
        return data

    def get_many(self, cids: Sequence[CID]) -> list[bytes | Exception]:
        return [_one(self.get, cid) for cid in cids]

    def close(self) -> None:
        self._blocks.clear()


def _key(cid: CID) -> CID:
    """v0 and v1 name the same block; CIDs are almost always v1 already (no new object then)."""
    return cid if cid.version == 1 else cid.to_v1()


def dag_blocks(source: BlockSource, root: CID) -> Iterator[tuple[CID, bytes]]:
    """Every block of a UnixFS file (raw leaves or dag-pb nodes), root first, each verified.

    Checks the node types as it goes, so a DAG that is not a file is a
    UnixFSError rather than something silently half-copied.
    """
    stack = [root]
    while stack:
        current = stack.pop()
        block = source.get(current)
        yield current, block
        if current.codec == RAW:
            continue
        if current.codec != DAG_PB:
            raise UnixFSError(f"{root} is not a UnixFS file: block {current} is {current.codec_name}")
        node = decode_pbnode(block)
        if node.data is None or decode_unixfs(node.data).type not in (UNIXFS_FILE, UNIXFS_RAW):
            raise UnixFSError(f"{root} is not a UnixFS file: block {current} is not file data")
        stack.extend(link.cid for link in reversed(node.links))


def content_bytes(source: BlockSource, root: CID) -> bytes:
    """A whole UnixFS file (or raw block) reassembled from verified blocks, in order."""
    parts: list[bytes] = []
    for cid, block in dag_blocks(source, root):
        if cid.codec == RAW:
            parts.append(block)
            continue
        node = decode_pbnode(block)
        info = decode_unixfs(node.data or b"")
        if info.data:
            parts.append(info.data)
    return b"".join(parts)
