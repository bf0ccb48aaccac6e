"""A local IPFS Cluster: N Kubo nodes, each with an ipfs-cluster-service peer (CRDT consensus).

`node up --ipfs-peers N` runs this instead of the single offline Kubo: every
member is a Kubo node (online, loopback swarm, no DHT) plus a cluster peer
that follows the others through CRDT, so a pin made through any peer's REST
API is allocated to `replication` members, which fetch the blocks by bitswap
from whichever node has them. The cluster secret is generated once into the
data directory (mode 0600); ports are loopback and kept across restarts.

Member 0 is the node this machine's clients write to (`network.json`'s
`ipfs_api`) and the cluster's bootstrap peer; reads may use any member and
still hash every block against its CID.

Flags set in each peer's service.json and why:

* `consensus.crdt.trusted_peers = ["*"]` within one secret-sharing cluster;
* `cluster.disable_repinning = false` and a 2 s monitor ping: when a member
  goes away, its pins are re-allocated to the others, so the replication
  factor is restored (the default keeps them waiting for it);
* `cluster.pin_recover_interval = 30s`: a pin that failed on a member (its
  blocks were unreachable while a link was down) is retried within 30 s, not
  the default 12 minutes;
* `ipfs_connector.ipfshttp.connect_swarms_delay = 1s`: members' Kubo nodes
  are connected to each other at once, not after the default 30 s.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provanchor.errors import ConfigError, DaemonStartError, UsageError
from provanchor.localnet.processes import IpfsService, ManagedDaemon, post_json, read_json
from provanchor.localnet.tools import Host, find_go_tool, free_port, port_is_free

__all__ = ["ClusterMember", "ClusterPeerService", "LocalCluster"]

CLUSTER_ENV = "PROVANCHOR_IPFS_CLUSTER_SERVICE"


def _get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _get_stream(url: str, timeout: float = 5.0) -> list[Any]:
    """A cluster REST endpoint that streams one JSON object per line (`/peers`, `/pins`)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


