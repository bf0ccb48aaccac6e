"""IPFS: content identifiers computed locally, and a trustless client for the Kubo RPC API."""
