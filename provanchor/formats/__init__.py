"""The bottom layer: every format an auditor reads, computed and checked locally.

CIDs and varints, the one dag-cbor codec, dag-pb and UnixFS, HAMT directories,
CARv1, the RFC 9162 Merkle tree, batch manifests and snapshot manifests.
Provenance records, their locations and the audit bundle's blocks live in
`provanchor.records`, the other package of this layer, which builds on this
one. Nothing here imports a client, a writer or a reader: a format can be
checked with these modules and the bytes alone.
"""