class ClusterPeerService(ManagedDaemon):
    """One ipfs-cluster-service peer with its configuration in ``directory``."""

    def __init__(self, home: Path, index: int, directory: Path, host: Host | None = None) -> None:
        super().__init__(f"ipfs-cluster-{index}", home, markers=("ipfs-cluster-service",), host=host)
        self.index = index
        self.directory = directory
        self.ports_file = directory / "ports.json"

    @property
    def peer_id(self) -> str | None:
        value = read_json(self.directory / "identity.json").get("id")
        return value if isinstance(value, str) else None

    @property
    def api_url(self) -> str | None:
        port = read_json(self.ports_file).get("rest")
        return f"http://{self.host.address}:{port}" if isinstance(port, int) else None

    @property
    def cluster_address(self) -> str | None:
        port, peer = read_json(self.ports_file).get("cluster"), self.peer_id
        return f"/ip4/{self.host.address}/tcp/{port}/p2p/{peer}" if isinstance(port, int) and peer else None

    def ensure_config(self, secret: str, kubo_api: str) -> None:
        """Create the peer's identity and service.json once; point it at its Kubo node on every start."""
        tool = find_go_tool("ipfs-cluster-service", CLUSTER_ENV)
        if not (self.directory / "service.json").exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                [str(tool), "-c", str(self.directory), "init", "--consensus", "crdt", "--force"],
                env={**os.environ, "CLUSTER_SECRET": secret},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if done.returncode != 0:
                raise DaemonStartError(f"cannot initialise cluster peer {self.index}: {done.stderr.strip()[-300:]}")
        ports = read_json(self.ports_file)
        chosen = {}
        for key in ("cluster", "rest", "proxy", "pinsvc"):
            previous = ports.get(key)
            chosen[key] = previous if isinstance(previous, int) and port_is_free(previous) else free_port()
        self.ports_file.write_text(json.dumps(chosen) + "\n")
        config_path = self.directory / "service.json"
        config = read_json(config_path)
        if not config:
            raise ConfigError(f"cluster peer config {config_path} is unreadable: remove {self.directory}")
        cluster = config["cluster"]
        if cluster.get("secret") != secret:
            raise ConfigError(
                f"cluster peer {self.index} in {self.directory} has another cluster secret than {self.home}: "
                "it belongs to another cluster; run `provanchor node up --reset`"
            )
        address = self.host.address
        cluster.update(
            peername=f"member-{self.index}",
            listen_multiaddress=[f"/ip4/{address}/tcp/{chosen['cluster']}"],
            disable_repinning=False,
            monitor_ping_interval="2s",
            pin_recover_interval="30s",
            mdns_interval="0s",
        )
        # Metrics (free space, pin queues) travel by pubsub; every peer must hear every other's to
        # allocate pins, so they are flooded to all, and the mesh is maintained every second.
        cluster["pubsub"].update(flood_publish=True, heartbeat_interval="1s")
        api = config["api"]
        api["restapi"]["http_listen_multiaddress"] = f"/ip4/{address}/tcp/{chosen['rest']}"
        api["ipfsproxy"]["listen_multiaddress"] = f"/ip4/{address}/tcp/{chosen['proxy']}"
        api["ipfsproxy"]["node_multiaddress"] = kubo_api
        api["pinsvcapi"]["http_listen_multiaddress"] = f"/ip4/{address}/tcp/{chosen['pinsvc']}"
        connector = config["ipfs_connector"]["ipfshttp"]
        connector.update(node_multiaddress=kubo_api, connect_swarms_delay="1s")
        config["consensus"]["crdt"]["trusted_peers"] = ["*"]
        config_path.write_text(json.dumps(config, indent=2) + "\n")

    def start(self, bootstrap: list[str], timeout: float = 60.0) -> str:
        """Start the peer (or find it running); returns its REST API URL."""
        with self._exclusive():
            url = self.api_url
            if self.is_running() and url is not None:
                return url
            self._forget()
            tool = find_go_tool("ipfs-cluster-service", CLUSTER_ENV)
            argv = [str(tool), "-c", str(self.directory), "daemon"]
            if bootstrap:
                argv += ["--bootstrap", ",".join(bootstrap)]
            pid = self._spawn(argv)
            assert url is not None
            self._wait_ready(pid, lambda: _answers(url), timeout)
            return url


def _answers(url: str) -> bool:
    try:
        return isinstance(_get_json(f"{url}/id", timeout=1.0), dict)
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class ClusterMember:
    index: int
    kubo_api: str
    cluster_api: str
    peer_id: str | None

    def to_json(self) -> dict[str, object]:
        return {"index": self.index, "api": self.kubo_api, "cluster_api": self.cluster_api, "id": self.peer_id}


