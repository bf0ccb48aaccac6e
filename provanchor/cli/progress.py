"""A rich progress bar on stderr, only when stderr is a terminal (never in pipes, logs or --json captures)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from provanchor.progress import ProgressFn, quiet

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(enabled: bool | None = None) -> Iterator[ProgressFn]:
    """Yield a `ProgressFn` drawing one bar per stage on stderr; a no-op unless stderr is a TTY."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield quiet
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, object] = {}

        def update(what: str, done: int, total: int | None) -> None:
            task = tasks.get(what)
            if task is None:
                task = tasks[what] = bar.add_task(what, total=total)
            bar.update(task, completed=done, total=total)  # type: ignore[arg-type]

        yield update
