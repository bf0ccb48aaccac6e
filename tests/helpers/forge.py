"""Publishing hand-built logs, honest or deliberately broken: for verifier tests, demos and benchmarks.

The pipeline (`AgentSession`) only ever produces honest logs. A verifier has
to be shown dishonest ones too (a record missing from the middle of a log,
two records swapped, a manifest listing a record the anchored tree does not
hold, a forged signature), and they have to be *really* anchored: a real
contract, a real IPFS daemon. `LogWriter` builds records, signs them and
anchors batches like the anchorer does, but lets the caller decide what the
manifest lists and which leaves the anchored tree holds. It also publishes
honest logs of 100,000 records in seconds for the verification benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from provanchor.chain.client import AnchorResult, LedgerClient
from provanchor.formats import merkle
from provanchor.formats.cid import CID, DAG_CBOR
from provanchor.formats.manifest import Manifest, PreviousCheckpoint, build_manifest
from provanchor.ipfs.client import IpfsClient
from provanchor.records import SCHEMA_VERSION, Change, Eip712Domain, Record, RecordSigner

__all__ = ["Entry", "LogWriter", "Staged"]


@dataclass(frozen=True)
class Entry:
    """One manifest line: a record's canonical bytes and the signature that travels with it."""

    data: bytes
    signature: bytes

    @property
    def cid(self) -> CID:
        return CID.for_block(DAG_CBOR, self.data)


@dataclass(frozen=True)
class Staged:
    """A checkpoint ready to anchor: its index, the tree after it, its manifest, its consistency proof."""

    index: int
    tree: merkle.CompactRange
    manifest: Manifest
    proof: list[bytes]


class LogWriter:
    """An agent's log written directly: records, manifests, IPFS blocks and anchors."""

    def __init__(self, ledger: LedgerClient, ipfs: IpfsClient | None, account: LocalAccount) -> None:
        self.account = account
        self.ledger = ledger.with_account(account)
        self.ipfs = ipfs
        self.agent = str(account.address).lower()
        self.chain_id = self.ledger.chain_id
        self.signer = RecordSigner(bytes(account.key), Eip712Domain(self.chain_id, self.ledger.address))
        self.tree = merkle.CompactRange()
        self.next_seq = 0
        self.prev_hash: bytes | None = None
        self.previous: PreviousCheckpoint | None = None
        self.checkpoint = 0
        self.manifests: list[Manifest] = []

    def record(self, change: Change, version: int = SCHEMA_VERSION) -> Entry:
        """The next record of the log (seq and prev chained), signed by the agent; `version` 1 writes
        the old record layout (to show that old logs still verify, index and replay)."""
        record = Record.from_change(change, self.agent, self.next_seq, self.prev_hash, version)
        self.next_seq += 1
        self.prev_hash = record.hash
        return Entry(record.canonical, self.signer.sign(record.hash))

    def stage(
        self,
        entries: Sequence[Entry],
        leaves: Sequence[bytes] | None = None,
        store: bool = True,
        extra_blocks: Sequence[tuple[CID, bytes]] = (),
        cids: Sequence[CID] | None = None,
    ) -> Staged:
        """Prepare the next checkpoint: the manifest lists `entries`, the tree gets `leaves`.

        `leaves` defaults to the entries' leaves (an honest batch). The blocks
        go to IPFS now unless `store` is False (the manifest always does).
        Nothing changes in this writer until `commit`, so a refused anchor
        leaves it where it was.
        """
        new_leaves = list(leaves) if leaves is not None else [merkle.leaf_hash(e.cid.digest) for e in entries]
        tree = merkle.CompactRange.from_state(self.tree.size, self.tree.hashes)
        proof = tree.consistency_proof_to(new_leaves) if tree.size else []
        start = tree.size
        tree.extend(new_leaves)
        manifest = build_manifest(
            self.agent,
            self.chain_id,
            self.ledger.address,
            self.checkpoint,
            start,
            tree.root(),
            list(cids) if cids is not None else [e.cid for e in entries],
            [e.signature for e in entries],
            self.previous,
        )
        if self.ipfs is not None:
            blocks = [(e.cid, e.data) for e in entries] if store else []
            self.ipfs.put_blocks([*blocks, *extra_blocks, (manifest.cid, manifest.encode())])
        return Staged(self.checkpoint, tree, manifest, proof)

    def send(self, staged: Staged) -> str:
        """Broadcast the anchor of a staged checkpoint without waiting for it."""
        tree = staged.tree
        return self.ledger.send_anchor(
            tree.size, tree.root(), staged.manifest.cid.to_bytes(), staged.proof, index=staged.index
        )

    def commit(self, staged: Staged) -> None:
        """The staged checkpoint is anchored: continue the log after it."""
        self.tree = staged.tree
        self.previous = PreviousCheckpoint(staged.index, staged.tree.size, staged.tree.root(), staged.manifest.cid)
        self.manifests.append(staged.manifest)
        self.checkpoint = staged.index + 1

    def publish(
        self,
        entries: Sequence[Entry],
        leaves: Sequence[bytes] | None = None,
        store: bool = True,
        extra_blocks: Sequence[tuple[CID, bytes]] = (),
        cids: Sequence[CID] | None = None,
    ) -> AnchorResult:
        """Stage, anchor and wait: the contract's refusal is raised (ContractError) and nothing is committed.

        `cids` names the records in the manifest differently from their own CIDs (a forgery).
        """
        staged = self.stage(entries, leaves, store, extra_blocks, cids)
        result = self.ledger.wait_anchor(self.send(staged))
        self.commit(staged)
        return result
