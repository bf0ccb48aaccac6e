"""Third-party verification: every claim checked from the chain and IPFS alone (issue 7)."""

from __future__ import annotations

from provanchor.verify.report import Check, Report

__all__ = ["Check", "Report"]
