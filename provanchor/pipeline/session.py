"""One agent recording on one network: the spool, the recorder and the anchorer, wired.

This is the library entry point for recording:

    with AgentSession.open(Home.resolve(), password="...") as session:
        session.start()                     # background batching and anchoring
        ref = session.record(change)        # durable when it returns
        session.flush()                     # or wait for the next batch

The CLI's `record`, `anchor` and the agent service all go through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provanchor.errors import ChainUnavailable, ConfigError, ContractError, LockBusy
from provanchor.home import Home
from provanchor.identity import AgentIdentity, UnlockedKey, load_identity, read_password, unlock_key
from provanchor.network import NetworkDescriptor, load_network
from provanchor.pipeline.anchorer import Anchorer, AnchorStatus, anchor_status
from provanchor.pipeline.locks import ProcessLock
from provanchor.pipeline.recorder import Recorder, RecordRef
from provanchor.pipeline.spool import Spool
from provanchor.records import Change, Eip712Domain, RecordSigner

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


def spool_path(home: Home, address: str) -> Path:
    return home.root / "agents" / address.lower() / "spool.sqlite"


def open_spool_readonly(home: Home, address: str) -> Spool | None:
    """The agent's spool for reading only (None when it has none yet): status views never write it."""
    path = spool_path(home, address)
    if not path.exists():
        return None
    return Spool(path, readonly=True)


def service_locks(home: Home, keystore: Path) -> list[ProcessLock]:
    """Take the locks that make one capture service per data directory and per key, or raise.

    Two services on one home would race on its status file and snapshots;
    two on one key (from two homes) would write two logs for one agent, which
    the chain refuses at the second anchor. Both locks are flocks: a killed
    service leaves nothing to clean up.
    """
    taken: list[ProcessLock] = []
    wanted = [
        (ProcessLock(home.run_dir / "agent-service.lock"), f"data directory {home.root}"),
        (ProcessLock(keystore, record_pid=False), f"keystore {keystore}"),
    ]
    for lock, what in wanted:
        if not lock.acquire(0.0):
            for held in taken:
                held.release()
            pid = lock.holder()
            who = f"pid {pid}" if pid is not None else "another process"
            stop = f"; stop it first (kill -TERM {pid})" if pid is not None else ""
            raise LockBusy(f"an agent service already runs for {what} ({who}){stop}")
        taken.append(lock)
    return taken


@dataclass(frozen=True)
class AnchorReport:
    """What `provanchor anchor` shows: the latest checkpoint and what waits in the spool."""

    agent: str
    status: AnchorStatus | None
    records: int
    pending: int
    newly_anchored: int


def anchor_spool(
    home: Home,
    flush: bool,
    timeout: float = 120.0,
    password: str | None = None,
    password_file: str | None = None,
) -> AnchorReport:
    """Anchor everything spooled (`flush`), or only report, reading the spool read-only and needing no key."""
    if flush:
        with AgentSession.open(home, password=password, password_file=password_file) as session:
            before = session.spool.stats()
            status = session.flush(timeout=timeout)
            after = session.spool.stats()
            address = session.address
    else:
        address = load_identity(home).address
        spool = open_spool_readonly(home, address)
        if spool is None:
            return AnchorReport(address, None, 0, 0, 0)
        try:
            before = after = spool.stats()
            status = anchor_status(spool)
        finally:
            spool.close()
    pending = after["records"] - after["anchored_size"]
    return AnchorReport(address, status, after["records"], pending, after["anchored_size"] - before["anchored_size"])


