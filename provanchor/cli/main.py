"""Entry point: option parsing, subcommand registration and the error edge.

Every `ProvanchorError` becomes exactly one line on stderr and a non-zero
exit; so do click's usage errors. Anything else is a bug: it is reported in
one line too, with the traceback only when PROVANCHOR_DEBUG is set.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from provanchor import __version__
from provanchor.cli.agent import agent, run
from provanchor.cli.audit import audit
from provanchor.cli.context import AppContext
from provanchor.cli.gov import gov
from provanchor.cli.index import index, lineage, query
from provanchor.cli.ml import ml
from provanchor.cli.node import node
from provanchor.cli.records import anchor, log, record
from provanchor.cli.replay import replay
from provanchor.cli.snapshot import snapshot
from provanchor.cli.verify import verify
from provanchor.errors import ProvanchorError
from provanchor.home import Home


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=str),
    envvar="PROVANCHOR_HOME",
    default=None,
    help="Data directory (default $PROVANCHOR_HOME, else ~/.provanchor).",
)
@click.version_option(__version__, prog_name="provanchor")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """provanchor: signed, anchored provenance for every data change."""
    ctx.obj = AppContext(Home.resolve(home))


cli.add_command(node)
cli.add_command(gov)
cli.add_command(agent)
cli.add_command(record)
cli.add_command(anchor)
cli.add_command(log)
cli.add_command(run)
cli.add_command(index)
cli.add_command(query)
cli.add_command(lineage)
cli.add_command(snapshot)
cli.add_command(replay)
cli.add_command(verify)
cli.add_command(audit)
cli.add_command(ml)


def main(argv: list[str] | None = None) -> None:
    try:
        result = cli.main(args=argv, prog_name="provanchor", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except ProvanchorError as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: still one line, traceback on request
        if os.environ.get("PROVANCHOR_DEBUG"):
            traceback.print_exc()
        click.echo(f"error: internal error ({type(exc).__name__}): {_one_line(str(exc))}", err=True)
        sys.exit(70)
    if isinstance(result, int) and result != 0:
        sys.exit(result)


def _one_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


if __name__ == "__main__":
    main()
