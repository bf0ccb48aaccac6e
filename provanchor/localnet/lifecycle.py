"""`node up | status | down`: the local network as one idempotent unit.

`up` may run any number of times: after `down`, after a reboot, after anvil was
killed. It restarts what is not running and reuses the chain and contract named
in `network.json`, deploying only when there is no network yet. If the
descriptor names a contract the chain no longer has (its state was deleted),
`up` refuses rather than silently starting a second ledger; `--reset` is the
explicit way to begin again.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from provanchor.chain.client import LedgerClient, connect
from provanchor.errors import ChainUnavailable, ConfigError, IpfsUnavailable, UsageError
from provanchor.home import Home
from provanchor.localnet.cluster import LocalCluster
from provanchor.localnet.devkeys import ensure_governor_keys, load_governor_keys
from provanchor.localnet.geth import GethService, fund_from_dev_account
from provanchor.localnet.processes import AnvilService, IpfsService
from provanchor.localnet.tools import Host
from provanchor.network import NetworkDescriptor, load_network, save_network

_DEV_BALANCE_WEI = 10**24  # a million ether: dev keys must never run dry in a long demo


@dataclass(frozen=True)
class UpResult:
    descriptor: NetworkDescriptor
    deployed: bool
    started: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


CHAIN_ENGINES = ("anvil", "geth")


def _chain_service(home: Home, kind: str, host: Host | None = None) -> AnvilService | GethService:
    if kind not in CHAIN_ENGINES:
        raise UsageError(f"--chain {kind!r}: the local chain is one of {', '.join(CHAIN_ENGINES)}")
    return GethService(home.root, host) if kind == "geth" else AnvilService(home.root, host)


@dataclass(frozen=True)
class _DataPlane:
    api: str
    repo: str
    cluster: dict[str, Any] | None
    started: list[str]
    notes: list[str]


def _start_data_plane(
    home: Home,
    peers: int | None,
    replication: int | None,
    existing: NetworkDescriptor | None,
    hosts: Sequence[Host] | None = None,
) -> _DataPlane:
    """One offline Kubo, or an IPFS Cluster of `peers` members (kept as the network was first made)."""
    cluster = LocalCluster(home.root, hosts)
    had_cluster = existing is not None and existing.ipfs_cluster is not None
    if existing is not None and peers is not None and not had_cluster:
        raise UsageError("--ipfs-peers: this network uses a single IPFS node; use `node up --reset --ipfs-peers N`")
    if peers is None and had_cluster:
        peers = cluster.size()
    if peers is None:
        if replication is not None:
            raise UsageError("--replication needs --ipfs-peers N (an IPFS Cluster)")
        ipfs = IpfsService(home.root)
        started = [] if ipfs.is_running() else ["ipfs"]
        return _DataPlane(ipfs.start(), str(ipfs.repo), None, started, list(ipfs.notes))
    if peers < 1:
        raise UsageError(f"--ipfs-peers must be at least 1, got {peers}")
    if replication is None:
        previous = existing.ipfs_cluster.get("replication") if existing and existing.ipfs_cluster else None
        replication = previous if isinstance(previous, int) else (2 if peers >= 2 else 1)
    if not 1 <= replication <= peers:
        raise UsageError(f"--replication {replication} is impossible with {peers} IPFS peer(s): use 1..{peers}")
    running = {m.index for m in cluster.members() if cluster.peer(m.index).is_running()}
    members = cluster.start(peers)
    started = [f"ipfs-cluster-{m.index}" for m in members if m.index not in running]
    config = {"api": members[0].cluster_api, "replication": replication, "peers": [m.to_json() for m in members]}
    return _DataPlane(members[0].kubo_api, str(cluster.kubo(0).repo), config, started, [])


def up(
    home: Home,
    governors: int = 1,
    quorum: int = 1,
    reset: bool = False,
    chain: str | None = None,
    ipfs_peers: int | None = None,
    replication: int | None = None,
    chain_host: Host | None = None,
    ipfs_hosts: Sequence[Host] | None = None,
) -> UpResult:
    """Start (or find) the local chain and IPFS, deploy the ledger once.

    `chain` picks the engine of a new network; `ipfs_peers` makes the data plane an IPFS Cluster
    of that many members, pinning with `replication` (default 2 when there are two or more).
    `chain_host` and `ipfs_hosts` place the chain and each cluster member on hosts of our own
    (network namespaces: the multi-host tests); by default everything runs on this machine's loopback.
    """
    if governors < 1:
        raise UsageError(f"--governors must be at least 1, got {governors}")
    if quorum < 1 or quorum > governors:
        raise UsageError(f"--quorum {quorum} is impossible with {governors} governor(s): use 1..{governors}")
    home.root.mkdir(parents=True, exist_ok=True)
    if reset:
        down(home)
        # A new ledger starts with a new block store too: the old one holds another ledger's blocks.
        for path in (
            home.chain_dir,
            GethService(home.root).data_dir,
            home.ipfs_dir,
            LocalCluster(home.root).root,
            home.network_file,
            home.governor_keys_file,
        ):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    previous = load_network(home) if home.network_file.exists() else None
    existing_kind = previous.chain_kind if previous is not None else None
    if chain is not None and existing_kind is not None and chain != existing_kind and existing_kind != "external":
        raise UsageError(
            f"--chain {chain}: this network runs on {existing_kind}; use `node up --reset --chain {chain}` "
            "to start a new ledger on another engine"
        )
    kind = existing_kind if existing_kind in CHAIN_ENGINES else (chain or "anvil")
    assert kind is not None
    engine = _chain_service(home, kind, chain_host)
    started: list[str] = []
    if not engine.is_running():
        started.append(kind)
    rpc_url = engine.start()
    plane = _start_data_plane(home, ipfs_peers, replication, previous, ipfs_hosts)
    started += plane.started
    ipfs_api = plane.api

    notes: list[str] = list(plane.notes)
    existing = load_network(home) if home.network_file.exists() else None
    client_w3 = connect(rpc_url)
    chain_id = int(client_w3.eth.chain_id)
    if existing is not None:
        if len(client_w3.eth.get_code(existing.contract)) == 0:  # type: ignore[arg-type]
            raise ConfigError(
                f"the chain no longer has the ledger contract {existing.contract} (its state in "
                f"{home.chain_dir} was lost): run `provanchor node up --reset` to start a new ledger"
            )
        if governors != 1 or quorum != 1:
            notes.append("network already deployed: --governors/--quorum apply only to a new network")
        descriptor = NetworkDescriptor(
            chain_id=chain_id,
            rpc_url=rpc_url,
            contract=existing.contract,
            deployment_block=existing.deployment_block,
            ipfs_api=ipfs_api,
            ipfs_kind="kubo",
            local=True,
            ipfs_repo=plane.repo,
            extra=existing.extra,
            chain_kind=kind,
            ipfs_cluster=plane.cluster,
        )
        save_network(home, descriptor)
        return UpResult(descriptor, deployed=False, started=started, notes=notes)

    keys = ensure_governor_keys(home, governors)[:governors]
    for key in keys:
        _fund(rpc_url, kind, key.address, _DEV_BALANCE_WEI)
    client, receipt = LedgerClient.deploy(rpc_url, keys[0], [k.address for k in keys], quorum)
    descriptor = NetworkDescriptor(
        chain_id=chain_id,
        rpc_url=rpc_url,
        contract=client.address,
        deployment_block=receipt.block_number,
        ipfs_api=ipfs_api,
        ipfs_kind="kubo",
        local=True,
        ipfs_repo=plane.repo,
        chain_kind=kind,
        ipfs_cluster=plane.cluster,
    )
    save_network(home, descriptor)
    return UpResult(descriptor, deployed=True, started=started, notes=notes)


def fund(home: Home, address: str, wei: int = _DEV_BALANCE_WEI) -> None:
    """Give a local account gas money: agents and governors need it to send transactions."""
    descriptor = load_network(home)
    if descriptor.chain_kind not in CHAIN_ENGINES:
        raise ConfigError(f"{home.network_file} names an external chain: fund {address} from one of its accounts")
    _fund(descriptor.rpc_url, descriptor.chain_kind, address, wei)


def _fund(rpc_url: str, kind: str, address: str, wei: int) -> None:
    """anvil sets the balance; geth transfers from its developer account (an ordinary transaction)."""
    if kind == "geth":
        fund_from_dev_account(rpc_url, address, wei)
    else:
        connect(rpc_url).provider.make_request("anvil_setBalance", [address, hex(wei)])  # type: ignore[arg-type]


def status(home: Home) -> dict[str, Any]:
    descriptor = load_network(home)
    anvil, geth, ipfs = AnvilService(home.root), GethService(home.root), IpfsService(home.root)
    client = LedgerClient(descriptor.rpc_url, descriptor.contract)
    try:
        block = client.block_number()
    except ChainUnavailable as exc:
        raise ChainUnavailable(f"chain RPC at {descriptor.rpc_url} does not answer: run `provanchor node up`") from exc
    client.ensure_deployed()
    ipfs_version = ipfs_daemon_version(descriptor.ipfs_api)
    return {
        "home": str(home.root),
        "chain_id": client.chain_id,
        "rpc_url": descriptor.rpc_url,
        "contract": descriptor.contract,
        "deployment_block": descriptor.deployment_block,
        "block": block,
        "governors": client.governors(),
        "quorum": client.quorum(),
        "agents": len(client.agents()),
        "proposals": client.proposal_count(),
        "ipfs_api": descriptor.ipfs_api,
        "ipfs_kind": descriptor.ipfs_kind,
        "ipfs_version": ipfs_version,
        "chain_kind": descriptor.chain_kind,
        "anvil_running": anvil.is_running(),
        "geth_running": geth.is_running(),
        "ipfs_running": ipfs.is_running() or (descriptor.ipfs_cluster is not None and _alive(descriptor.ipfs_api)),
        "ipfs_peers": _cluster_peers(home, descriptor),
        "replication": descriptor.ipfs_cluster.get("replication") if descriptor.ipfs_cluster else None,
        "dev_governor_keys": [k.address for k in load_governor_keys(home)],
    }


def _alive(api: str) -> bool:
    try:
        ipfs_daemon_version(api)
    except IpfsUnavailable:
        return False
    return True


def _cluster_peers(home: Home, descriptor: NetworkDescriptor) -> list[dict[str, object]]:
    """Each member of the network's IPFS Cluster: its id, Kubo API and state as the cluster sees it."""
    if descriptor.ipfs_cluster is None:
        return []
    from provanchor.errors import IpfsError
    from provanchor.ipfs.cluster import ClusterClient, ClusterConfig

    client = ClusterClient(ClusterConfig.from_json(descriptor.ipfs_cluster), timeout=5.0)
    try:
        known = {peer.id: peer for peer in client.peers()}
    except (IpfsUnavailable, IpfsError):
        known = {}
    rows: list[dict[str, object]] = []
    for member in LocalCluster(home.root).members():
        peer = known.get(member.peer_id or "")
        state = "down" if peer is None else peer.state
        rows.append(
            {"id": member.peer_id, "api": member.kubo_api or None, "cluster_api": member.cluster_api, "state": state}
        )
    return rows


