"""`provanchor ml trace | verify | models`: ML lifecycle provenance (issue 8)."""

from __future__ import annotations

import click


@click.group()
def ml() -> None:
    """ML lifecycle provenance: datasets, training runs, models, evaluations, inference receipts."""
