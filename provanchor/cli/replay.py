"""`provanchor replay state | run`: rebuild a location at a time, re-execute a recorded run (issue 6)."""

from __future__ import annotations

import click


@click.group()
def replay() -> None:
    """Rebuild any location at any time, or re-execute a recorded run, checked against the ledger."""
