"""`provanchor snapshot take | list`."""

from __future__ import annotations

import click

from provanchor.cli.agent import password_file_option
from provanchor.cli.context import app, emit_json, emit_pairs, emit_table, iso_time, json_option, wide_option


@click.group()
def snapshot() -> None:
    """Snapshots of directories: stored on IPFS, recorded and anchored."""


@snapshot.command()
@click.argument("path", type=click.Path(exists=True))
@password_file_option
@json_option
@click.pass_context
def take(ctx: click.Context, path: str, password_file: str | None, as_json: bool) -> None:
    """Store PATH's tree on IPFS (only what changed), record and anchor it."""
    from provanchor.cli.progress import progress_bar
    from provanchor.hostid import default_host_id
    from provanchor.pipeline.session import AgentSession
    from provanchor.snapshot.service import take_snapshot

    with AgentSession.open(app(ctx).home, password_file=password_file) as session, progress_bar() as progress:
        taken = take_snapshot(session, path, default_host_id(), progress)
    data = {
        "snapshot_id": taken.snapshot_id,
        "cid": taken.root.encode(),
        "files": taken.files,
        "files_read": taken.files_read,
        "files_reused": taken.files_reused,
        "state_root": "0x" + taken.state_root.hex(),
        "record_id": taken.record_id,
        "checkpoint": taken.checkpoint,
        "tx": taken.tx,
    }
    if as_json:
        emit_json(data)
    else:
        emit_pairs(list(data.items()))


@snapshot.command("list")
@click.argument("path", type=click.Path(exists=True), required=False)
@password_file_option
@wide_option
@json_option
@click.pass_context
def list_(ctx: click.Context, path: str | None, password_file: str | None, wide: bool, as_json: bool) -> None:
    """Snapshots of PATH anchored on the ledger; without PATH, every snapshot this agent anchored."""
    from provanchor.hostid import default_host_id
    from provanchor.pipeline.session import AgentSession
    from provanchor.snapshot.service import list_snapshots

    with AgentSession.open(app(ctx).home, password_file=password_file) as session:
        rows = list(list_snapshots(session, path, default_host_id()))
    if as_json:
        emit_json(rows)
        return
    emit_table(
        "snapshots",
        ["location", "index", "snapshot", "checkpoint", "time", "agent"],
        [(r["location"], r["index"], r["snapshot_id"], r["checkpoint"], iso_time(r["time"]), r["agent"])
         for r in rows],
        wide=wide,
    )
