"""The ecosystem's formats: OpenLineage RunEvents, W3C PROV documents, in-toto statements in DSSE envelopes.

Readers: each export reads the local index (a verified cache of anchored
records) and never writes the ledger. See docs/interop.md.
"""
