"""Opening what a replay reads: the index (synced with the ledger first), IPFS and the contract."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from provanchor.chain.client import LedgerClient
from provanchor.home import Home
from provanchor.index.fresh import open_index
from provanchor.ipfs.client import IpfsClient
from provanchor.network import load_network
from provanchor.progress import ProgressFn
from provanchor.replay.source import LedgerRecords

__all__ = ["ReplaySources", "open_sources"]


@dataclass(frozen=True)
class ReplaySources:
    records: LedgerRecords
    ipfs: IpfsClient
    ledger: LedgerClient
    cache_dir: Path | None


@contextmanager
def open_sources(
    home: Home,
    index_path: Path | None = None,
    *,
    sync: bool = True,
    cache: bool = True,
    progress: ProgressFn | None = None,
) -> Iterator[ReplaySources]:
    """The network's index, IPFS and ledger; the index first catches up with every anchored checkpoint."""
    network = load_network(home)
    ledger = LedgerClient(network.rpc_url, network.contract)
    ipfs = IpfsClient(network.ipfs_api)
    store, _ = open_index(home, index_path, sync=sync, network=network, ledger=ledger, ipfs=ipfs, progress=progress)
    with store:
        cache_dir = home.root / "cache" / "content" if cache else None
        try:
            yield ReplaySources(LedgerRecords(store), ipfs, ledger, cache_dir)
        finally:
            ipfs.close()
