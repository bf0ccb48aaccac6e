"""Wiring the explorer for `provanchor explorer`: the network, the index follower, the app, uvicorn."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from provanchor.errors import UsageError
from provanchor.explorer.app import create_app
from provanchor.explorer.follower import Follower
from provanchor.explorer.reader import Explorer
from provanchor.home import Home
from provanchor.index.fresh import default_index_path
from provanchor.network import load_network

__all__ = ["LOOPBACK", "build", "parse_listen", "serve"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_listen(listen: str, token: str | None) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen is HOST:PORT, got {listen!r:.60}")
    if host not in LOOPBACK and not token:
        raise UsageError(f"listening on {host} (beyond loopback) needs --token")
    return host, int(port)


def build(
    home: Home, index_path: Path | None = None, ipfs_api: str | None = None, token: str | None = None,
    follow_interval: float = 2.0,
) -> tuple[FastAPI, Explorer, Follower]:
    """The app over `home`'s network; the index is synced once before this returns, then followed."""
    network = load_network(home)
    path = index_path or default_index_path(home)
    follower = Follower(network, path, interval=follow_interval)
    follower.sync_once()
    follower.start()
    explorer = Explorer(home, network, path, ipfs_api=ipfs_api)
    return create_app(explorer, follower, token=token), explorer, follower


def serve(app: FastAPI, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
