"""`provanchor node up | status | down`."""

from __future__ import annotations

import click

from provanchor.cli.context import app, emit_json, emit_pairs, json_option, progress_note


@click.group()
def node() -> None:
    """The local network: anvil, the IPFS daemon and the ledger contract."""


@node.command()
@click.option(
    "--governors",
    "governors",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Number of dev governor keys for a new network.",
)
@click.option(
    "--quorum",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Approvals needed to execute a proposal on a new network.",
)
@click.option("--reset", is_flag=True, help="Discard the chain state and deploy a fresh ledger.")
@click.option(
    "--chain",
    type=click.Choice(["anvil", "geth"]),
    default=None,
    help="The local chain's engine for a new network: anvil (default; a block per transaction) or geth "
    "(dev mode, a block every second).",
)
@click.option(
    "--ipfs-peers",
    type=int,
    default=None,
    metavar="N",
    help="Make the data plane an IPFS Cluster of N members (Kubo + cluster peer each, CRDT consensus).",
)
@click.option(
    "--replication",
    type=int,
    default=None,
    metavar="R",
    help="Members that must hold every pin (default: 2 when there are two or more peers).",
)
@json_option
@click.pass_context
def up(
    ctx: click.Context,
    governors: int,
    quorum: int,
    reset: bool,
    chain: str | None,
    ipfs_peers: int | None,
    replication: int | None,
    as_json: bool,
) -> None:
    """Start (or resume) the chain and IPFS daemon and deploy the ledger once."""
    home = app(ctx).home
    from provanchor.localnet import lifecycle

    result = lifecycle.up(
        home, governors=governors, quorum=quorum, reset=reset, chain=chain, ipfs_peers=ipfs_peers,
        replication=replication,
    )
    d = result.descriptor
    if as_json:
        emit_json(
            {
                **d.to_json(),
                "deployed": result.deployed,
                "started": result.started,
                "notes": result.notes,
                "home": str(home.root),
            }
        )
        return
    for note in result.notes:
        progress_note(f"note: {note}")
    action = "deployed ProvenanceLedger" if result.deployed else "reusing ProvenanceLedger"
    emit_pairs(
        [
            ("network", f"{action} at {d.contract}"),
            ("rpc_url", d.rpc_url),
            ("chain_id", d.chain_id),
            ("ipfs_api", f"{d.ipfs_api} ({d.ipfs_kind})"),
            ("started", result.started or "nothing (already running)"),
            ("descriptor", str(home.network_file)),
        ]
    )


@node.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the network: chain, contract, governors, quorum, IPFS."""
    from provanchor.localnet import lifecycle

    info = lifecycle.status(app(ctx).home)
    if as_json:
        emit_json(info)
        return
    emit_pairs(
        [
            (key, info[key])
            for key in (
                "home",
                "rpc_url",
                "chain_id",
                "block",
                "contract",
                "governors",
                "quorum",
                "agents",
                "proposals",
                "ipfs_api",
                "ipfs_kind",
                "replication",
                "ipfs_version",
                "anvil_running",
                "ipfs_running",
            )
        ]
    )


@node.command()
@json_option
@click.pass_context
def down(ctx: click.Context, as_json: bool) -> None:
    """Stop the daemons `up` started (by pid). State is kept for the next `up`."""
    from provanchor.localnet import lifecycle

    stopped = lifecycle.down(app(ctx).home)
    if as_json:
        emit_json({"stopped": stopped})
    else:
        click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
