"""How long-running library calls report progress, without knowing who listens.

A `ProgressFn` is called as `progress(what, done, total)`: `what` names the
current stage ("indexing checkpoints"), `done` counts its units and `total`
is their number when known (None when not). The CLI turns these calls into a
progress bar on a terminal's stderr; programs pass their own function or
nothing. Nothing here imports a UI library.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressFn", "quiet"]

ProgressFn = Callable[[str, int, "int | None"], None]


def quiet(what: str, done: int, total: int | None) -> None:
    """The progress function that says nothing (the default everywhere)."""
