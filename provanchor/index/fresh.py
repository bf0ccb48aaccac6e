"""Opening the index for a question: synced with the ledger first, so no answer is stale.

`query`, `lineage`, `replay` and `ml` all answer from the index, a cache of
the chain and IPFS. Answering from it without catching up first would say
"0 records" right after a record was anchored; so every reader opens it
through here, which follows every checkpoint anchored since the last sync
(each record verified on the way in), unless the caller asks not to.
"""

from __future__ import annotations

from pathlib import Path

from provanchor.chain.client import LedgerClient
from provanchor.errors import NetworkNotFound
from provanchor.home import Home
from provanchor.index.store import IndexStore
from provanchor.index.sync import Indexer, SyncReport
from provanchor.ipfs.client import IpfsClient
from provanchor.network import NetworkDescriptor, load_network
from provanchor.progress import ProgressFn

__all__ = ["default_index_path", "open_index"]


def default_index_path(home: Home) -> Path:
    return home.root / "index.sqlite"


def open_index(
    home: Home,
    index_path: Path | None = None,
    *,
    sync: bool = True,
    network: NetworkDescriptor | None = None,
    ledger: LedgerClient | None = None,
    ipfs: IpfsClient | None = None,
    progress: ProgressFn | None = None,
) -> tuple[IndexStore, SyncReport | None]:
    """The index at `index_path` (default: the data directory's), synced first unless `sync` is False.

    Without sync the index must already exist. With sync, the network comes
    from `network` or the data directory's network.json; when there is none,
    the error names both ways out (`node up`, or `--no-sync` to read the index
    as it is).
    """
    path = index_path or default_index_path(home)
    if not sync:
        return IndexStore.open(path, must_exist=True), None
    if network is None:
        try:
            network = load_network(home)
        except NetworkNotFound as exc:
            raise NetworkNotFound(f"{exc} (or give --no-sync to answer from the index as it is)") from exc
    store = IndexStore.open(path, must_exist=False)
    try:
        report = Indexer(store, network, ledger=ledger, ipfs=ipfs).sync(progress=progress)
    except BaseException:
        store.close()
        raise
    return store, report
