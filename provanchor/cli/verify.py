"""`provanchor verify ...`: third-party verification from chain + IPFS (issue 7)."""

from __future__ import annotations

import click


@click.group()
def verify() -> None:
    """Verify records, files, agents, locations and runs against the chain and IPFS alone."""
