"""`provanchor record`, `provanchor anchor` and `provanchor log`."""

from __future__ import annotations

from typing import Any

import click

from provanchor.chain.client import LedgerClient, checksum
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
from provanchor.formats.cid import CID
from provanchor.identity import load_identity
from provanchor.network import load_network
from provanchor.pipeline.session import AgentSession
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
    from provanchor.pipeline.manual import manual_change

    built = manual_change(location, op, file_path, user, code_hash)
    with AgentSession.open(app(ctx).home, password_file=password_file) as session:
        ref = session.record(built.change, built.content)
        warning = session.approval_warning()
        if warning:
            progress_note(f"warning: {warning}")
        status = session.flush() if flush_now else None
    data: dict[str, Any] = {
        "record_id": ref.record_id,
        "cid": ref.record_id,
        "seq": ref.seq,
        "hash": "0x" + ref.hash.hex(),
        "location": built.location,
        "agent": session.address,
        "warning": warning,
    }
    if status is not None:
        data.update({"anchored_size": status.size, "root": "0x" + status.root.hex(), "tx": status.tx})
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
    home = app(ctx).home
    network = load_network(home)
    address = checksum(agent_address) if agent_address else load_identity(home).address
    ledger = LedgerClient(network.rpc_url, network.contract)
    ledger.ensure_deployed()
    rows = []
    for event in ledger.anchor_events(address, from_block=network.deployment_block):
        args = event["args"]
        index = int(args["index"])
        checkpoint = ledger.checkpoint(address, index)
        rows.append(
            {
                "index": index,
                "size": int(args["size"]),
                "root": "0x" + bytes(args["root"]).hex(),
                "manifest_cid": CID.parse(bytes(args["manifestCid"])).encode(),
                "time": checkpoint.timestamp,
                "block": int(event["blockNumber"]),
                "tx": event["transactionHash"].to_0x_hex(),
            }
        )
    if as_json:
        emit_json(rows)
        return
    emit_table(
        f"checkpoints of {address}",
        ["index", "size", "root", "manifest", "time", "block", "tx"],
        [(r["index"], r["size"], r["root"], r["manifest_cid"], iso_time(r["time"]), r["block"], r["tx"]) for r in rows],
        wide=wide,
    )