def down(home: Home) -> list[str]:
    stopped: list[str] = []
    stopped += LocalCluster(home.root).stop()
    for service in (IpfsService(home.root), AnvilService(home.root), GethService(home.root)):
        if service.is_running():
            service.stop()
            stopped.append(type(service).__name__.removesuffix("Service").lower())
    return stopped


def multiaddr_to_url(multiaddr: str) -> str:
    """`/ip4/127.0.0.1/tcp/5001[/http]` -> `http://127.0.0.1:5001` (URLs pass through)."""
    if multiaddr.startswith(("http://", "https://")):
        return multiaddr.rstrip("/")
    parts = multiaddr.strip("/").split("/")
    try:
        host = parts[parts.index("ip4") + 1] if "ip4" in parts else parts[parts.index("dns4") + 1]
        port = parts[parts.index("tcp") + 1]
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"cannot read IPFS API address {multiaddr!r}") from exc
    scheme = "https" if "https" in parts else "http"
    return f"{scheme}://{host}:{port}"


def ipfs_daemon_version(api: str) -> str:
    url = multiaddr_to_url(api) + "/api/v0/version"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5) as response:
            return str(json.loads(response.read())["Version"])
    except (OSError, ValueError, KeyError) as exc:
        raise IpfsUnavailable(f"IPFS API at {api} does not answer: run `provanchor node up`") from exc
