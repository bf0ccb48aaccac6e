"""The explorer's index follower: sync once at start, then follow new checkpoints in the background.

The index is a cache of the chain and IPFS; keeping it current is the only
writing the explorer does, and it writes nothing but the index. A failed sync
(the chain or IPFS went away) is kept as the follower's state, so every page
can say which service is down while it keeps answering from what the index
already holds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from provanchor.index.store import IndexStore
from provanchor.index.sync import Indexer
from provanchor.network import NetworkDescriptor

__all__ = ["FollowState", "Follower"]


@dataclass(frozen=True)
class FollowState:
    synced_at: float | None
    records: int
    error: str | None

    def to_json(self) -> dict[str, object]:
        return {"synced_at": self.synced_at, "records": self.records, "error": self.error}


class Follower:
    def __init__(self, network: NetworkDescriptor, index_path: Path, interval: float = 2.0) -> None:
        self.network = network
        self.index_path = index_path
        self.interval = interval
        self._state = FollowState(None, 0, None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> FollowState:
        return self._state

    def sync_once(self) -> FollowState:
        try:
            with IndexStore.open(self.index_path, must_exist=False) as store:
                Indexer(store, self.network).sync()
                store.ensure_indexes()
                records = store.record_count()
            self._state = FollowState(time.time(), records, None)
        except Exception as exc:  # the explorer keeps serving the index as it is, and says why it is stale
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._state = FollowState(self._state.synced_at, self._state.records, text[:300])
        return self._state

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="provanchor-explorer-follow", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
