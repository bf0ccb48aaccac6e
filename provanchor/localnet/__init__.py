"""The local network behind `provanchor node up`: an anvil chain and an IPFS daemon in the home dir."""

from __future__ import annotations

from provanchor.localnet.processes import AnvilService, DaemonStartError, IpfsService, ManagedDaemon
from provanchor.localnet.tools import (
    IpfsTool,
    ToolNotFound,
    find_anvil,
    find_ipfs,
    free_port,
    port_is_free,
)

__all__ = [
    "AnvilService",
    "DaemonStartError",
    "IpfsService",
    "IpfsTool",
    "ManagedDaemon",
    "ToolNotFound",
    "find_anvil",
    "find_ipfs",
    "free_port",
    "port_is_free",
]
