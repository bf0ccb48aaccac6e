"""`provanchor explorer`: the auditor's web page over the ledger (issue 19)."""

from __future__ import annotations

from pathlib import Path

import click

from provanchor.cli.context import app, progress_note


@click.command()
@click.option("--listen", default="127.0.0.1:8600", show_default=True, help="HOST:PORT to serve on.")
@click.option("--open", "open_browser", is_flag=True, help="Open the search page in a browser.")
@click.option("--token", default=None, envvar="PROVANCHOR_EXPLORER_TOKEN",
              help="Require Authorization: Bearer TOKEN (or /login?token=TOKEN once); needed beyond loopback.")
@click.option("--index", "index_path", type=click.Path(dir_okay=False), default=None,
              help="The index database (default: index.sqlite in the data directory).")
@click.option("--ipfs", "ipfs_api", default=None, help="IPFS RPC API to read blocks from (default: network.json's).")
@click.pass_context
def explorer(
    ctx: click.Context, listen: str, open_browser: bool, token: str | None, index_path: str | None,
    ipfs_api: str | None,
) -> None:
    """Serve the auditor's read-only web explorer over the ledger.

    Pages: search, records with live verification, lineage, agents, runs, and the state of a location at a
    time; each has a JSON twin under /api (OpenAPI at /api/openapi.json).
    """
    from provanchor.explorer.server import build, parse_listen, serve

    host, port = parse_listen(listen, token)
    web, reader, follower = build(app(ctx).home, Path(index_path) if index_path else None, ipfs_api, token)
    url = f"http://{host}:{port}/search"
    progress_note(f"explorer at {url} (read-only; Ctrl-C to stop)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        serve(web, host, port)
    finally:
        follower.stop()
        reader.close()
