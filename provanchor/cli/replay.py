"""`provanchor replay state | run`: rebuild a location at a time, re-execute a recorded run (issue 6)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from provanchor.cli.context import app, emit_json, emit_pairs, json_option, progress_note
from provanchor.cli.index import index_option
from provanchor.cli.progress import progress_bar

_out_option = click.option(
    "--out", "out", required=True, type=click.Path(path_type=str),
    help="Directory to restore into; must be empty (or not exist) unless --force.",
)  # fmt: skip
_force_option = click.option("--force", is_flag=True, help="Restore into a non-empty --out, replacing its contents.")
_cache_option = click.option(
    "--no-cache", "no_cache", is_flag=True,
    help="Do not use or fill the local verified content cache (always fetch from IPFS).",
)  # fmt: skip
_verify_cache_option = click.option(
    "--verify-cache", "verify_cache", is_flag=True,
    help="Hash every byte restored from the local cache, not only entries whose stamp changed.",
)  # fmt: skip
_sync_option = click.option(
    "--no-sync", "no_sync", is_flag=True, help="Use the index as it is instead of syncing it with the ledger first."
)


def _restore_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options both replays share: where to restore, and where content and records come from."""
    for option in reversed((_force_option, index_option, _cache_option, _verify_cache_option, _sync_option)):
        command = option(command)
    return command


@click.group()
def replay() -> None:
    """Rebuild any location at any time, or re-execute a recorded run, checked against the ledger."""


def _location(text: str, host: str | None) -> str:
    from provanchor.hostid import local_location

    return local_location(text, host)


@replay.command()
@click.argument("location")
@click.option("--at", "at", required=True, help="The time: ISO 8601 or Unix seconds (inclusive).")
@click.option("--user", default=None, help="Apply only this user's changes (the replay is expected to diverge).")
@_out_option
@click.option("--host", default=None, help="Host id of a plain path (default: this machine's).")
@_restore_options
@json_option
@click.pass_context
def state(
    ctx: click.Context,
    location: str,
    at: str,
    user: str | None,
    out: str,
    force: bool,
    host: str | None,
    index_path: str | None,
    no_cache: bool,
    verify_cache: bool,
    no_sync: bool,
    as_json: bool,
) -> None:
    """Rebuild LOCATION (a file or directory) exactly as it was at --at, into --out.

    Exit status 0 when every record's `before` matched the replayed state,
    1 when the chain broke (the tree is still written and the breaks listed).
    """
    from provanchor.index.timeparse import parse_time
    from provanchor.replay import open_sources, replay_state

    at_ns = parse_time(at)
    uri = _location(location, host)
    home = app(ctx).home
    with (
        progress_bar() as progress,
        open_sources(home, Path(index_path) if index_path else None, sync=not no_sync, cache=not no_cache,
                     progress=progress) as src,
    ):
        result = replay_state(
            src.records, src.ipfs, src.ledger, uri, at_ns, out,
            user=user, force=force, cache_dir=src.cache_dir, verify_cache=verify_cache, progress=progress,
        )  # fmt: skip
    if as_json:
        emit_json(result.to_json())
    else:
        snapshot = result.snapshot.snapshot_id if result.snapshot else "none (from the first record)"
        emit_pairs([
            ("location", result.location), ("out", str(result.out)), ("snapshot", snapshot),
            ("records", len(result.steps)), ("applied", result.applied), ("files", len(result.files)),
            ("ok", result.ok),
        ])  # fmt: skip
        for step in result.breaks:
            click.echo(f"break: {step.op} {step.path} (record {step.record_id}, seq {step.seq}): {step.detail}")
        for problem in result.problems:
            click.echo(f"problem: {problem}")
    ctx.exit(0 if result.ok else 1)


@replay.command("run")
@click.argument("run_id")
@_out_option
@click.option("--allow-code-drift", is_flag=True, help="Re-run even if the code on this machine differs.")
@click.option("--timeout", type=float, default=None, help="Give up on the re-run after this many seconds.")
@_restore_options
@json_option
@click.pass_context
def run_(
    ctx: click.Context,
    run_id: str,
    out: str,
    allow_code_drift: bool,
    force: bool,
    timeout: float | None,
    index_path: str | None,
    no_cache: bool,
    verify_cache: bool,
    no_sync: bool,
    as_json: bool,
) -> None:
    """Re-execute run RUN_ID on its recorded inputs in --out and compare every output.

    Exit status 0 only when every output is bit-identical (and the exit code
    matches); 1 when it did not reproduce; 3 when the code differs and
    --allow-code-drift was not given.
    """
    from provanchor.replay import open_sources, replay_run
    from provanchor.replay.run import remember_replay

    home = app(ctx).home
    with open_sources(home, Path(index_path) if index_path else None, sync=not no_sync, cache=not no_cache) as src:
        result = replay_run(
            src.records, src.ipfs, run_id.strip(), out,
            allow_code_drift=allow_code_drift, force=force, cache_dir=src.cache_dir, verify_cache=verify_cache,
            timeout=timeout,
        )  # fmt: skip
    remember_replay(home.root, result)
    if as_json:
        emit_json(result.to_json())
    else:
        emit_pairs([
            ("run", result.run_id), ("out", str(result.scratch)), ("inputs restored", result.inputs),
            ("exit code", f"{result.exit_code} (recorded {result.recorded_exit})"),
            ("code drift", result.drift or "none"), ("isolated", result.isolated), ("reproduced", result.reproduced),
        ])  # fmt: skip
        for output in result.outputs:
            mark = "same" if output.match else "DIFFERS"
            actual = output.actual.hex() if output.actual is not None else "missing"
            width = 16 if output.match else 64  # a mismatch shows both hashes whole
            click.echo(f"output {output.path}: {mark} (expected {output.expected.hex()[:width]}, got {actual[:width]})")
    for note in result.notes:
        progress_note(f"note: {note}")
    if result.reason is not None:
        progress_note(f"not reproduced: {result.reason}")
    ctx.exit(0 if result.reproduced else 1)
