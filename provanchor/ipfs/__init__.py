"""IPFS: a trustless client for the Kubo RPC API.

Content identifiers, UnixFS and CAR are formats, computed locally in
`provanchor.formats`; this package only talks to a daemon, and verifies every
block it is given against its CID.
"""
