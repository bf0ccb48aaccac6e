"""`provanchor verify ...`: third-party verification from chain + IPFS (issue 7).

Every subcommand takes its trust base on the command line (`--rpc`,
`--contract`, and `--ipfs` or `--gateway` for blocks, which are never
trusted). On a machine whose data directory holds a network.json, whatever is
not given is taken from it, and the report says which parts came from where
(`trust_base`). No spool is ever read. `--index` names an index used only as
a hint. The exit code is 0 exactly when every check passed; a verification
that could not complete is reported as failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from provanchor.cli.context import app, emit_json, json_option
from provanchor.cli.progress import progress_bar
from provanchor.verify.report import Report, exit_code

_F = TypeVar("_F", bound=Callable[..., Any])


def trust_options(function: _F) -> _F:
    """--rpc, --contract, --ipfs | --gateway, --index: the same trust base for every verify command."""
    options = [
        click.option("--rpc", "rpc_url", metavar="URL", default=None,
                     help="Chain JSON-RPC URL (trusted; default: network.json's, said so in the report)."),
        click.option("--contract", metavar="ADDRESS", default=None,
                     help="Ledger contract address (trusted; default: network.json's)."),
        click.option("--ipfs", "ipfs_api", metavar="API", default=None,
                     help="IPFS RPC API for blocks (untrusted; default: network.json's unless --gateway)."),
        click.option("--gateway", metavar="URL", default=None, help="Trustless IPFS gateway instead of --ipfs."),
        click.option(
            "--index",
            "index_path",
            metavar="PATH",
            type=click.Path(dir_okay=False),
            default=None,
            help="A provanchor index used as a hint only (everything it says is verified).",
        ),
        click.option("--fetch-timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
                     help="Seconds to wait for one block before reporting it not found."),
        json_option,
    ]
    for option in reversed(options):
        function = option(function)
    return function


class _Opened:
    """A verify context with the trust base it was opened from, for the report."""

    def __init__(self, ctx: click.Context, rpc_url: str | None, contract: str | None, ipfs_api: str | None,
                 gateway: str | None, index_path: str | None, fetch_timeout: float) -> None:
        from provanchor.verify.api import VerifyContext
        from provanchor.verify.trust import TrustBase

        self.trust = TrustBase.resolve(app(ctx).home, rpc_url, contract, ipfs_api, gateway)
        self.context = VerifyContext(self.trust.rpc_url, self.trust.contract, ipfs_api=self.trust.ipfs_api,
                                     gateway=self.trust.gateway, index_path=index_path, fetch_timeout=fetch_timeout)

    def __enter__(self) -> Any:
        return self.context

    def __exit__(self, *exc: object) -> None:
        self.context.close()


def open_context(ctx: click.Context, **trust: Any) -> _Opened:
    return _Opened(ctx, **trust)


def finish(ctx: click.Context, report: Report, as_json: bool, opened: _Opened | None = None) -> None:
    """Print the report (with its trust base); exit 0 exactly when every check passed, 1 when one failed,
    3 when nothing failed but a claim is unproven."""
    if opened is not None:
        opened.trust.annotate(report)
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo(report.render())
    ctx.exit(exit_code(report))


@click.group()
def verify() -> None:
    """Verify records, files, agents, locations and runs against the chain, with untrusted IPFS blocks."""


@verify.command("record")
@click.argument("record_id")
@trust_options
@click.pass_context
def record_cmd(ctx: click.Context, /, record_id: str, as_json: bool, **trust: Any) -> None:
    """RECORD_ID (its CID) is authentic, anchored, in sequence, and its content matches."""
    from provanchor.verify.api import parse_record_id, verify_record

    parse_record_id(record_id)  # bad input fails before any connection
    opened = open_context(ctx, **trust)
    with opened as vctx:
        report = verify_record(vctx, record_id)
    finish(ctx, report, as_json, opened)


@verify.command("file")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--location", default=None, help="The file's location URI (default: its path on any host).")
@trust_options
@click.pass_context
def file_cmd(ctx: click.Context, /, path: str, location: str | None, as_json: bool, **trust: Any) -> None:
    """PATH's current content is what the ledger last recorded (if not: when it last matched)."""
    from provanchor.verify.claims import verify_file

    opened = open_context(ctx, **trust)
    with opened as vctx:
        report = verify_file(vctx, path, location)
    finish(ctx, report, as_json, opened)


@verify.command("agent")
@click.argument("address")
@click.option("--with-content", is_flag=True, help="Also fetch every stored content and check its hash.")
@trust_options
@click.pass_context
def agent_cmd(ctx: click.Context, /, address: str, with_content: bool, as_json: bool, **trust: Any) -> None:
    """ADDRESS's whole history is intact: every checkpoint and record, signed and in order."""
    from provanchor.verify.api import verify_agent

    opened = open_context(ctx, **trust)
    with opened as vctx, progress_bar() as progress:
        report = verify_agent(vctx, address, with_content=with_content, progress=progress)
    finish(ctx, report, as_json, opened)


@verify.command("location")
@click.argument("location")
@click.option("--at", "at", required=True, help="The time: ISO 8601 or Unix seconds (inclusive).")
@click.option("--host", default=None,
              help="Host id, when LOCATION is a plain path (default: this machine's, as `replay state`).")
@trust_options
@click.pass_context
def location_cmd(ctx: click.Context, /, location: str, at: str, host: str | None, as_json: bool, **trust: Any) -> None:
    """LOCATION's state at --at, replayed from records verified here, matches the records' hashes."""
    from provanchor.hostid import local_location
    from provanchor.index.timeparse import parse_time
    from provanchor.verify.location import verify_location

    at_ns = parse_time(at)
    uri = local_location(location, host)  # a plain path: --host's, else this machine's (as `replay state`)
    opened = open_context(ctx, **trust)
    with opened as vctx:
        report = verify_location(vctx, uri, at_ns)
    finish(ctx, report, as_json, opened)


@verify.command("run")
@click.argument("run_id")
@trust_options
@click.pass_context
def run_cmd(ctx: click.Context, /, run_id: str, as_json: bool, **trust: Any) -> None:
    """RUN_ID's run record is authentic, its code hash recomputes, every output hash matches."""
    from provanchor.verify.claims import verify_run

    opened = open_context(ctx, **trust)
    with opened as vctx:
        report = verify_run(vctx, run_id)
    finish(ctx, report, as_json, opened)


@verify.command("all")
@click.option("--with-content", is_flag=True, help="Also fetch every stored content and check its hash.")
@trust_options
@click.pass_context
def all_cmd(ctx: click.Context, /, with_content: bool, as_json: bool, **trust: Any) -> None:
    """Every registered agent's whole log."""
    from provanchor.verify.claims import verify_all

    opened = open_context(ctx, **trust)
    with opened as vctx, progress_bar() as progress:
        report = verify_all(vctx, with_content=with_content, progress=progress)
    finish(ctx, report, as_json, opened)


@verify.command("attestation")
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
@trust_options
@click.pass_context
def attestation_cmd(ctx: click.Context, /, path: str, as_json: bool, **trust: Any) -> None:
    """PATH (a DSSE envelope holding an in-toto statement) is signed by the agent that anchored its record,
    and every subject is what that record says."""
    from pathlib import Path

    from provanchor.formats.dsse import Envelope
    from provanchor.verify.attestation import verify_attestation

    data = Path(path).read_bytes()
    Envelope.from_bytes(data)  # bad input fails before any connection
    opened = open_context(ctx, **trust)
    with opened as vctx:
        report = verify_attestation(vctx, data, name=f"attestation {path}")
    finish(ctx, report, as_json, opened)
