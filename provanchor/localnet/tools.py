"""Locate the pinned local-network tools (anvil, an IPFS daemon) and pick free ports.

Lookup order is deliberately explicit so `provanchor node up` behaves the same
on a developer machine, in CI and inside an installed wheel:

* anvil: ``$PROVANCHOR_ANVIL``, then the npm-pinned binary under
  ``node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`` (in
  ``$PROVANCHOR_NODE_DIR`` or in this repository's ``node/`` directory), then
  ``anvil`` on ``PATH``.
* IPFS: ``$PROVANCHOR_IPFS_BIN``, then a Kubo ``ipfs`` on ``PATH``, then the
  npm-pinned ``jsipfs``.

An explicit environment variable that points at a missing file is an error
rather than a silent fall-back, so a typo never runs a different tool.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from provanchor.errors import ToolNotFound

__all__ = [
    "LOOPBACK",
    "IpfsKind",
    "IpfsTool",
    "ToolNotFound",
    "find_anvil",
    "find_ipfs",
    "free_port",
    "port_is_free",
    "repo_root",
]

IpfsKind = Literal["kubo", "js-ipfs"]

LOOPBACK = "127.0.0.1"

ANVIL_ENV = "PROVANCHOR_ANVIL"
IPFS_ENV = "PROVANCHOR_IPFS_BIN"
NODE_DIR_ENV = "PROVANCHOR_NODE_DIR"

_ANVIL_IN_NODE_MODULES = Path("@foundry-rs/anvil-linux-amd64/bin/anvil")
_JSIPFS_IN_NODE_MODULES = Path(".bin/jsipfs")


@dataclass(frozen=True)
class IpfsTool:
    """An IPFS implementation found on this machine."""

    kind: IpfsKind
    path: Path


def repo_root() -> Path:
    """The source checkout this module lives in (meaningful only in a checkout)."""
    return Path(__file__).resolve().parents[2]


def _node_modules_dirs() -> Iterator[Path]:
    """Candidate ``node_modules`` directories: ``$PROVANCHOR_NODE_DIR`` first, then the repo's."""
    env = os.environ.get(NODE_DIR_ENV)
    if env:
        base = Path(env).expanduser()
        yield base if base.name == "node_modules" else base / "node_modules"
    yield repo_root() / "node" / "node_modules"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _from_env(var: str, what: str) -> Path | None:
    value = os.environ.get(var)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        found = shutil.which(value)
        if found:
            return Path(found)
    if not _is_executable(path):
        raise ToolNotFound(f"{what} not found: {var}={value} is not an executable file")
    return path


def find_anvil() -> Path:
    """Path of the anvil binary to run; raises `ToolNotFound` with a fix-it hint."""
    explicit = _from_env(ANVIL_ENV, "anvil")
    if explicit is not None:
        return explicit
    for node_modules in _node_modules_dirs():
        candidate = node_modules / _ANVIL_IN_NODE_MODULES
        if _is_executable(candidate):
            return candidate
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    raise ToolNotFound(f"anvil not found: run `make setup` (npm ci in node/) or set {ANVIL_ENV}")


def _guess_kind(path: Path) -> IpfsKind:
    """js-ipfs if the name says so or the file lives in a node_modules tree, else Kubo."""
    if "jsipfs" in path.name:
        return "js-ipfs"
    try:
        resolved = path.resolve()
    except OSError:
        return "kubo"
    if "node_modules" in resolved.parts or resolved.suffix in {".js", ".mjs", ".cjs"}:
        return "js-ipfs"
    return "kubo"


def _pinned_jsipfs() -> Path | None:
    for node_modules in _node_modules_dirs():
        candidate = node_modules / _JSIPFS_IN_NODE_MODULES
        if candidate.exists() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_ipfs(prefer: IpfsKind | None = None) -> IpfsTool:
    """The IPFS implementation to run; raises `ToolNotFound` with a fix-it hint.

    ``prefer`` restricts the search to one kind (used when an existing repository
    was created by that implementation); the environment override always wins.
    """
    explicit = _from_env(IPFS_ENV, "IPFS")
    if explicit is not None:
        return IpfsTool(kind=_guess_kind(explicit), path=explicit)
    if prefer in (None, "kubo"):
        on_path = shutil.which("ipfs")
        if on_path:
            path = Path(on_path)
            kind = _guess_kind(path)
            if prefer is None or kind == prefer:
                return IpfsTool(kind=kind, path=path)
    if prefer in (None, "js-ipfs"):
        pinned = _pinned_jsipfs()
        if pinned is not None:
            return IpfsTool(kind="js-ipfs", path=pinned)
    if prefer == "kubo":
        raise ToolNotFound(
            f"Kubo `ipfs` not found (this IPFS repository was created by Kubo): install it or set {IPFS_ENV}"
        )
    raise ToolNotFound(f"IPFS not found: run `make setup` (npm ci in node/) or set {IPFS_ENV}")


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could bind ``host:port`` now.

    SO_REUSEADDR mirrors what anvil and node set on their listeners, so a port
    whose only sockets are in TIME_WAIT (right after a daemon stopped) counts as free.
    """
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
