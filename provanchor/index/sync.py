"""Building the index from the chain and IPFS alone.

The indexer follows the ledger's `Anchored` events from the deployment block.
For each checkpoint it fetches the manifest and every record it lists from
IPFS (every block hashed against its CID), and checks, before indexing
anything as valid:

- the manifest belongs to this checkpoint (agent, index, size, root, chain,
  contract) and continues the agent's previous one (`start` = previous size);
- the agent was active at the anchoring block (the contract enforces it; the
  index checks it anyway, from the contract's own view);
- each record is the agent's, has the expected `seq` (no gap, no repeat) and
  `prev` link, and its EIP-712 signature recovers to the agent;
- the records' leaves rebuild exactly the root anchored on chain (so every
  record is included, in order).

What fails is not indexed as valid: it is listed under `index problems` with
the reason. The index is a cache: `rebuild` drops it and repeats this from
the chain and IPFS alone, giving the same answers.
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

from provanchor.chain.client import LedgerClient
from provanchor.chain.events import Anchored
from provanchor.checks.log import decode_and_check, manifest_mismatch
from provanchor.errors import BlockMismatch, BlockNotFound, ProvanchorError, RecordError
from provanchor.formats import merkle
from provanchor.formats.cid import CID, RECORD_LINK, link_problem
from provanchor.formats.manifest import decode_manifest
from provanchor.index.store import Checkpoint, IndexedInput, IndexStore, record_id
from provanchor.ipfs.client import IpfsClient
from provanchor.ipfs.sources import IpfsSource
from provanchor.network import NetworkDescriptor
from provanchor.progress import ProgressFn
from provanchor.records import Eip712Domain, Record


@dataclass
class SyncReport:
    checkpoints: int = 0
    records: int = 0
    problems: int = 0
    last_block: int = 0
    agents: set[str] = field(default_factory=set)


@dataclass
class _AgentLog:
    """What the index knows of one agent's log: where the next checkpoint must continue."""

    next_checkpoint: int = 0
    size: int = 0
    frontier: list[bytes] = field(default_factory=list)
    last_hash: bytes | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "next": self.next_checkpoint,
                "size": self.size,
                "frontier": [h.hex() for h in self.frontier],
                "last": self.last_hash.hex() if self.last_hash else None,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> _AgentLog:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            int(data["next"]),
            int(data["size"]),
            [bytes.fromhex(h) for h in data["frontier"]],
            bytes.fromhex(data["last"]) if data["last"] else None,
        )


