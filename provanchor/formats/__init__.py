"""The bottom layer: every format an auditor reads, computed and checked locally.

CIDs and varints, the one dag-cbor codec, dag-pb and UnixFS, HAMT directories,
CARv1, the RFC 9162 Merkle tree, batch manifests, snapshot manifests and audit
bundle blocks. Provenance records themselves live in `provanchor.records`,
which is part of this layer too. Nothing here imports a client, a writer or a
reader: a format can be checked with these modules and the bytes alone.
"""
