"""From spooled records to anchored checkpoints, idempotently.

Each batch moves through states persisted in the spool, one transaction per
step, so a crash anywhere resumes where it stopped:

1. **cut**: the next unbatched records (in `seq` order) are appended to the
   agent's Merkle log (a compact range persisted with the batch); the root,
   the consistency proof from the previous checkpoint and the manifest are
   fixed. Cutting is deterministic and atomic: a crash before the commit
   leaves nothing, after it leaves the batch.
2. **stored**: the records, their pending contents and the manifest go to
   IPFS in one CAR import and the manifest is pinned. Re-storing is harmless.
3. **sent**: the anchor transaction for checkpoint index `batch - 1` is signed
   and saved *before* it is broadcast. The contract refuses a second anchor
   of the same index (`CheckpointExists`), so a re-broadcast or a rebuilt
   transaction can never anchor a batch twice.
4. **anchored**: the receipt is seen (or, after a crash, the chain already
   holds this checkpoint with this root).

IPFS or chain outages leave batches in their state; recording continues,
and the next attempt picks up from there.

Many processes may record into one spool (the service, `record`, `run`,
`snapshot take`, the ML tracker), but only one at a time moves batches: every
step runs under the spool's anchoring lock (`anchor.lock` beside it, an flock
that a killed holder releases). The background loop skips a round while
another process holds it; `flush` waits for it. Should the chain ever hold a
checkpoint this spool was about to send, with the same root, the batch is
adopted as anchored rather than reported as `CheckpointExists`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provanchor.errors import (
    ChainUnavailable,
    ConfigError,
    ContractError,
    IpfsUnavailable,
    LockBusy,
    ProvanchorError,
)
from provanchor.formats import merkle
from provanchor.formats.cid import CID, DAG_CBOR, RAW
from provanchor.ipfs.client import IpfsClient, IpfsError
from provanchor.ipfs.cluster import ClusterClient

if TYPE_CHECKING:
    from provanchor.chain.client import LedgerClient
from provanchor.formats.manifest import PreviousCheckpoint, build_manifest
from provanchor.pipeline import faults
from provanchor.pipeline.locks import ProcessLock, busy_message
from provanchor.pipeline.spool import Batch, Spool

# The limit pipelined anchors carry without estimating (see _gas_limit). An anchor costs 150-250k gas
# depending on the engine's fork (geth 1.17's dev chain: 250k for an agent's first checkpoint; anvil
# less): the limit only caps, unused gas is not charged, so it is generous.
_GAS_BASE = 400_000
_GAS_PER_PROOF_HASH = 5_000


@dataclass(frozen=True)
class AnchorStatus:
    size: int
    root: bytes
    tx: str | None
    checkpoint: int
    block: int | None
    anchored_batches: int


def anchor_status(spool: Spool) -> AnchorStatus | None:
    """The latest checkpoint this spool saw anchored (None before the first)."""
    anchored = spool.batches(["anchored"])
    if not anchored:
        return None
    last = anchored[-1]
    return AnchorStatus(last.size, last.root, last.tx_hash, last.checkpoint_index, last.block, len(anchored))


def anchor_lock_path(spool: Spool) -> Path:
    """The lock every process takes to move this spool's batches (beside the spool)."""
    return spool.path.parent / "anchor.lock"


def _gas_limit(batch: Batch) -> int:
    """A safe upper bound without estimating (estimates need the previous anchor mined)."""
    return _GAS_BASE + _GAS_PER_PROOF_HASH * len(batch.proof)


