"""Entry point: option parsing, subcommand registration and the error edge.

Every `ProvanchorError` becomes exactly one line on stderr and a non-zero
exit; so do click's usage errors. Anything else is a bug: it is reported in
one line too, with the traceback only when PROVANCHOR_DEBUG is set.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from provanchor import __version__
from provanchor.errors import ProvanchorError

# Every subcommand, by name: (module, attribute, short help). Modules are imported only when their
# command runs (its --help included), so `provanchor --help` and `provanchor query --help` never load
# web3, eth-account or the IPFS client, and start in well under a second. The short help is repeated
# here so that the top-level help needs no import at all; a test keeps it equal to each command's own.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "node": ("provanchor.cli.node", "node", "The local network: anvil, the IPFS daemon and the ledger contract."),
    "gov": ("provanchor.cli.gov", "gov", "Governance: approve agents and governors (m-of-n)."),
    "agent": ("provanchor.cli.agent", "agent", "Agent identity and the capture service."),
    "record": ("provanchor.cli.records", "record", "Record one change as the configured agent."),
    "anchor": ("provanchor.cli.records", "anchor", "Anchor spooled records (with --flush), or show what waits."),
    "log": ("provanchor.cli.records", "log", "List an agent's checkpoints as the chain records them."),
    "run": ("provanchor.cli.agent", "run", "Run COMMAND and record its code, inputs and outputs."),
    "index": ("provanchor.cli.index", "index", "The local index of every anchored record."),
    "query": ("provanchor.cli.index", "query", "Records matching every given filter."),
    "lineage": ("provanchor.cli.index", "lineage", "The lineage graph of a location."),
    "snapshot": ("provanchor.cli.snapshot", "snapshot", "Snapshots of directories, stored on IPFS and anchored."),
    "replay": ("provanchor.cli.replay", "replay", "Rebuild a location at a time, or re-execute a run."),
    "verify": ("provanchor.cli.verify", "verify", "Verify records, files, agents, locations and runs."),
    "audit": ("provanchor.cli.audit", "audit", "Audit bundles an auditor verifies against the chain alone."),
    "ml": ("provanchor.cli.ml", "ml", "ML lifecycle provenance: datasets, training, models, receipts."),
    "export": ("provanchor.cli.interop", "export", "Export as OpenLineage events, W3C PROV or in-toto attestations."),
    "openlineage": ("provanchor.cli.interop", "openlineage", "Receive OpenLineage events as signed, anchored records."),
    "explorer": ("provanchor.cli.explorer", "explorer", "Serve the auditor's read-only web explorer over the ledger."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command = getattr(module, entry[1])
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table: listing commands must not import them."""
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    from provanchor.cli.context import AppContext
    from provanchor.home import Home

    ctx.obj = AppContext(Home.resolve(home))


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
