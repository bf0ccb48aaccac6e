"""`provanchor agent`: the agent's identity (and, later, the capture service)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from provanchor.cli.context import app, emit_json, emit_pairs, iso_time, json_option, progress_note
from provanchor.identity import create_identity, read_password
from provanchor.network import load_network

password_file_option = click.option(
    "--password-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File holding the keystore password (else $PROVANCHOR_PASSWORD, else a prompt).",
)


@click.group()
def agent() -> None:
    """Agent identity and the capture service."""


@agent.command()
@click.option("--name", required=True, help="Human name of this agent (host or service).")
@click.option(
    "--keystore",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the encrypted keystore (default: keys/agent-NAME.json in the data directory).",
)
@click.option("--force", is_flag=True, help="Replace an already configured agent (its key and spool are kept).")
@password_file_option
@json_option
@click.pass_context
def init(
    ctx: click.Context, name: str, keystore: str | None, force: bool, password_file: str | None, as_json: bool
) -> None:
    """Create an agent key in an encrypted keystore and make it the configured agent."""
    home = app(ctx).home
    password = read_password(password_file, confirm=True)
    identity = create_identity(home, name, password, Path(keystore) if keystore else None, replace=force)
    funded = False
    if home.network_file.exists() and load_network(home).local:
        try:  # a local network's agents get gas money; real networks fund agents out of band
            from provanchor.localnet import lifecycle  # web3: only `agent init` on a local network needs it

            lifecycle.fund(home, identity.address)
            funded = True
        except Exception as exc:  # the chain may be down: the identity is still created
            progress_note(f"note: could not fund the agent on the local network ({exc})")
    if as_json:
        emit_json({"address": identity.address, "keystore": identity.keystore, "name": identity.name, "funded": funded})
        return
    emit_pairs([("address", identity.address), ("keystore", identity.keystore), ("name", identity.name)])
    progress_note(f"next: provanchor gov propose add-agent {identity.address} --name {identity.name}")


@agent.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The agent's TOML configuration (see agent/agent.example.toml).",
)
@click.pass_context
def start(ctx: click.Context, config_path: str) -> None:
    """Run the capture service in the foreground until SIGTERM (for the service manager)."""
    from provanchor.agent.config import load_config
    from provanchor.agent.service import AgentService

    service = AgentService(load_config(config_path))
    raise SystemExit(service.run())


@agent.command()
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Read the agent's data directory and key from this config instead of --home.",
)
@json_option
@click.pass_context
def status(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Show whether the agent service runs, its capture backend and its counters."""
    from provanchor.agent.status import read_status

    data = read_status(app(ctx).home, config_path)
    if as_json:
        emit_json(data)
        return
    times = ("started", "updated")
    emit_pairs([(key, iso_time(data[key]) if key in times else data[key]) for key in sorted(data)])


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", default=None, help="A name for this run (kept in the run record).")
@click.option(
    "--watch",
    "watch",
    multiple=True,
    type=click.Path(file_okay=False, exists=True),
    help="Where fanotify is unavailable: also watch this directory for inputs and outputs (inotify "
    "watches the working directory and the directories of path arguments anyway). With fanotify "
    "every local filesystem is watched whole.",
)
@click.option("--flush", "flush_now", is_flag=True, help="Anchor the records before returning.")
@click.option("--openlineage", "openlineage_url", metavar="URL", default=None,
              help="Also send the run as OpenLineage events (START, COMPLETE or FAIL) to this endpoint; "
              "kept in the outbox and retried if it is unreachable.")
@password_file_option
@json_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context,
    name: str | None,
    watch: tuple[str, ...],
    flush_now: bool,
    openlineage_url: str | None,
    password_file: str | None,
    as_json: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND and record it: its code, every input it read and every output it wrote.

    The command's own exit code is passed through.
    """
    from provanchor.agent.run import record_run
    from provanchor.interop.outbox import check_url

    if openlineage_url is not None:
        check_url(openlineage_url)
    argv = list(command[1:] if command and command[0] == "--" else command)
    recorded = record_run(
        app(ctx).home, argv, name=name, watch=watch, flush=flush_now, password_file=password_file,
        stdout=sys.stderr if as_json else None, on_warning=lambda text: progress_note(f"warning: {text}"),
        openlineage_url=openlineage_url,
    )
    result, data = recorded.result, recorded.to_json()
    for note in result.notes:
        progress_note(f"note: {note}")
    if as_json:
        emit_json(data)
    else:
        progress_note(
            f"run {result.run_id}: exit {result.exit_code}, {len(result.inputs)} input(s), "
            f"{len(result.outputs)} output(s), record {data['record_id']}"
        )
    raise SystemExit(result.exit_code)
