"""`provanchor index`, `provanchor query` and `provanchor lineage`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

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
from provanchor.cli.progress import progress_bar
from provanchor.errors import UsageError
from provanchor.home import Home

index_option = click.option("--index", "index_path", type=click.Path(dir_okay=False), default=None,
                            help="The index database (default: index.sqlite in the data directory).")
no_sync_option = click.option("--no-sync", "no_sync", is_flag=True,
                              help="Answer from the index as it is, without syncing it with the ledger first.")


def _index_path(home: Home, explicit: str | None) -> Path:
    return Path(explicit) if explicit else home.root / "index.sqlite"


@click.group()
def index() -> None:
    """The local index of every anchored record: a cache of the chain and IPFS."""


@index.command()
@click.option("--follow", is_flag=True, help="Keep following new checkpoints until interrupted.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between polls with --follow.")
@index_option
@json_option
@click.pass_context
def sync(ctx: click.Context, follow: bool, interval: float, index_path: str | None, as_json: bool) -> None:
    """Index every checkpoint anchored since the last sync, verifying each record."""
    from provanchor.index.store import IndexStore
    from provanchor.index.sync import Indexer
    from provanchor.network import load_network

    home = app(ctx).home
    network = load_network(home)
    with IndexStore.open(_index_path(home, index_path), must_exist=False) as store:
        indexer = Indexer(store, network)
        first = True
        while True:
            with progress_bar() as progress:
                report = indexer.sync(progress)
            data = {"checkpoints": report.checkpoints, "records": report.records, "problems": report.problems,
                    "block": report.last_block, "indexed": store.record_count()}
            # Following, a poll that found nothing new prints nothing: only changes are news.
            changed = bool(report.checkpoints or report.records or report.problems)
            if not follow and as_json:
                emit_json(data)
            elif not follow:
                emit_pairs(list(data.items()))
            elif first or changed:
                click.echo(json.dumps(data, sort_keys=True) if as_json else _follow_line(data))
            first = False
            if not follow:
                return
            time.sleep(interval)


def _follow_line(data: dict[str, int]) -> str:
    return (f"block {data['block']}: +{data['checkpoints']} checkpoint(s), +{data['records']} record(s), "
            f"+{data['problems']} problem(s); {data['indexed']} indexed")


@index.command()
@index_option
@json_option
@click.pass_context
def rebuild(ctx: click.Context, index_path: str | None, as_json: bool) -> None:
    """Drop the index and rebuild it from the chain and IPFS alone."""
    from provanchor.index.store import IndexStore
    from provanchor.index.sync import Indexer
    from provanchor.network import load_network

    home = app(ctx).home
    network = load_network(home)
    path = _index_path(home, index_path)
    IndexStore.destroy(path)
    with IndexStore.open(path, must_exist=False) as store, progress_bar() as progress:
        report = Indexer(store, network).sync(progress)
        data = {"checkpoints": report.checkpoints, "records": report.records, "problems": report.problems,
                "indexed": store.record_count()}
    if as_json:
        emit_json(data)
    else:
        emit_pairs(list(data.items()))


@index.command()
@index_option
@wide_option
@json_option
@click.pass_context
def problems(ctx: click.Context, index_path: str | None, wide: bool, as_json: bool) -> None:
    """Records and checkpoints that failed verification, with the reason."""
    from provanchor.index.store import IndexStore

    with IndexStore.open(_index_path(app(ctx).home, index_path)) as store:
        found = store.problems()
    rows = [{"agent": p.agent, "seq": p.seq, "record_id": p.record_id, "checkpoint": p.checkpoint,
             "reason": p.reason} for p in found]
    if as_json:
        emit_json(rows)
        return
    emit_table("index problems", ["agent", "seq", "checkpoint", "record", "reason"],
               [(r["agent"], r["seq"], r["checkpoint"], r["record_id"], r["reason"]) for r in rows], wide=wide)


@click.command()
@click.option("--user", default=None)
@click.option("--location", default=None, help="A path (any host) or a location URI.")
@click.option("--under", default=None, help="A directory: itself and everything below it (not siblings).")
@click.option("--since", default=None, help="ISO 8601 or Unix seconds (inclusive).")
@click.option("--until", default=None, help="ISO 8601 or Unix seconds (inclusive).")
@click.option("--code-hash", default=None, help="A code_hash (hex): every write of that code, whatever its arguments.")
@click.option("--program", default=None, metavar="PATH",
              help="An executable or script: what this program, as it is now, wrote (hashed now).")
@click.option("--all-versions", is_flag=True, help="With --program: every version ever seen at that path.")
@click.option("--agent", default=None, help="Agent address.")
@click.option("--op", default=None, help="create, write, truncate, rename, delete, chmod, run, ...")
@click.option("--run", "run_id", default=None, help="Records of this run.")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@index_option
@no_sync_option
@wide_option
@json_option
@click.pass_context
def query(ctx: click.Context, user: str | None, location: str | None, under: str | None, since: str | None,
          until: str | None, code_hash: str | None, program: str | None, all_versions: bool, agent: str | None,
          op: str | None, run_id: str | None, limit: int | None, index_path: str | None, no_sync: bool, wide: bool,
          as_json: bool) -> None:
    """Records matching every given filter, ordered by time, agent and seq (the index is synced first)."""
    from provanchor.index.fresh import open_index
    from provanchor.index.query import QueryFilter, location_arg, parse_code_hash, program_arg, run_query
    from provanchor.index.timeparse import parse_time

    if location and under:
        raise UsageError("give --location or --under, not both")
    if all_versions and not program:
        raise UsageError("--all-versions goes with --program PATH")
    program_path, program_sha256 = program_arg(program, all_versions) if program else (None, None)
    filters = QueryFilter(
        program_sha256=None if all_versions else program_sha256,
        program_path=program_path if all_versions else None,
        user=user,
        location=location_arg(location, None) if location else None,
        under=location_arg(under, None) if under else None,
        since_ns=parse_time(since) if since else None,
        until_ns=parse_time(until) if until else None,
        code_hash=parse_code_hash(code_hash) if code_hash else None,
        agent=agent,
        op=op,
        run_id=run_id,
        limit=limit,
    )
    with progress_bar() as progress:
        store, _ = open_index(app(ctx).home, Path(index_path) if index_path else None, sync=not no_sync,
                              progress=progress)
    with store:
        if filters.agent is not None and not store.checkpoints(filters.agent):
            hint = " (it was not synced: drop --no-sync)" if no_sync else ""
            raise UsageError(f"unknown agent {agent}: it has no anchored checkpoint on this ledger{hint}")
        rows = [row.to_json() for row in run_query(store, filters)]
    if as_json:
        emit_json(rows)
        return
    emit_table(f"{len(rows)} record(s)", ["time", "record", "agent", "seq", "op", "location", "user", "after sha256"],
               [(iso_time(r["time"]), r["record_id"], r["agent"], r["seq"], r["op"], r["location"], r["user"],
                 r["after_sha256"]) for r in rows], wide=wide)


@click.command()
@click.argument("location")
@click.option("--upstream", "direction", flag_value="upstream", help="Runs that wrote it and their inputs.")
@click.option("--downstream", "direction", flag_value="downstream", help="Runs that read it and their outputs.")
@click.option("--depth", type=click.IntRange(min=0), default=5, show_default=True, help="Runs to walk at most.")
@click.option("--dot", "as_dot", is_flag=True, help="Print Graphviz.")
@index_option
@no_sync_option
@wide_option
@json_option
@click.pass_context
def lineage(ctx: click.Context, location: str, direction: str | None, depth: int, as_dot: bool,
            index_path: str | None, no_sync: bool, wide: bool, as_json: bool) -> None:
    """The lineage graph of LOCATION (a path on any host, or a location URI; the index is synced first)."""
    from provanchor.index.fresh import open_index
    from provanchor.index.lineage import lineage as walk
    from provanchor.index.query import location_arg

    if direction is None:
        raise UsageError("give --upstream or --downstream")
    if as_dot and as_json:
        raise UsageError("give --json or --dot, not both")
    with progress_bar() as progress:
        store, _ = open_index(app(ctx).home, Path(index_path) if index_path else None, sync=not no_sync,
                              progress=progress)
    with store:
        graph = walk(store, location_arg(location, None), direction, depth)
    if as_dot:
        click.echo(graph.to_dot())
    elif as_json:
        emit_json(graph.to_json())
    else:
        progress_note(f"{len(graph.nodes)} node(s), {len(graph.edges)} edge(s)")
        emit_table("edges", ["from", "to", "kind"], [(e["from"], e["to"], e["kind"]) for e in graph.edges], wide=wide)
