"""`provanchor record`, `provanchor anchor` and `provanchor log`."""

from __future__ import annotations

from typing import Any

import click

from provanchor.cli.agent import password_file_option
from provanchor.cli.context import (
    app,
    emit_json,
    emit_pairs,
    emit_table,
    iso_time,
    json_option,
    progress_note,
    wide_option,
)
from provanchor.identity import load_identity
from provanchor.network import load_network
from provanchor.records import Op

_OPS = [op.value for op in Op]


@click.command()
@click.option("--location", required=True, help="A file path (made into file://HOST/PATH) or a URI.")
@click.option("--op", required=True, type=click.Choice(_OPS), help="What happened to the location.")
@click.option(
    "--file",
    "file_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The new content (default: the location itself when it is an existing file).",
)
@click.option("--user", default=None, help="Who made the change (default: the current user).")
@click.option("--code-hash", default=None, help="sha256 (hex) identifying the program that made the change.")
@click.option("--flush", "flush_now", is_flag=True, help="Anchor right away and wait for the receipt.")
@password_file_option
@json_option
@click.pass_context
def record(
    ctx: click.Context,
    location: str,
    op: str,
    file_path: str | None,
    user: str | None,
    code_hash: str | None,
    flush_now: bool,
    password_file: str | None,
    as_json: bool,
) -> None:
    """Record one change as the configured agent (durable when this returns)."""
    from provanchor.pipeline.manual import record_manual_change

    result = record_manual_change(
        app(ctx).home, location, op, file_path, user, code_hash,
        flush=flush_now, password_file=password_file, on_warning=lambda text: progress_note(f"warning: {text}"),
    )
    data = result.to_json()
    if as_json:
        emit_json(data)
    else:
        emit_pairs(list(data.items()))


@click.command()
@click.option("--flush", "flush_now", is_flag=True, help="Anchor everything spooled and wait for the receipt.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for receipts.")
@password_file_option
@json_option
@click.pass_context
def anchor(ctx: click.Context, flush_now: bool, timeout: float, password_file: str | None, as_json: bool) -> None:
    """Anchor spooled records (with --flush), or show what is waiting."""
    from provanchor.pipeline.session import anchor_spool

    report = anchor_spool(app(ctx).home, flush_now, timeout=timeout, password_file=password_file)
    status = report.status
    data: dict[str, Any] = {
        "agent": report.agent,
        "size": status.size if status else 0,
        "root": "0x" + status.root.hex() if status else None,
        "tx": status.tx if status else None,
        "checkpoint": status.checkpoint if status else None,
        "block": status.block if status else None,
        "records": report.records,
        "pending": report.pending,
        "newly_anchored": report.newly_anchored,
    }
    if as_json:
        emit_json(data)
    else:
        emit_pairs(list(data.items()))


@click.command()
@click.option("--agent", "agent_address", default=None, help="Agent address (default: the configured agent).")
@wide_option
@json_option
@click.pass_context
def log(ctx: click.Context, agent_address: str | None, wide: bool, as_json: bool) -> None:
    """List an agent's checkpoints as the chain records them."""
    from provanchor.chain.client import checksum
    from provanchor.chain.history import checkpoint_history

    home = app(ctx).home
    network = load_network(home)
    address = checksum(agent_address) if agent_address else load_identity(home).address
    history = checkpoint_history(network.rpc_url, network.contract, address, network.deployment_block)
    rows = [checkpoint.to_json() for checkpoint in history]
    if as_json:
        emit_json(rows)
        return
    emit_table(
        f"checkpoints of {address}",
        ["index", "size", "root", "manifest", "time", "block", "tx"],
        [(r["index"], r["size"], r["root"], r["manifest_cid"], iso_time(r["time"]), r["block"], r["tx"]) for r in rows],
        wide=wide,
    )