class Anchorer:
    """Cuts, stores and anchors the batches of one agent's spool."""

    def __init__(
        self,
        spool: Spool,
        ledger: LedgerClient,
        ipfs: IpfsClient,
        batch_size: int = 1024,
        on_anchored: Callable[[Batch], None] | None = None,
        store_workers: int = 3,
        cluster: ClusterClient | None = None,
    ) -> None:
        """`cluster`: pin every batch through IPFS Cluster too, and anchor it only once replicated."""
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        self.spool = spool
        self.ledger = ledger
        self.ipfs = ipfs
        self.cluster = cluster
        self.batch_size = batch_size
        self.agent = ledger.transactor.address
        self.chain_id = ledger.chain_id
        self._lock = threading.Lock()
        self._process_lock = ProcessLock(anchor_lock_path(spool))
        self._on_anchored = on_anchored
        # IPFS stores of different batches are independent: a few run at once (the daemon
        # overlaps their I/O); anchoring stays strictly in order.
        self._store_pool = ThreadPoolExecutor(max_workers=max(1, store_workers), thread_name_prefix="ipfs-store")
        self._clients = threading.local()
        self._node_id: str | None = None
        # Cumulative seconds per step and counts: where anchoring time goes (benchmarks, metrics).
        self.metrics: dict[str, float] = {
            "cut_seconds": 0.0,
            "store_seconds": 0.0,
            "anchor_seconds": 0.0,
            "batches_cut": 0,
            "batches_stored": 0,
            "batches_anchored": 0,
        }

    # ------------------------------------------------------------ the steps

    def cut(self, limit: int | None = None) -> Batch | None:
        """Fix the next batch from unbatched records (None if there are none).

        Everything is read and written inside one write transaction, so two
        processes sharing a spool (the agent service and `provanchor run`)
        can never cut overlapping batches.
        """
        started = time.perf_counter()
        with self.spool.transaction() as db:
            records = self.spool.unbatched(limit or self.batch_size)
            if not records:
                return None
            size, frontier = self.spool.log_state()
            if records[0].seq != size:
                raise ConfigError(f"spool corrupt: next unbatched record is seq {records[0].seq}, log size {size}")
            log = merkle.CompactRange.from_state(size, frontier)
            leaves = [merkle.leaf_hash(r.hash) for r in records]
            proof = log.consistency_proof_to(leaves) if size else []
            log.extend(leaves)
            root = log.root()
            previous_batch = self.spool.last_batch()
            batch_id = 1 if previous_batch is None else previous_batch.id + 1
            previous = None
            if previous_batch is not None:
                previous = PreviousCheckpoint(
                    previous_batch.checkpoint_index,
                    previous_batch.size,
                    previous_batch.root,
                    CID.parse(previous_batch.manifest_cid),
                )
            manifest = build_manifest(
                agent=self.agent,
                chain_id=self.chain_id,
                contract=self.ledger.address,
                checkpoint=batch_id - 1,
                start=size,
                root=root,
                records=[CID(1, DAG_CBOR, r.hash) for r in records],  # the record hash is its CID's digest
                signatures=[r.signature for r in records],
                previous=previous,
            )
            self.spool.insert_batch(
                db,
                batch_id,
                size,
                log.size,
                root,
                proof,
                manifest.cid.encode(),
                manifest.encode(),
                time.time_ns(),
                log.hashes,
            )
        batch = self.spool.batch(batch_id)
        assert batch is not None
        self.metrics["cut_seconds"] += time.perf_counter() - started
        self.metrics["batches_cut"] += 1
        return batch

    def store_all(self) -> int:
        """Store every cut batch, several at once; returns how many were stored."""
        pending = self.spool.batches(["cut"])
        if len(pending) <= 1:
            for batch in pending:
                self.store(batch)
            return len(pending)
        futures = [self._store_pool.submit(self.store, batch) for batch in pending]
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return len(pending)

    def _client(self) -> IpfsClient:
        """The IPFS client for this thread: pool workers each keep their own connection."""
        if not threading.current_thread().name.startswith("ipfs-store"):
            return self.ipfs
        client: IpfsClient | None = getattr(self._clients, "client", None)
        if client is None:
            client = IpfsClient(self.ipfs.addr, repo=self.ipfs.repo)
            self._clients.client = client
        return client

    def close(self) -> None:
        self._store_pool.shutdown(wait=True)

    def store(self, batch: Batch) -> None:
        """Put the batch's records, manifest and pending contents on IPFS in one request."""
        started = time.perf_counter()
        ipfs = self._client()
        blocks: list[tuple[CID, bytes]] = [
            (CID(1, DAG_CBOR, r.hash), r.data) for r in self.spool.records_of_batch(batch)
        ]
        manifest_cid = CID.parse(batch.manifest_cid)
        blocks.append((manifest_cid, batch.manifest))
        contents = self.spool.pending_contents()
        for cid_text, data in contents:
            cid = CID.parse(cid_text)
            if cid.codec == RAW:  # single-block contents travel in the same CAR
                blocks.append((cid, data))
            else:  # multi-block files go first, so nothing the batch links to is ever missing
                ipfs.add_bytes(data)
        # One import that pins the manifest recursively: every block it links to is in this CAR or
        # already stored (a record only names content that is stored), so the walk stays inside
        # the batch. Should a link ever be missing, the walk would stall: then the blocks are
        # pinned one by one instead, which never walks.
        roots = [manifest_cid, *(cid for cid, _ in blocks if cid.codec == RAW)]
        try:
            ipfs.put_blocks(blocks, pin_roots=roots)
        except IpfsError:
            ipfs.put_blocks(blocks, pin_roots=[])
            ipfs.pin_direct([cid for cid, _ in blocks])
        ipfs.persist()  # durable before the anchor names them (see IpfsClient.persist)
        if self.cluster is not None:
            # Replicated before the anchor names them: a host lost after anchoring loses no only copy.
            # One recursive pin of the manifest covers the batch's records and their contents (a
            # manifest names the previous one by CID string, not by link: the walk stays in the
            # batch), allocated first to the member beside the node that already holds them.
            prefer = self.cluster.peer_fronting(self._writer_node(ipfs))
            self.cluster.replicate([(manifest_cid, False)], name=f"batch {batch.id}", prefer=prefer)
        faults.crash_point("after-ipfs-write")
        with self.spool.transaction() as db:
            db.execute("UPDATE batches SET state = 'stored' WHERE id = ? AND state = 'cut'", (batch.id,))
            db.executemany("DELETE FROM contents WHERE cid = ?", [(c,) for c, _ in contents])
        self.metrics["store_seconds"] += time.perf_counter() - started
        self.metrics["batches_stored"] += 1

    def _writer_node(self, ipfs: IpfsClient) -> str:
        """The peer id of the Kubo node this anchorer writes to (asked once)."""
        if self._node_id is None:
            self._node_id = ipfs.peer_id()
        return self._node_id

    def send(self, batch: Batch, preflight: bool) -> str | None:
        """Sign, persist, then broadcast the anchor transaction; returns its hash.

        None when the chain already held this checkpoint with this root (the
        batch is then adopted as anchored, nothing is sent).
        """
        started = time.perf_counter()
        data = self._call_data(batch)
        transactor = self.ledger.transactor
        gas = None if preflight else _gas_limit(batch)
        try:
            signed = transactor.sign(self.ledger.address, data, gas=gas)
        except ContractError as exc:  # the gas estimate ran the call: the chain refused it already
            if exc.name == "CheckpointExists" and self._chain_has(batch):
                self._adopt(batch)
                return None
            raise
        self.spool.mark_sent(batch.id, signed.tx_hash, signed.raw)
        in_flight = transactor.broadcast(signed)
        if in_flight.tx_hash != signed.tx_hash:
            self.spool.mark_sent(batch.id, in_flight.tx_hash, in_flight.raw)
        faults.crash_point("after-send")
        self.metrics["anchor_seconds"] += time.perf_counter() - started
        return in_flight.tx_hash

    def confirm(self, batch: Batch, timeout: float = 120.0) -> Batch:
        """Wait for the batch's anchor to be mined; reconcile with the chain after crashes."""
        assert batch.tx_hash is not None
        started = time.perf_counter()
        try:
            receipt = self.ledger.transactor.wait(batch.tx_hash, timeout=timeout)
        except ContractError as exc:
            if exc.name == "CheckpointExists" and self._chain_has(batch):
                return self._adopt(batch)
            self._unsend(batch)
            raise
        faults.crash_point("after-receipt")
        self.metrics["anchor_seconds"] += time.perf_counter() - started
        return self._mark_anchored(batch, receipt.tx_hash, receipt.block_number, receipt.gas_used)

    # ------------------------------------------------------------ orchestration

    def recover(self) -> None:
        """After a restart: settle batches whose transaction was sent before the crash."""
        for batch in self.spool.batches(["sent"]):
            if self._chain_has(batch):
                tx, block = self._find_anchor_tx(batch)
                self._mark_anchored(batch, tx, block, None)
                continue
            assert batch.tx_hash is not None and batch.raw_tx is not None
            receipt = self.ledger.transactor.receipt(batch.tx_hash)
            if receipt is None:
                self._rebroadcast(batch)
            else:
                # Mined but the chain has no such checkpoint: it reverted (for example it was
                # sent behind a batch that failed). Send it again, in order, next time.
                self._unsend(batch)

    @contextlib.contextmanager
    def _exclusive(self, timeout: float | None) -> Iterator[bool]:
        """Hold this process's and the spool's anchoring lock; yields False if it stayed busy past `timeout`."""
        with self._lock:
            if not self._process_lock.acquire(timeout):
                yield False
                return
            try:
                if self._process_lock.last_holder not in (None, os.getpid()):
                    self.ledger.transactor.forget_nonce()  # it may have sent from this key meanwhile
                yield True
            finally:
                self._process_lock.release()

    @contextlib.contextmanager
    def exclusive(self, timeout: float | None = 120.0) -> Iterator[None]:
        """Be the only process moving this spool's batches or sending from its key, for a block.

        Inside, call `flush_held()` rather than `flush()`. `LockBusy` names the
        holder when it stays busy past `timeout`.
        """
        with self._exclusive(timeout) as acquired:
            if not acquired:
                raise LockBusy(
                    busy_message(f"anchoring of spool {self.spool.path}", self._process_lock.holder(), timeout)
                )
            yield

    def flush(self, timeout: float = 120.0) -> AnchorStatus | None:
        """Anchor everything spooled now; returns the latest anchored checkpoint.

        Another process anchoring the same spool is waited for (up to
        `timeout`), then whatever it left is finished here.
        """
        with self.exclusive(timeout):
            return self.flush_held(timeout)

    def flush_held(self, timeout: float = 120.0) -> AnchorStatus | None:
        """`flush` for a caller already inside `exclusive()`."""
        self.recover()
        while self.spool.count_unbatched():
            self.cut()
        self.store_all()
        first = True
        for batch in self.spool.batches(["stored"]):
            if self.send(batch, preflight=first) is not None:
                first = False
        for batch in self.spool.batches(["sent"]):
            self.confirm(batch, timeout=timeout)
        return self.status()

    def step(self, max_age_ns: int) -> bool:
        """One round of background work: cut a due batch, advance pending ones. True if it did anything.

        A round is skipped while another process anchors this spool.
        """
        with self._exclusive(0.0) as acquired:
            if not acquired:
                return False
            did = False
            unbatched = self.spool.count_unbatched()
            oldest = self.spool.oldest_unbatched_ns()
            due = unbatched >= self.batch_size or (oldest is not None and time.time_ns() - oldest >= max_age_ns)
            while due and self.spool.count_unbatched():
                self.cut()
                did = True
                due = self.spool.count_unbatched() >= self.batch_size
            if self.store_all():
                did = True
            first = True
            for batch in self.spool.batches(["stored"]):
                if self.send(batch, preflight=first) is not None:
                    first = False
                did = True
            for batch in self.spool.batches(["sent"]):
                self.confirm(batch)
                did = True
            return did

    def run(
        self, stop: threading.Event, interval: float = 1.0, on_error: Callable[[Exception], None] | None = None
    ) -> None:
        """Background loop: batches are cut by size or age; outages back off and retry."""
        max_age_ns = int(interval * 1e9)
        backoff = 0.0
        with self._exclusive(0.0) as acquired, contextlib.suppress(ChainUnavailable, IpfsUnavailable):
            if acquired:
                self.recover()
        while not stop.is_set():
            try:
                did = self.step(max_age_ns)
                backoff = 0.0
                if not did:
                    stop.wait(min(0.05, interval / 4))
            except (ChainUnavailable, IpfsUnavailable, ProvanchorError) as exc:
                if on_error is not None:
                    on_error(exc)
                backoff = min(max(backoff * 2, 0.2), 5.0)
                stop.wait(backoff)

    def status(self) -> AnchorStatus | None:
        return anchor_status(self.spool)

    # ------------------------------------------------------------ helpers

    def _chain_has(self, batch: Batch) -> bool:
        try:
            checkpoint = self.ledger.checkpoint(self.agent, batch.checkpoint_index)
        except ContractError as exc:
            if exc.name == "UnknownCheckpoint":
                return False
            raise
        if checkpoint.root != batch.root or checkpoint.size != batch.size:
            raise ConfigError(
                f"the chain holds checkpoint {batch.checkpoint_index} of {self.agent} with a different root than "
                f"this spool: the spool does not belong to this log"
            )
        return True

    def _find_anchor_tx(self, batch: Batch) -> tuple[str | None, int | None]:
        for event in self.ledger.anchor_events(self.agent, from_block=0):
            if event.index == batch.checkpoint_index:
                return event.mined.tx_hex, event.mined.block
        return batch.tx_hash, None

    def _rebroadcast(self, batch: Batch) -> None:
        from provanchor.chain.transactor import SignedTx

        assert batch.tx_hash is not None and batch.raw_tx is not None
        saved = SignedTx(
            batch.tx_hash, batch.raw_tx, -1, self.ledger.address, self._call_data(batch), _gas_limit(batch)
        )
        in_flight = self.ledger.transactor.broadcast(saved)
        if in_flight.tx_hash != batch.tx_hash:
            self.spool.mark_sent(batch.id, in_flight.tx_hash, in_flight.raw)

    def _call_data(self, batch: Batch) -> str:
        """The `anchor` call for a batch: always rebuilt from the spool, so retries are identical."""
        return self.ledger.encode(
            "anchor",
            batch.checkpoint_index,
            batch.size,
            batch.root,
            CID.parse(batch.manifest_cid).to_bytes(),
            batch.proof,
        )

    def _unsend(self, batch: Batch) -> None:
        """The transaction reverted: the batch goes back to `stored` to be sent again later."""
        with self.spool.transaction() as db:
            db.execute("UPDATE batches SET state = 'stored', tx_hash = NULL, raw_tx = NULL WHERE id = ?", (batch.id,))

    def _adopt(self, batch: Batch) -> Batch:
        """The chain already holds this batch's checkpoint with this root: take it as anchored."""
        tx, block = self._find_anchor_tx(batch)
        return self._mark_anchored(batch, tx, block, None)

    def _mark_anchored(self, batch: Batch, tx: str | None, block: int | None, gas_used: int | None) -> Batch:
        self.spool.mark_anchored(batch.id, tx, block, gas_used, time.time_ns())
        self.metrics["batches_anchored"] += 1
        updated = self.spool.batch(batch.id)
        assert updated is not None
        if self._on_anchored is not None:
            self._on_anchored(updated)
        return updated
