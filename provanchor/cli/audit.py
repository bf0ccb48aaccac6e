"""`provanchor audit export | verify`: self-contained audit bundles (issue 7).

`export` is run by whoever holds the data (it reads the chain and IPFS, by
default those of the data directory's network.json); `verify` is run by the
auditor, with the chain as the only trust base and no IPFS at all.
"""

from __future__ import annotations

import click

from provanchor.cli.context import app, emit_json, emit_pairs, json_option
from provanchor.cli.progress import progress_bar
from provanchor.cli.verify import finish


@click.group()
def audit() -> None:
    """Audit bundles: CAR files an auditor verifies against the chain with no IPFS."""


@audit.command("export")
@click.option("--agent", required=True, metavar="ADDRESS", help="The agent whose records to bundle.")
@click.option("--location", default=None, help="Only records of this location (a URI, or a path on any host).")
@click.option("--since", default=None, help="Only records at or after this time (ISO 8601 or Unix seconds).")
@click.option("--until", default=None, help="Only records at or before this time (ISO 8601 or Unix seconds).")
@click.option("--with-content", is_flag=True, help="Also bundle the selected records' contents.")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="The CAR file.")
@click.option("--rpc", "rpc_url", default=None, metavar="URL", help="Chain JSON-RPC (default: network.json).")
@click.option("--contract", default=None, metavar="ADDRESS", help="Ledger contract (default: network.json).")
@click.option("--ipfs", "ipfs_api", default=None, metavar="API", help="IPFS RPC API (default: network.json).")
@json_option
@click.pass_context
def export_cmd(
    ctx: click.Context,
    agent: str,
    location: str | None,
    since: str | None,
    until: str | None,
    with_content: bool,
    output: str,
    rpc_url: str | None,
    contract: str | None,
    ipfs_api: str | None,
    as_json: bool,
) -> None:
    """Write a CAR with the agent's records, manifests and proofs (and contents, when asked)."""
    from provanchor.verify.bundle import export_bundle_file, selection_from_options
    from provanchor.verify.trust import TrustBase

    trust = TrustBase.resolve(app(ctx).home, rpc_url, contract, ipfs_api)
    selection = selection_from_options(location, since, until, with_content)
    with progress_bar() as progress:
        summary = export_bundle_file(trust, agent, selection, output, progress)
    if as_json:
        emit_json(summary.to_json())
    else:
        emit_pairs(list(summary.to_json().items()))


@audit.command("verify")
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--rpc", "rpc_url", default=None, metavar="URL",
              help="Chain JSON-RPC URL (trusted; default: network.json's, said so in the report).")
@click.option("--contract", default=None, metavar="ADDRESS",
              help="Ledger contract address (trusted; default: network.json's).")
@click.option("--ipfs", "ipfs_api", default=None, metavar="API",
              help="Optional, for a selective bundle: read the records it leaves out to prove none matches.")
@json_option
@click.pass_context
def verify_cmd(
    ctx: click.Context, bundle: str, rpc_url: str | None, contract: str | None, ipfs_api: str | None, as_json: bool
) -> None:
    """Verify BUNDLE against the roots on the chain (no IPFS needed, except to prove a selection complete)."""
    from provanchor.ipfs.sources import IpfsSource
    from provanchor.verify.bundle import verify_bundle
    from provanchor.verify.log import Chain
    from provanchor.verify.trust import TrustBase

    trust = TrustBase.resolve(app(ctx).home, rpc_url, contract, ipfs_api, needs_blocks=False)
    source = IpfsSource(ipfs_api) if ipfs_api is not None else None
    try:
        report = verify_bundle(Chain(trust.rpc_url, trust.contract), bundle, ipfs=source)
    finally:
        if source is not None:
            source.close()
    finish(ctx, trust.annotate(report), as_json)
