"""provanchor: a data-provenance ledger anchored on an EVM chain, with content on IPFS."""

from __future__ import annotations

__version__ = "0.1.0"
