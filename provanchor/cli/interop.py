"""`provanchor export openlineage | prov | intoto` and `provanchor openlineage serve | deliver` (issue 18).

The exports read the local index (synced first unless ``--no-sync``); only
``export intoto`` needs the agent's key, to sign. ``openlineage serve``
records what it receives as the configured agent.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from provanchor.cli.agent import password_file_option
from provanchor.cli.context import app, emit_json, json_option, progress_note
from provanchor.cli.ml import _index_options, _open_index, envelope_output_option


@click.group()
def export() -> None:
    """Export as OpenLineage events, W3C PROV or in-toto attestations."""


@export.command("openlineage")
@click.argument("run_id")
@click.option("--emit", "emit_url", metavar="URL", default=None,
              help="Send the events to this OpenLineage endpoint (base URL; POST URL/api/v1/lineage).")
@_index_options
@click.pass_context
def openlineage_cmd(
    ctx: click.Context, run_id: str, emit_url: str | None, index_path: str | None, no_sync: bool, as_json: bool
) -> None:
    """RUN_ID as OpenLineage RunEvents (START, then COMPLETE or FAIL; spec 2-0-2)."""
    from provanchor.interop.openlineage import run_events_json
    from provanchor.interop.outbox import Outbox, check_url
    from provanchor.interop.runs import load_run

    if emit_url is not None:
        check_url(emit_url)
    store, _ = _open_index(ctx, index_path, no_sync)
    with store:
        events = run_events_json(load_run(store, run_id))
    if emit_url is not None:
        delivery = Outbox(app(ctx).home).emit(emit_url, events)
        progress_note(f"sent {delivery.sent} event(s) to {emit_url}")
    if as_json or emit_url is None:
        emit_json(events)


@export.command("prov")
@click.option("--run", "run_id", default=None, help="One recorded run: its inputs, outputs, program and user.")
@click.option("--location", default=None, help="Every change of a location (URI or absolute path).")
@click.option("--since", default=None, help="With --location: from this time (ISO 8601 or Unix seconds).")
@click.option("--until", default=None, help="With --location: until this time (inclusive).")
@click.option("--agent", default=None, help="Every record of one agent (address).")
@click.option("--format", "fmt", type=click.Choice(["json", "provn"]), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the document here instead of standard output.")
@click.option("--index", "index_path", type=click.Path(dir_okay=False), default=None,
              help="The index database (default: index.sqlite in the data directory).")
@click.option("--no-sync", is_flag=True, help="Use the index as it is, without following the chain first.")
@click.pass_context
def prov_cmd(
    ctx: click.Context,
    run_id: str | None,
    location: str | None,
    since: str | None,
    until: str | None,
    agent: str | None,
    fmt: str,
    output: str | None,
    index_path: str | None,
    no_sync: bool,
) -> None:
    """A W3C PROV document of a run, a location's changes, or an agent's records."""
    from provanchor.index.timeparse import parse_time
    from provanchor.interop.prov import ProvSelection, prov_document, serialize
    from provanchor.records.locations import location_arg

    selection = ProvSelection(
        run_id=run_id,
        location=location_arg(location, None) if location is not None else None,
        since_ns=parse_time(since) if since else None,
        until_ns=parse_time(until) if until else None,
        agent=agent,
    )
    store, _ = _open_index(ctx, index_path, no_sync)
    with store:
        text = serialize(prov_document(store, selection), fmt)
    _write(text, output)


@export.command("intoto")
@click.argument("run_id")
@envelope_output_option
@password_file_option
@_index_options
@click.pass_context
def intoto_cmd(
    ctx: click.Context,
    run_id: str,
    output: str,
    password_file: str | None,
    index_path: str | None,
    no_sync: bool,
    as_json: bool,
) -> None:
    """RUN_ID's outputs as an in-toto statement (SLSA provenance v1) in a DSSE envelope signed by its agent."""
    from provanchor.interop.intoto import run_statement
    from provanchor.interop.runs import load_run

    store, _ = _open_index(ctx, index_path, no_sync)
    with store:
        view = load_run(store, run_id)
    statement = run_statement(view)
    sign_and_write(ctx, statement, view.run.record.agent, output, password_file, as_json)


