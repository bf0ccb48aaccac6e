"""What every command shares: the data directory, and how results are printed for people and programs.

Human output follows four rules, one place each: tables fit the terminal and
never split an id (ids are shortened in the middle instead, full with
`--wide` or `--json`); times are ISO 8601 UTC; addresses are EIP-55
checksummed; an absent value is `-`, never `None`. Progress goes to stderr,
so `--json` on stdout stays parseable. rich is imported only when a table or
a bar is drawn, so `--help` stays fast.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from provanchor.home import Home


@dataclass
class AppContext:
    home: Home


def app(ctx: click.Context) -> AppContext:
    obj = ctx.find_object(AppContext)
    if obj is None:  # invoked without the group (tests calling a subcommand directly)
        obj = AppContext(Home.resolve())
        ctx.obj = obj
    return obj


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
wide_option = click.option("--wide", is_flag=True, help="Print ids in full, however wide the table gets.")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ------------------------------------------------------------------ values for people

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
# Ids that must stay whole on one line: CIDs, hashes, tx hashes, addresses, run ids.
_ID = re.compile(r"^(0x[0-9a-fA-F]{16,}|baf[a-z2-7]{20,}|Qm[1-9A-HJ-NP-Za-km-z]{40,}|[0-9a-f]{32,}|run-[\w-]+)$")
_MIN_ID = 13  # 6 characters, an ellipsis, 6 characters: still recognisable
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def iso_time(value: object) -> str:
    """ISO 8601 UTC (`2026-12-02T19:03:09Z`) from Unix seconds, nanoseconds or an ISO string; `-` if absent.

    Whole seconds unless the value carries a fraction, then milliseconds: the
    one style every command uses.
    """
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        seconds: float = parsed.timestamp()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    else:
        seconds = float(value) / 1e9 if abs(value) > 1e14 else float(value)  # ns or s
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def address(value: object) -> str:
    """An EIP-55 checksummed address (any case in), `-` if absent."""
    if value is None or value == "":
        return "-"
    text = str(value)
    if not _ADDRESS.fullmatch(text):
        return text
    from eth_utils.address import to_checksum_address

    return str(to_checksum_address(text))


def render(value: object) -> str:
    """One value as people read it: no `None`, bytes as hex, lists joined, booleans as yes/no."""
    if value is None:
        return "-"
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(render(v) for v in value) or "-"
    if isinstance(value, str) and _ADDRESS.fullmatch(value):
        return address(value)
    return str(value)


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut in the middle with an ellipsis (never below _MIN_ID)."""
    width = max(width, _MIN_ID)
    if len(text) <= width:
        return text
    head = width // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def is_id(text: str) -> bool:
    return bool(_ID.match(text))


def _unsplittable(text: str) -> bool:
    """Ids and times are read whole: never folded across lines (ids may be shortened instead)."""
    return is_id(text) or bool(_TIME.match(text))


def terminal_width() -> int:
    """The width tables must fit: the terminal's, else $COLUMNS, else 120 (piped output)."""
    if sys.stdout.isatty():
        return shutil.get_terminal_size((120, 24)).columns
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 120


def fit_rows(columns: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> list[list[str]]:
    """Shorten id cells in the middle until the table fits `width` (free text is left to wrap)."""
    cells = [list(row) for row in rows]
    if not cells:
        return cells
    natural = [max([len(columns[i]), *(len(row[i]) for row in cells)]) for i in range(len(columns))]
    id_columns = [i for i in range(len(columns)) if any(is_id(row[i]) for row in cells)]
    budget = width - (3 * len(columns) + 1)  # rich's borders and padding
    excess = sum(natural) - budget
    if excess <= 0 or not id_columns:
        return cells
    shrinkable = {i: max(0, natural[i] - max(_MIN_ID, len(columns[i]))) for i in id_columns}
    room = sum(shrinkable.values())
    for i in id_columns:
        if not room:
            break
        cut = min(shrinkable[i], -(-excess * shrinkable[i] // room))  # proportional share, rounded up
        target = natural[i] - cut
        for row in cells:
            if is_id(row[i]):
                row[i] = shorten_middle(row[i], target)
    return cells


def emit_table(
    title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, wide: bool = False
) -> None:
    """A table that fits the terminal; ids are never split across lines (shortened, or full with `wide`)."""
    from rich.console import Console
    from rich.table import Table

    text_rows = [[render(cell) for cell in row] for row in rows]
    width = terminal_width()
    if not wide:
        text_rows = fit_rows(columns, text_rows, width)
    table = Table(title=title, show_lines=False)
    for i, column in enumerate(columns):
        whole = any(_unsplittable(row[i]) for row in text_rows if i < len(row))
        table.add_column(column, overflow="fold", no_wrap=whole, min_width=max(len(r[i]) for r in text_rows)
                         if whole and text_rows else None)
    for row in text_rows:
        table.add_row(*row)
    if wide:
        natural = sum(max([len(c), *(len(r[i]) for r in text_rows)]) for i, c in enumerate(columns))
        width = max(width, natural + 3 * len(columns) + 1)
    Console(file=sys.stdout, width=width, soft_wrap=False).print(table)


def emit_pairs(pairs: Sequence[tuple[str, Any]]) -> None:
    """Key/value lines; times should already be `iso_time`d by the caller (keys do not say what is a time)."""
    shown = [(key, render(value)) for key, value in pairs]
    width = max((len(k) for k, _ in shown), default=0)
    for key, value in shown:
        click.echo(f"{key.ljust(width)}  {value}")


def progress_note(message: str) -> None:
    """Human progress goes to stderr so `--json` output on stdout stays parseable."""
    click.echo(message, err=True)


Renderer = Callable[[Any], None]
