"""`provanchor audit export | verify`: self-contained audit bundles (issue 7)."""

from __future__ import annotations

import click


@click.group()
def audit() -> None:
    """Audit bundles: CAR files an auditor verifies against the chain with no IPFS."""
