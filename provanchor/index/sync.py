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

import json
from dataclasses import dataclass, field

from provanchor import merkle
from provanchor.chain.client import LedgerClient
from provanchor.errors import BlockMismatch, BlockNotFound, ProvanchorError, RecordError
from provanchor.index.store import Checkpoint, IndexedInput, IndexStore, record_id
from provanchor.ipfs.cid import CID
from provanchor.ipfs.client import IpfsClient
from provanchor.network import NetworkDescriptor
from provanchor.pipeline.manifest import decode_manifest
from provanchor.progress import ProgressFn
from provanchor.records import Eip712Domain, Record, decode_record
from provanchor.verify.checks import manifest_mismatch, record_problem
from provanchor.verify.sources import IpfsSource


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
        store.bind(network.chain_id, network.contract)

    def sync(self, progress: ProgressFn | None = None) -> SyncReport:
        """Index every checkpoint anchored since the last sync; resumable after any failure."""
        report = SyncReport()
        self.ledger.ensure_deployed()
        head = self.ledger.block_number()
        start = int(self.store.get_state("scanned_block") or self.network.deployment_block)
        events = sorted(
            self.ledger.anchor_events(None, from_block=start, to_block=head),
            key=lambda e: (int(e["blockNumber"]), int(e["logIndex"])),
        )
        for done, event in enumerate(events):
            agent = str(event["args"]["agent"]).lower()
            state = _AgentLog.from_json(self.store.get_state(f"log:{agent}"))
            index = int(event["args"]["index"])
            if index < state.next_checkpoint:
                continue  # indexed by an earlier sync
            with self.store.batch():  # a checkpoint, its records, problems and progress: all or nothing
                self._checkpoint(agent, index, event, state, report)
                self.store.set_state(f"log:{agent}", state.to_json())
            report.agents.add(agent)
            if progress is not None:
                progress("indexing checkpoints", done + 1, len(events))
        # Only now: a failure above leaves the scan to be repeated, skipping what was indexed.
        self.store.set_state("scanned_block", str(max(start, head - 64)))
        report.last_block = head
        return report

    # ------------------------------------------------------------ one checkpoint

    def _checkpoint(self, agent: str, index: int, event: object, state: _AgentLog, report: SyncReport) -> None:
        args = event["args"]  # type: ignore[index]
        size, root = int(args["size"]), bytes(args["root"])
        block = int(event["blockNumber"])  # type: ignore[index]
        tx = bytes(event["transactionHash"])  # type: ignore[index]
        manifest_cid = CID.parse(bytes(args["manifestCid"]))
        timestamp = self.ledger.checkpoint(agent, index).timestamp
        checkpoint = Checkpoint(agent, index, size, root, manifest_cid.encode(), block, tx, timestamp * 10**9)

        def problem(reason: str, seq: int | None = None, rid: str | None = None) -> None:
            self.store.add_problem(reason, agent=agent, seq=seq, record_id=rid, checkpoint=index)
            report.problems += 1

        if index != state.next_checkpoint:
            problem(f"checkpoint {index} follows checkpoint {state.next_checkpoint - 1}: a checkpoint is missing")
        if not self.ledger.agent_active_at_block(agent, block):
            problem(f"agent was not active at block {block}, where checkpoint {index} was anchored")
        try:
            manifest = decode_manifest(self.ipfs.get_block(manifest_cid))
        except (BlockNotFound, BlockMismatch, RecordError) as exc:
            problem(f"manifest {manifest_cid} unusable: {exc}")
            self.store.add_checkpoint(checkpoint)
            self._advance(state, index, size, None, None)
            return
        mismatch = manifest_mismatch(
            manifest, agent, index, size, root, state.size, self.network.chain_id, self.network.contract
        )
        if mismatch:
            problem(f"manifest {manifest_cid} {mismatch}")

        leaves: list[bytes] = []
        valid: list[Record] = []
        bad: list[tuple[int, str, str]] = []
        prev = state.last_hash
        fetched = self._fetch_all(list(manifest.records))
        for offset, (cid, signature) in enumerate(zip(manifest.records, manifest.signatures, strict=True)):
            seq = manifest.start + offset
            try:
                block_bytes = fetched[offset]
                if isinstance(block_bytes, Exception):
                    raise block_bytes
                record = decode_record(block_bytes)
            except (BlockNotFound, BlockMismatch, RecordError) as exc:
                leaves.append(merkle.leaf_hash(cid.digest))
                bad.append((seq, cid.encode(), f"record unusable: {exc}"))
                prev = cid.digest
                continue
            leaves.append(merkle.leaf_hash(record.hash))
            reason = record_problem(record, agent, seq, prev, signature, self.domain)
            prev = record.hash
            if reason is None:
                valid.append(record)
            else:
                bad.append((seq, record_id(record.hash), reason))

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