def sign_and_write(
    ctx: click.Context, statement: dict[str, Any], agent: str, output: str, password_file: str | None, as_json: bool
) -> None:
    """Sign with this data directory's agent key, which must be the agent that recorded the claim."""
    from provanchor.errors import UsageError
    from provanchor.identity import load_identity, read_password, unlock_key
    from provanchor.interop.intoto import sign_statement

    home = app(ctx).home
    identity = load_identity(home)
    if identity.address.lower() != agent.lower():
        raise UsageError(
            f"the record was made by agent {agent}; this data directory's agent is {identity.address}: "
            "sign on the machine of the agent that recorded it"
        )
    account = unlock_key(identity.keystore_path, read_password(password_file))
    envelope = sign_statement(statement, bytes(account.key))
    Path(output).write_bytes(envelope.to_bytes())
    summary = {
        "output": output,
        "keyid": envelope.signatures[0].keyid,
        "subjects": [s["name"] for s in statement["subject"]],
        "record_id": statement["predicate"]["runDetails"]["byproducts"][0]["uri"].removeprefix("ipfs://"),
    }
    if as_json:
        emit_json(summary)
    else:
        progress_note(f"wrote {output}: {len(summary['subjects'])} subject(s), signed by {summary['keyid']}")


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        Path(output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


@click.group()
def openlineage() -> None:
    """Receive OpenLineage events as signed, anchored records."""


@openlineage.command("serve")
@click.option("--listen", default="127.0.0.1:5000", show_default=True, help="HOST:PORT to listen on.")
@click.option("--token", default=None, envvar="PROVANCHOR_OPENLINEAGE_TOKEN",
              help="Require Authorization: Bearer TOKEN on every request (needed beyond loopback).")
@password_file_option
@click.pass_context
def serve(ctx: click.Context, listen: str, token: str | None, password_file: str | None) -> None:
    """Accept POST /api/v1/lineage (Marquez's endpoint); every event becomes a lineage record, durable
    before the answer."""
    from provanchor.agent.openlineage_receiver import LineageReceiver
    from provanchor.errors import UsageError
    from provanchor.hostid import default_host_id
    from provanchor.pipeline.session import AgentSession

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen is HOST:PORT, got {listen!r:.60}")
    if host not in ("127.0.0.1", "localhost", "::1") and token is None:
        raise UsageError(f"listening on {host} (beyond loopback) needs --token")
    with AgentSession.open(app(ctx).home, password_file=password_file) as session:
        try:
            receiver = LineageReceiver(session, default_host_id(), (host, int(port)), token=token)
        except OSError as exc:
            raise UsageError(f"cannot listen on {listen}: {exc.strerror}") from None
        session.start(on_error=lambda exc: progress_note(f"anchoring will retry: {exc}"))
        bound = receiver.address
        progress_note(f"receiving OpenLineage events at http://{bound[0]}:{bound[1]}/api/v1/lineage as agent "
                      f"{session.address} (Ctrl-C to stop)")
        try:
            receiver.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            receiver.shutdown()
            session.stop()


@openlineage.command("deliver")
@click.option("--url", default=None, help="Only the events waiting for this endpoint.")
@json_option
@click.pass_context
def deliver(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """Send the OpenLineage events waiting in the outbox (kept when an endpoint was unreachable)."""
    from provanchor.interop.outbox import Outbox

    results = Outbox(app(ctx).home).deliver(url)
    if as_json:
        emit_json([r.to_json() for r in results])
    else:
        for result in results:
            state = "ok" if result.error is None else f"stopped: {result.error}"
            click.echo(f"{result.url}: sent {result.sent}, waiting {result.waiting} ({state})")
        if not results:
            click.echo("nothing waiting")
    ctx.exit(0 if all(r.error is None for r in results) else 1)
