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

from provanchor import merkle
from provanchor.chain.client import AnchorResult, LedgerClient
from provanchor.ipfs.cid import CID, DAG_CBOR
from provanchor.ipfs.client import IpfsClient
from provanchor.pipeline.manifest import Manifest, PreviousCheckpoint, build_manifest
from provanchor.records import Change, Eip712Domain, Record, RecordSigner

__all__ = ["Entry", "LogWriter"]


@dataclass(frozen=True)
class Entry:
    """One manifest line: a record's canonical bytes and the signature that travels with it."""

    data: bytes
    signature: bytes

    @property
    def cid(self) -> CID:
        return CID.for_block(DAG_CBOR, self.data)


class LogWriter:
    """An agent's log written directly: records, manifests, IPFS blocks and anchors."""

    def __init__(self, ledger: LedgerClient, ipfs: IpfsClient | None, account: LocalAccount) -> None:
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

    def record(self, change: Change) -> Entry:
        """The next record of the log (seq and prev chained), signed by the agent."""
        record = Record.from_change(change, self.agent, self.next_seq, self.prev_hash)
        self.next_seq += 1
        self.prev_hash = record.hash
        return Entry(record.canonical, self.signer.sign(record.hash))

    def publish(
        self,
        entries: Sequence[Entry],
        leaves: Sequence[bytes] | None = None,
        store: bool = True,
        extra_blocks: Sequence[tuple[CID, bytes]] = (),
    ) -> AnchorResult:
        """Anchor the next checkpoint: the manifest lists `entries`, the tree gets `leaves`.

        `leaves` defaults to the entries' leaves (an honest batch). The blocks
        go to IPFS unless `store` is False (the manifest always does).
        """
        new_leaves = list(leaves) if leaves is not None else [merkle.leaf_hash(e.cid.digest) for e in entries]
        start = self.tree.size
        proof = self.tree.consistency_proof_to(new_leaves) if start else []
        self.tree.extend(new_leaves)
        root = self.tree.root()
        manifest = build_manifest(
            self.agent,
            self.chain_id,
            self.ledger.address,
            self.checkpoint,
            start,
            root,
            [e.cid for e in entries],
            [e.signature for e in entries],
            self.previous,
        )
        if self.ipfs is not None:
            blocks = [(e.cid, e.data) for e in entries] if store else []
            self.ipfs.put_blocks([*blocks, *extra_blocks, (manifest.cid, manifest.encode())])
        result = self.ledger.anchor(self.tree.size, root, manifest.cid.to_bytes(), proof, index=self.checkpoint)
        self.previous = PreviousCheckpoint(self.checkpoint, self.tree.size, root, manifest.cid)
        self.manifests.append(manifest)
        self.checkpoint += 1
        return result
