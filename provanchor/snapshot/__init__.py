"""Snapshots: a directory tree stored on IPFS as a standard UnixFS DAG, described by an anchored manifest.

A later replay restores a location's state from the UnixFS root and checks it
against the manifest's per-entry hashes; the manifest's state root is what the
ledger contract anchors. See `tree` (walk + DAG), `cache` (incremental builds)
and `manifest` (the record and its Merkle root).
"""

from __future__ import annotations

from provanchor.formats.snapshot_manifest import ManifestError, SnapshotManifest, decode_snapshot_manifest, state_root
from provanchor.snapshot.cache import CacheError, CacheStats, FileCache
from provanchor.snapshot.tree import FileEntry, SnapshotError, TreeResult, UnsafeEntry, build_tree

__all__ = [
    "CacheError",
    "CacheStats",
    "FileCache",
    "FileEntry",
    "ManifestError",
    "SnapshotError",
    "SnapshotManifest",
    "TreeResult",
    "UnsafeEntry",
    "build_tree",
    "decode_snapshot_manifest",
    "state_root",
]