class AgentSession:
    def __init__(
        self,
        home: Home,
        network: NetworkDescriptor,
        identity: AgentIdentity,
        account: LocalAccount | UnlockedKey,
        batch_size: int = 1024,
        interval: float = 1.0,
    ) -> None:
        self.home = home
        self.network = network
        self.identity = identity
        self.account = account
        self.batch_size = batch_size
        self.interval = interval
        self.domain = Eip712Domain(network.chain_id, network.contract)
        self.spool = Spool(spool_path(home, account.address))
        self.spool.bind(account.address, network.chain_id, network.contract)
        self.signer = RecordSigner(bytes(account.key), self.domain)
        self.recorder = Recorder(self.spool, self.signer)
        self._anchorer: Anchorer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: Exception | None = None

    @classmethod
    def open(
        cls,
        home: Home,
        password: str | None = None,
        password_file: str | None = None,
        batch_size: int = 1024,
        interval: float = 1.0,
        identity: AgentIdentity | None = None,
    ) -> AgentSession:
        network = load_network(home)
        identity = identity or load_identity(home)
        secret = password if password is not None else read_password(password_file)
        account = unlock_key(identity.keystore_path, secret)
        return cls(home, network, identity, account, batch_size=batch_size, interval=interval)

    # ------------------------------------------------------------ recording

    @property
    def address(self) -> str:
        return str(self.account.address)

    def record(self, change: Change, content: bytes | None = None) -> RecordRef:
        return self.recorder.record(change, content)

    def approval_warning(self) -> str | None:
        """One line when the ledger would refuse this agent's anchors (never approved, or revoked).

        Recording never depends on the chain: if it does not answer, there is
        nothing to say (None), and the records wait in the spool as always.
        """
        from provanchor.chain.client import LedgerClient

        try:  # a read-only client: asking needs no key (and no eth_account import)
            info = LedgerClient(self.network.rpc_url, self.network.contract).agent_info(self.address)
        except (ChainUnavailable, ContractError, ConfigError):
            return None
        if info.registered and info.active:
            return None
        if not info.registered:
            return (
                f"agent {self.address} is not approved on this ledger: its records stay in the spool until a "
                f"governor runs `provanchor gov propose add-agent {self.address} --name {self.identity.name}`"
            )
        return f"agent {self.address} was revoked: its records stay in the spool and can never be anchored"

    # ------------------------------------------------------------ anchoring

    @property
    def anchorer(self) -> Anchorer:
        if self._anchorer is None:
            from provanchor.chain.client import LedgerClient  # web3: imported only by what talks to the chain
            from provanchor.ipfs.client import IpfsClient

            account = self.account.local_account() if isinstance(self.account, UnlockedKey) else self.account
            ledger = LedgerClient(self.network.rpc_url, self.network.contract, account)
            ipfs = IpfsClient(self.network.ipfs_api, repo=self.network.ipfs_repo)
            cluster = None
            if self.network.ipfs_cluster is not None:
                from provanchor.ipfs.cluster import ClusterClient, ClusterConfig

                cluster = ClusterClient(ClusterConfig.from_json(self.network.ipfs_cluster))
            self._anchorer = Anchorer(self.spool, ledger, ipfs, self.batch_size, cluster=cluster)
        return self._anchorer

    def flush(self, timeout: float = 120.0) -> AnchorStatus | None:
        return self.anchorer.flush(timeout=timeout)

    def start(self, on_error: Callable[[Exception], None] | None = None) -> None:
        """Anchor in the background: batches by size or every `interval` seconds."""
        if self._thread is not None:
            return

        def remember(exc: Exception) -> None:
            self.last_error = exc
            if on_error is not None:
                on_error(exc)

        anchorer = self.anchorer
        self._thread = threading.Thread(
            target=anchorer.run, args=(self._stop, self.interval, remember), name="provanchor-anchorer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def submit(self, change: Change, content: bytes | None = None) -> Future[RecordRef]:
        """Queue a change without waiting: the future resolves once it is durably spooled.

        Producers that keep many changes in flight share each fsync (group commit).
        """
        return self.recorder.submit(change, content)

    def close(self) -> None:
        self.stop()
        if self._anchorer is not None:
            self._anchorer.close()
        self.recorder.close()
        self.spool.close()

    def __enter__(self) -> AgentSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