class _RecordChecker:
    """Strict decoding and signature checks of a checkpoint's records, in worker processes when it pays.

    They are nearly all of a sync's CPU (about 0.1 ms a record); the workers
    are forked once per sync, with the parent's heap frozen so that their
    collections never copy it page by page.
    """

    def __init__(self, chain_id: int, contract: str, workers: int | None = None) -> None:
        self.chain_id = chain_id
        self.contract = contract
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    def check(
        self, items: list[tuple[int, bytes | str, bytes, bytes | None]], agent: str
    ) -> list[tuple[int, Record | None, str | None]]:
        if len(items) < _PARALLEL_FROM or self.workers <= 1:
            return decode_and_check(items, agent, self.chain_id, self.contract)
        if self._pool is None:
            gc.freeze()
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("fork"))
        size = -(-len(items) // self.workers)
        futures = [
            self._pool.submit(decode_and_check, items[i : i + size], agent, self.chain_id, self.contract)
            for i in range(0, len(items), size)
        ]
        return [row for future in futures for row in future.result()]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
            gc.unfreeze()


_PARALLEL_FROM = 256

# Checkpoints read per round: their manifests in one pipelined read, then all their records in another,
# and indexed in one transaction (each commit rewrites every index page it touched).
_CHECKPOINTS_PER_ROUND = 16


class Indexer:
    def __init__(
        self,
        store: IndexStore,
        network: NetworkDescriptor,
        ledger: LedgerClient | None = None,
        ipfs: IpfsClient | None = None,
    ) -> None:
        self.store = store
        self.network = network
        self.ledger = ledger or LedgerClient(network.rpc_url, network.contract)
        self.ipfs = ipfs or IpfsClient(network.ipfs_api)
        self.domain = Eip712Domain(network.chain_id, network.contract)
        self._blocks = IpfsSource(self.ipfs.addr, block_timeout=self.ipfs.block_timeout)
        self._checker = _RecordChecker(network.chain_id, network.contract)
        store.bind(network.chain_id, network.contract)

    def sync(self, progress: ProgressFn | None = None) -> SyncReport:
        """Index every checkpoint anchored since the last sync; resumable after any failure."""
        report = SyncReport()
        self.ledger.ensure_deployed()
        head = self.ledger.block_number()
        start = int(self.store.get_state("scanned_block") or self.network.deployment_block)
        events = sorted(
            self.ledger.anchor_events(None, from_block=start, to_block=head),
            key=lambda e: (e.mined.block, e.mined.log_index),
        )
        # A first sync (or a rebuild) fills an empty index: build its query indexes once at the end.
        loading = self.store.bulk_load() if self.store.record_count() == 0 else contextlib.nullcontext()
        rounds = [events[i : i + _CHECKPOINTS_PER_ROUND] for i in range(0, len(events), _CHECKPOINTS_PER_ROUND)]
        # The next round's blocks are fetched (waiting on IPFS) while this round's are checked (in workers).
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-prefetch")
        ahead = reader.submit(self._prefetch, rounds[0]) if rounds else None
        try:
            with loading:
                for number, chunk in enumerate(rounds):
                    first = number * _CHECKPOINTS_PER_ROUND
                    assert ahead is not None
                    fetched = ahead.result()
                    if number + 1 < len(rounds):
                        ahead = reader.submit(self._prefetch, rounds[number + 1])
                    # Checkpoints, their records, problems and progress: all or nothing, a round at a time.
                    with self.store.batch():
                        for event in chunk:
                            agent = event.agent
                            state = _AgentLog.from_json(self.store.get_state(f"log:{agent}"))
                            index = event.index
                            if index >= state.next_checkpoint:  # else indexed by an earlier sync
                                self._checkpoint(agent, index, event, state, report, fetched)
                                self.store.set_state(f"log:{agent}", state.to_json())
                                report.agents.add(agent)
                    if progress is not None:
                        progress("indexing checkpoints", first + len(chunk), len(events))
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
            self._checker.close()
        # Only now: a failure above leaves the scan to be repeated, skipping what was indexed.
        self.store.set_state("scanned_block", str(max(start, head - 64)))
        report.last_block = head
        return report

    # ------------------------------------------------------------ one checkpoint

    def _prefetch(self, events: list[Anchored]) -> dict[CID, bytes | Exception]:
        """A round's manifests, then all their records: two pipelined reads for many checkpoints."""
        manifests = []
        for event in events:
            cid = event.manifest
            if cid is not None and link_problem(cid, RECORD_LINK, "manifest") is None:
                manifests.append(cid)
        found: dict[CID, bytes | Exception] = dict(zip(manifests, self._fetch_all(manifests), strict=True))
        records: list[CID] = []
        for cid in manifests:
            data = found[cid]
            if isinstance(data, bytes):
                with contextlib.suppress(RecordError):
                    records.extend(decode_manifest(data).records)
        wanted = list(dict.fromkeys(c for c in records if c not in found))
        found.update(zip(wanted, self._fetch_all(wanted), strict=True))
        return found

    def _checkpoint(
        self,
        agent: str,
        index: int,
        event: Anchored,
        state: _AgentLog,
        report: SyncReport,
        fetched: dict[CID, bytes | Exception],
    ) -> None:
        size, root = event.size, event.root
        block, tx = event.mined.block, event.mined.tx
        manifest_cid = event.manifest
        if manifest_cid is None:
            wrong: str | None = "the chain's manifest CID does not parse"
        else:
            wrong = link_problem(manifest_cid, RECORD_LINK, "the chain's manifest CID")
        timestamp = self.ledger.checkpoint(agent, index).timestamp
        shown = manifest_cid.encode() if manifest_cid is not None else event.manifest_cid.hex()
        checkpoint = Checkpoint(agent, index, size, root, shown, block, tx, timestamp * 10**9)

        def problem(reason: str, seq: int | None = None, rid: str | None = None) -> None:
            self.store.add_problem(reason, agent=agent, seq=seq, record_id=rid, checkpoint=index)
            report.problems += 1

        if index != state.next_checkpoint:
            problem(f"checkpoint {index} follows checkpoint {state.next_checkpoint - 1}: a checkpoint is missing")
        if not self.ledger.agent_active_at_block(agent, block):
            problem(f"agent was not active at block {block}, where checkpoint {index} was anchored")
        try:
            if manifest_cid is None or wrong is not None:
                raise RecordError(wrong or "no manifest CID")
            manifest_bytes = fetched.get(manifest_cid) or self.ipfs.get_block(manifest_cid)
            if isinstance(manifest_bytes, Exception):
                raise manifest_bytes
            manifest = decode_manifest(manifest_bytes)
        except (BlockNotFound, BlockMismatch, RecordError) as exc:
            problem(f"manifest {shown} unusable: {exc}")
            self.store.add_checkpoint(checkpoint)
            self._advance(state, index, size, None, None)
            return
        mismatch = manifest_mismatch(
            manifest, agent, index, size, root, state.size, self.network.chain_id, self.network.contract
        )
        if mismatch:
            problem(f"manifest {manifest_cid} {mismatch}")

        missing = [cid for cid in manifest.records if cid not in fetched]
        if missing:
            fetched = {**fetched, **dict(zip(missing, self._fetch_all(missing), strict=True))}
        # A block verified against its CID has the CID's digest as its record hash, so each record's
        # expected `prev` is known from the manifest alone: the records can be checked in parallel.
        items: list[tuple[int, bytes | str, bytes, bytes | None]] = []
        prev = state.last_hash
        for offset, (cid, signature) in enumerate(zip(manifest.records, manifest.signatures, strict=True)):
            data = fetched[cid]
            items.append((manifest.start + offset, data if isinstance(data, bytes) else str(data), signature, prev))
            prev = cid.digest
        leaves = [merkle.leaf_hash(cid.digest) for cid in manifest.records]
        valid: list[Record] = []
        bad: list[tuple[int, str, str]] = []
        for (seq, record, reason), cid in zip(self._checker.check(items, agent), manifest.records, strict=True):
            if record is not None:
                valid.append(record)
            else:
                bad.append((seq, cid.encode(), reason or "record unusable"))

        # An earlier unusable checkpoint leaves no frontier: inclusion can no longer be rebuilt.
        known_tree = not mismatch and (state.size == 0 or bool(state.frontier))
        log = merkle.CompactRange.from_state(state.size, state.frontier) if known_tree else None
        if log is not None:
            log.extend(leaves)
        included = log is not None and log.size == size and log.root() == root
        if not included:
            reason = (
                "not included in the anchored root (the manifest's records do not rebuild it)"
                if known_tree
                else "inclusion cannot be checked: an earlier checkpoint of this agent was unusable"
            )
            for record in valid:
                problem(reason, record.seq, record_id(record.hash))
            valid = []
        for seq, rid, reason in bad:
            problem(reason, seq, rid)
        self.store.add_checkpoint(checkpoint)
        report.records += self.store.add_records(IndexedInput(record, checkpoint) for record in valid)
        report.checkpoints += 1
        self._advance(state, index, size, log.hashes if included and log is not None else None, prev)

    def _fetch_all(self, cids: list[CID]) -> list[bytes | Exception]:
        """Fetch a checkpoint's record blocks several at a time (each still checked against its CID).

        Unusable blocks come back as their exception, to be reported per record; an
        unreachable daemon is raised, so the sync stops and resumes later.
        """
        return self._blocks.get_many(cids)

    def _advance(
        self, state: _AgentLog, index: int, size: int, frontier: list[bytes] | None, last: bytes | None
    ) -> None:
        """Continue from the anchored size: the chain's tree is canonical even when records are not."""
        state.next_checkpoint = index + 1
        state.size = size
        state.frontier = frontier or []
        state.last_hash = last


def rebuild(store: IndexStore, network: NetworkDescriptor) -> SyncReport:
    store.clear()
    return Indexer(store, network).sync()


__all__ = ["Indexer", "ProvanchorError", "SyncReport", "rebuild"]