class LocalCluster:
    """The members of the local network's IPFS Cluster, under ``home/cluster/``.

    ``hosts`` places member i on ``hosts[i]`` (a host of our own: the multi-host tests); without
    it every member runs where it last ran, this machine's loopback the first time.
    """

    def __init__(self, home: Path, hosts: Sequence[Host] | None = None) -> None:
        self.home = Path(home)
        self.root = self.home / "cluster"
        self.secret_file = self.root / "secret"
        self.hosts = tuple(hosts) if hosts is not None else None

    def _host(self, index: int) -> Host | None:
        return self.hosts[index] if self.hosts is not None and index < len(self.hosts) else None

    def kubo(self, index: int) -> IpfsService:
        directory = self.root / str(index) / "ipfs"
        return IpfsService(self.home, f"ipfs-{index}", directory, online=True, host=self._host(index))

    def peer(self, index: int) -> ClusterPeerService:
        return ClusterPeerService(self.home, index, self.root / str(index) / "cluster", host=self._host(index))

    def size(self) -> int:
        """How many members this data directory's cluster has (0: no cluster)."""
        return len([p for p in self.root.iterdir() if p.name.isdigit()]) if self.root.is_dir() else 0

    def secret(self) -> str:
        """The cluster secret, generated once (32 random bytes, hex) and kept mode 0600."""
        if self.secret_file.exists():
            value = self.secret_file.read_text().strip()
            if len(value) != 64:
                raise ConfigError(f"the cluster secret in {self.secret_file} is not 32 bytes of hex")
            return value
        self.root.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32)
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        return value

    def start(self, peers: int, timeout: float = 90.0) -> list[ClusterMember]:
        """Start `peers` members (Kubo + cluster peer each), member 0 first as the bootstrap peer."""
        existing = self.size()
        if existing and peers != existing:
            raise UsageError(
                f"--ipfs-peers {peers}: this network's cluster has {existing} member(s); "
                "use `node up --reset` to build another"
            )
        secret = self.secret()
        members: list[ClusterMember] = []
        bootstrap: list[str] = []  # every member started so far: the peers form a full mesh
        for index in range(peers):
            kubo = self.kubo(index)
            kubo_api = kubo.start()
            peer = self.peer(index)
            if not peer.is_running():
                peer.ensure_config(secret, kubo_api)
            cluster_api = peer.start(bootstrap)
            if peer.cluster_address is not None:
                bootstrap.append(peer.cluster_address)
            members.append(ClusterMember(index, kubo_api, cluster_api, peer.peer_id))
        self._peer_nodes(peers)
        self._wait_joined(members, timeout)
        return members

    def _peer_nodes(self, peers: int) -> None:
        """Make every member's Kubo keep a connection to every other's (Kubo's peering service).

        With no DHT, bitswap asks only the nodes it is connected to: a member that came back must be
        reachable at once by the ones that fetch its blocks, and a cut link must heal by itself.
        The cluster peer's one-off `connect_swarms` at start is not enough for either: it runs
        before the cluster peers have found each other, and never again. Peering reconnects with
        backoff for as long as the node runs; it is set at run time on every `start`.
        """
        nodes = [self.kubo(index) for index in range(peers)]
        for node in nodes:
            for other in nodes:
                address = other.swarm_multiaddr
                if other is node or address is None or node.api_url is None:
                    continue
                query = urllib.parse.urlencode({"arg": address})
                try:
                    post_json(f"{node.api_url}/api/v0/swarm/peering/add?{query}", None, timeout=10.0)
                except (OSError, ValueError) as exc:
                    raise DaemonStartError(f"cannot peer IPFS node {node.name} with {other.name}: {exc}") from exc

    def _wait_joined(self, members: list[ClusterMember], timeout: float) -> None:
        """Until every member has heard every member's free-space metric: only then can any of them
        allocate a pin to the others (membership and metrics are gossiped)."""
        deadline = time.monotonic() + timeout
        wanted = {m.peer_id for m in members}
        while True:
            seen: set[object] = set(wanted)
            for member in members:
                try:
                    rows = _get_json(f"{member.cluster_api}/monitor/metrics/freespace")
                    heard = {row.get("peer") for row in rows if isinstance(row, dict) and row.get("valid")}
                except (OSError, ValueError, AttributeError):
                    heard = set()
                seen &= heard
            if wanted <= seen:
                return
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(str(p) for p in wanted - seen))
                raise DaemonStartError(f"cluster peers did not join within {timeout:.0f} s: missing {missing}")
            time.sleep(0.2)

    def members(self) -> list[ClusterMember]:
        found = []
        for index in range(self.size()):
            kubo, peer = self.kubo(index), self.peer(index)
            found.append(ClusterMember(index, kubo.api_multiaddr or "", peer.api_url or "", peer.peer_id))
        return found

    def stop(self) -> list[str]:
        stopped = []
        for index in reversed(range(self.size())):
            for service in (self.peer(index), self.kubo(index)):
                if service.stop():
                    stopped.append(service.name)
        return stopped
