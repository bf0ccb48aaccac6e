"""Pins through the IPFS Cluster REST API, replicated and confirmed before the ledger names them.

With a cluster configured (`network.json`'s `ipfs_cluster`), every pin the
ledger needs is made through a cluster peer's REST API with a replication
factor, and the pipeline waits until that many members report the content
*pinned* before it anchors a checkpoint naming it: a host lost right after an
anchor does not take the only copy with it.

Blocks are still written to one Kubo node (the cluster peers fetch them by
bitswap); the cluster never sees content it could not fetch, and what any
member returns is hashed against its CID by the reader as before.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from provanchor.errors import ConfigError, IpfsError, IpfsUnavailable, UsageError
from provanchor.formats.cid import CID

__all__ = ["ClusterClient", "ClusterConfig", "ClusterPeer"]

_POLL_FIRST = 0.05
_POLL_MAX = 1.0
"""Waiting for replicas polls the pin's global status with a growing pause (x1.5 up to 1 s): each poll
makes every member ask its Kubo, so polling every 20 ms from three agents kept the members busy
answering instead of pinning."""
_RECOVER_EVERY = 3.0
_FAILED = {"pin_error", "unexpectedly_unpinned"}


@dataclass(frozen=True)
class ClusterConfig:
    """Where the cluster's REST API is and how many members must hold each pin."""

    api: str
    replication: int
    pin_timeout: float = 120.0
    """Seconds a batch may wait for its replicas before the anchorer gives up (and retries later)."""

    def to_json(self) -> dict[str, object]:
        return {"api": self.api, "replication": self.replication, "pin_timeout": self.pin_timeout}

    @classmethod
    def from_json(cls, data: object) -> ClusterConfig:
        if not isinstance(data, dict) or not isinstance(data.get("api"), str):
            raise ConfigError("network.json's ipfs_cluster must be {api: URL, replication: N}")
        replication = data.get("replication", 1)
        if type(replication) is not int or replication < 1:
            raise ConfigError(
                f"network.json's ipfs_cluster.replication must be a positive integer, got {replication!r}"
            )
        timeout = data.get("pin_timeout", 120.0)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigError(f"network.json's ipfs_cluster.pin_timeout must be positive seconds, got {timeout!r}")
        return cls(str(data["api"]).rstrip("/"), replication, float(timeout))


@dataclass(frozen=True)
class ClusterPeer:
    id: str
    peername: str
    ipfs_id: str | None
    error: str | None

    @property
    def state(self) -> str:
        return "error" if self.error else "online"


class ClusterClient:
    """A small client of the IPFS Cluster REST API (pins, their status, the peers)."""

    def __init__(self, config: ClusterConfig, timeout: float = 30.0) -> None:
        self.config = config
        self.timeout = timeout
        self._fronting: dict[str, str | None] = {}

    def _request(self, method: str, path: str, query: dict[str, str] | None = None) -> bytes:
        url = f"{self.config.api}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", str(exc))
            except (ValueError, AttributeError):
                message = str(exc)
            raise IpfsError(f"IPFS Cluster at {self.config.api} refused {method} {path}: {message}") from exc
        except (OSError, ValueError) as exc:
            raise IpfsUnavailable(f"IPFS Cluster REST API at {self.config.api} does not answer") from exc

    def peers(self) -> list[ClusterPeer]:
        """Every member this peer knows, with the error it reports for the unreachable ones."""
        found = []
        for line in self._request("GET", "/peers").splitlines():
            if not line.strip():
                continue
            row: dict[str, Any] = json.loads(line)
            ipfs: dict[str, Any] = row["ipfs"] if isinstance(row.get("ipfs"), dict) else {}
            found.append(
                ClusterPeer(str(row.get("id")), str(row.get("peername", "")), ipfs.get("id"), row.get("error") or None)
            )
        return found

    def peer_fronting(self, ipfs_id: str) -> str | None:
        """This REST API's own cluster peer when it runs beside the Kubo node `ipfs_id`, else None.

        A writer stores its blocks on that node: allocating the pin there first costs nothing
        (the blocks are local), so only `replication - 1` members fetch them by bitswap.
        """
        if ipfs_id not in self._fronting:
            identity = json.loads(self._request("GET", "/id"))
            ipfs = identity.get("ipfs") if isinstance(identity, dict) else None
            beside = isinstance(ipfs, dict) and ipfs.get("id") == ipfs_id and isinstance(identity.get("id"), str)
            self._fronting[ipfs_id] = str(identity["id"]) if beside else None
        return self._fronting[ipfs_id]

    def check_replication(self) -> None:
        """UsageError when the cluster has fewer members than the replication factor asks for."""
        members = len(self.peers())
        if self.config.replication > members:
            raise UsageError(
                f"replication factor {self.config.replication} is larger than the {members} member(s) of the "
                f"IPFS Cluster at {self.config.api}"
            )

    def pin(self, cid: CID, *, direct: bool = False, name: str = "", prefer: str | None = None) -> None:
        """Ask the cluster to keep `cid` (its whole DAG unless `direct`) on `replication` members,
        `prefer` (a cluster peer id) first."""
        replication = str(self.config.replication)
        query = {"replication-min": replication, "replication-max": replication}
        query["mode"] = "direct" if direct else "recursive"
        if name:
            query["name"] = name
        if prefer:
            query["user-allocations"] = prefer
        try:
            self._request("POST", f"/pins/{cid}", query)
        except IpfsError as exc:
            if "already pinned" not in str(exc):  # a retried batch: the earlier pin stands
                raise

    def states(self, cid: CID) -> list[str]:
        """The state each member reports for `cid` now (`pinned`, `pinning`, `pin_error`, `remote`...)."""
        status = json.loads(self._request("GET", f"/pins/{cid}"))
        peer_map = status.get("peer_map") if isinstance(status, dict) else None
        if not isinstance(peer_map, dict):
            return []
        return [str(info.get("status")) for info in peer_map.values() if isinstance(info, dict)]

    def pinned_on(self, cid: CID) -> int:
        """How many members report `cid` pinned now."""
        return self.states(cid).count("pinned")

    def replicate(self, pins: Sequence[tuple[CID, bool]], name: str = "", prefer: str | None = None) -> None:
        """Pin each (cid, direct) and wait until `replication` members hold every one of them."""
        for cid, direct in pins:
            self.pin(cid, direct=direct, name=name, prefer=prefer)
        timeout = self.config.pin_timeout
        deadline = time.monotonic() + timeout
        waiting = [cid for cid, _ in pins]
        recovered = 0.0
        pause = _POLL_FIRST
        while waiting:
            states = {cid: self.states(cid) for cid in waiting}
            waiting = [cid for cid in waiting if states[cid].count("pinned") < self.config.replication]
            if not waiting:
                return
            # A member that failed to fetch the blocks (a link was down) would only retry at the
            # cluster's recover interval: ask it now, at most every few seconds.
            failed = [cid for cid in waiting if _FAILED & set(states[cid])]
            if failed and time.monotonic() - recovered > _RECOVER_EVERY:
                recovered = time.monotonic()
                for cid in failed:
                    self._request("POST", f"/pins/{cid}/recover")
            if time.monotonic() > deadline:
                raise IpfsUnavailable(
                    f"IPFS Cluster at {self.config.api}: {waiting[0]} is not pinned on {self.config.replication} "
                    f"member(s) after {timeout:.0f} s (members down?); it stays in the spool until it is"
                )
            time.sleep(pause)
            pause = min(_POLL_MAX, pause * 1.5)
