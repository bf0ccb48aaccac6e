"""Taking a snapshot: tree to IPFS, a `snapshot` record in the agent's log, an anchor on chain.

The tree's blocks go to IPFS (only what changed since the last snapshot, per
the file cache), then the snapshot manifest. A `snapshot` record names the
manifest, its tree root and state root, and is anchored with everything else
the agent has spooled; then the contract's snapshot anchor ties (resource id =
sha256 of the location, manifest CID, state root) to that checkpoint. The
cache only learns what was taken once the upload succeeded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from provanchor.errors import ProvanchorError, UsageError
from provanchor.formats.cid import CID, DAG_CBOR, RAW
from provanchor.formats.snapshot_manifest import SnapshotManifest
from provanchor.formats.snapshot_manifest import resource_id as resource_id
from provanchor.ipfs.client import IpfsClient
from provanchor.pipeline.session import AgentSession
from provanchor.progress import ProgressFn
from provanchor.records import Capture, CaptureBackend, Change, Op, file_location
from provanchor.snapshot.cache import FileCache
from provanchor.snapshot.tree import TreeResult, build_tree

_BLOCKS_PER_IMPORT = 2048


@dataclass(frozen=True)
class SnapshotTaken:
    snapshot_id: str  # the manifest's CID
    root: CID
    files: int
    files_read: int
    files_reused: int
    state_root: bytes
    record_id: str
    checkpoint: int
    resource_id: bytes
    tx: str


def cache_path(agent_dir: Path, location: str) -> Path:
    """The file cache of one location: snapshots of two trees must not invalidate each other's baseline."""
    return agent_dir / f"snapshot-cache-{resource_id(location).hex()[:16]}.sqlite"


def take_snapshot(
    session: AgentSession, path: str, host_id: str, progress: ProgressFn | None = None
) -> SnapshotTaken:
    directory = Path(os.path.realpath(path))
    if not directory.is_dir():
        raise UsageError(f"cannot snapshot {path}: not a directory")
    location = file_location(host_id, str(directory))
    ipfs = session.anchorer.ipfs
    cache = FileCache(cache_path(session.spool.path.parent, location), store=ipfs.peer_id())
    started = time.time_ns()  # changes recorded after this may or may not be in the snapshot
    try:
        tree = build_tree(directory, cache, progress=progress)
        _upload(ipfs, tree)
        latest = session.anchorer.status()
        manifest = SnapshotManifest.from_tree(
            location=location,
            tree=tree,
            time=time.time_ns(),
            agent=session.address.lower(),
            checkpoint=latest.checkpoint if latest else None,
        )
        encoded = manifest.encode()
        manifest_cid = CID.for_block(DAG_CBOR, encoded)
        ipfs.put_blocks([(manifest_cid, encoded)], pin_roots=[manifest_cid])
        ipfs.persist()  # the tree and its manifest are durable before anything anchors them
        cluster = session.anchorer.cluster
        if cluster is not None:  # the manifest links the tree: one recursive pin replicates both
            cluster.replicate([(manifest_cid, False)], name=f"snapshot {location}")
        cache.commit()
    except BaseException:
        cache.discard()
        raise
    finally:
        cache.close()
    state_root = manifest.state_root()
    change = Change(
        time=manifest.time,
        host=host_id,
        location=location,
        op=Op.SNAPSHOT,
        capture=Capture(backend=CaptureBackend.MANUAL, attributed=True, reason=None),
        payload={
            "manifest": manifest_cid,
            "root": tree.root,
            "state_root": state_root,
            "files": len(tree.files),
            "started": started,
        },
    )
    ref = session.record(change)
    # The record's anchor and the snapshot anchor are sent from the agent's key: under the spool's
    # anchoring lock, so a capture service or another command sending from the same key at the same
    # time can neither cut this batch half way nor take the nonce.
    with session.anchorer.exclusive():
        status = session.anchorer.flush_held()
        if status is None:
            raise ProvanchorError("the snapshot record could not be anchored")
        receipt = session.anchorer.ledger.anchor_snapshot(
            resource_id(location), manifest_cid.to_bytes(), state_root, status.checkpoint
        )
    return SnapshotTaken(
        manifest_cid.encode(),
        tree.root,
        len(tree.files),
        tree.stats.files_read,
        tree.stats.files_reused,
        state_root,
        ref.record_id,
        status.checkpoint,
        resource_id(location),
        receipt.tx_hash,
    )


def _upload(ipfs: IpfsClient, tree: TreeResult) -> None:
    """Store the tree's new blocks, pinned so that the whole tree stays pinned.

    A first snapshot pins its root recursively. An incremental one uploads only
    what changed: its unchanged blocks are already pinned by the snapshots
    before it (from this same block store, which the cache checks), so only
    the new blocks are pinned, directly. A recursive pin would walk the whole
    tree again (11 s for 1 GiB on the old js-ipfs daemon, for a 1% change).
    """
    incremental = tree.stats.files_reused > 0
    pending: list[tuple[CID, bytes]] = []

    def flush(last: bool) -> None:
        if not incremental:
            ipfs.put_blocks(pending, pin_roots=[tree.root] if last else [])  # the last import holds the root
            return
        # Raw leaves: a recursive pin of a leaf walks nothing and, unlike a direct pin, is accepted
        # when the same content is already pinned recursively (recorded earlier by the agent).
        ipfs.put_blocks(pending, pin_roots=[cid for cid, _ in pending if cid.codec == RAW])
        nodes = [cid for cid, _ in pending if cid.codec != RAW]
        if nodes or last:
            ipfs.pin_direct(nodes or [tree.root])

    for block in tree.iter_blocks():
        pending.append(block)
        if len(pending) >= _BLOCKS_PER_IMPORT:
            flush(last=False)
            pending = []
    flush(last=True)


def list_snapshots(session: AgentSession, path: str | None, host_id: str) -> Iterator[dict[str, object]]:
    """The anchored snapshots of PATH (any agent's), or without PATH every snapshot this agent anchored."""
    ledger = session.anchorer.ledger
    if path is not None:
        location = file_location(host_id, os.path.realpath(path))
        key = resource_id(location)
        anchors = [ledger.snapshot(key, index) for index in range(ledger.snapshot_count(key))]
        locations: dict[bytes, str | None] = dict.fromkeys((a.cid for a in anchors), location)
    else:
        events = ledger.snapshot_events(session.address, from_block=session.network.deployment_block)
        anchors = [ledger.snapshot(e.resource_id, e.index) for e in events]
        locations = {a.cid: _manifest_location(session, a.cid) for a in anchors}
    for anchored in anchors:
        yield {
            "index": anchored.index,
            "location": locations[anchored.cid],
            "snapshot_id": CID.parse(anchored.cid).encode(),
            "state_root": "0x" + anchored.state_root.hex(),
            "agent": anchored.agent,
            "checkpoint": anchored.checkpoint_index,
            "time": anchored.timestamp,
        }


def _manifest_location(session: AgentSession, cid: bytes) -> str | None:
    """The location a snapshot manifest names (None when IPFS cannot provide it)."""
    from provanchor.formats.snapshot_manifest import decode_snapshot_manifest

    try:
        return decode_snapshot_manifest(session.anchorer.ipfs.get_block(CID.parse(cid))).location
    except ProvanchorError:
        return None


__all__ = ["SnapshotTaken", "cache_path", "list_snapshots", "resource_id", "take_snapshot"]
