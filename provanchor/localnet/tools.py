"""Locate the pinned local-network tools (anvil, Kubo) and pick free ports.

Lookup order is deliberately explicit so `provanchor node up` behaves the same
on a developer machine, in CI and inside an installed wheel:

* anvil: ``$PROVANCHOR_ANVIL``, then the npm-pinned binary under
  ``node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`` (in
  ``$PROVANCHOR_NODE_DIR`` or in this repository's ``node/`` directory), then
  ``anvil`` on ``PATH``.
* IPFS (Kubo, the only daemon): ``$PROVANCHOR_IPFS_BIN``, then the Kubo that
  `make setup` builds from the pinned Go module into ``node/bin/ipfs``, then an
  ``ipfs`` on ``PATH`` -- each used only when it is Kubo at the pinned version
  or newer; an older one is skipped with a note saying why.

An explicit environment variable that points at a missing file, or at an IPFS
older than the pinned Kubo, is an error rather than a silent fall-back, so a
typo never runs a different tool.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provanchor.errors import ToolNotFound

__all__ = [
    "KUBO_VERSION",
    "LOCAL_HOST",
    "LOOPBACK",
    "Host",
    "IpfsTool",
    "ToolNotFound",
    "find_anvil",
    "find_geth",
    "find_go_tool",
    "find_ipfs",
    "free_port",
    "kubo_version_of",
    "port_is_free",
    "repo_root",
    "version_tuple",
]

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Host:
    """Where a local daemon runs: the address it listens on and, for a host of our own, its network namespace.

    The local network runs everything on this machine's loopback (`LOCAL_HOST`). The multi-host
    tests give each member a network namespace joined to the others by veth pairs: its daemons
    listen on the namespace's address and run under ``ip netns exec``, so cutting a link cuts
    them off exactly as a real network partition would. Ports are still picked by the kernel in
    this namespace; a new namespace has every port free, so a number free here is free there.
    """

    address: str = LOOPBACK
    namespace: str | None = None

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run on this host (``ip netns exec`` execs the program: the pid stays the program's)."""
        return ["ip", "netns", "exec", self.namespace, *argv] if self.namespace else list(argv)

    def to_json(self) -> dict[str, str | None]:
        return {"address": self.address, "namespace": self.namespace}

    @classmethod
    def from_json(cls, data: object) -> Host:
        """A recorded host; this machine's loopback for anything unreadable (older data directories)."""
        if not isinstance(data, dict) or not isinstance(data.get("address"), str):
            return LOCAL_HOST
        namespace = data.get("namespace")
        return cls(str(data["address"]), namespace if isinstance(namespace, str) else None)


LOCAL_HOST = Host()

# The Kubo release node/kubo/go.mod pins (a test keeps the two equal).
KUBO_VERSION = "0.43.1"

ANVIL_ENV = "PROVANCHOR_ANVIL"
IPFS_ENV = "PROVANCHOR_IPFS_BIN"
NODE_DIR_ENV = "PROVANCHOR_NODE_DIR"

_ANVIL_IN_NODE_MODULES = Path("@foundry-rs/anvil-linux-amd64/bin/anvil")
_KUBO_HINT = (
    f"run `make setup` (it builds Kubo v{KUBO_VERSION} from the Go module proxy into node/bin/ipfs; "
    f"needs Go >= 1.26), or set {IPFS_ENV} to a Kubo >= {KUBO_VERSION}"
)


@dataclass(frozen=True)
class IpfsTool:
    """The Kubo binary to run, its version, and why other candidates were passed over."""

    path: Path
    version: str
    notes: tuple[str, ...] = field(default=())


def repo_root() -> Path:
    """The source checkout this module lives in (meaningful only in a checkout)."""
    return Path(__file__).resolve().parents[2]


def pinned_kubo_path() -> Path:
    """Where `make setup` builds Kubo: ``node/bin/ipfs`` of this checkout (or of ``$PROVANCHOR_NODE_DIR``)."""
    env = os.environ.get(NODE_DIR_ENV)
    if env:
        base = Path(env).expanduser()
        return (base.parent if base.name == "node_modules" else base) / "bin" / "ipfs"
    return repo_root() / "node" / "bin" / "ipfs"


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


GETH_ENV = "PROVANCHOR_GETH"
GO_TOOLS = ("geth", "ipfs-cluster-service", "ipfs-cluster-ctl")
"""Go programs `make setup` builds from pinned modules into node/bin, beside Kubo."""


def find_go_tool(name: str, env: str | None = None) -> Path:
    """A Go program `make setup` builds into node/bin (geth, the IPFS Cluster tools): env, node/bin, PATH."""
    if env is not None:
        explicit = _from_env(env, name)
        if explicit is not None:
            return explicit
    built = pinned_kubo_path().parent / name
    if _is_executable(built):
        return built
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    hint = f" or set {env}" if env else ""
    raise ToolNotFound(f"{name} not found: run `make setup` (it builds {name} from the Go module proxy){hint}")


def find_geth() -> Path:
    """Path of the geth binary to run; raises `ToolNotFound` with a fix-it hint."""
    return find_go_tool("geth", GETH_ENV)


def version_tuple(version: str) -> tuple[int, ...]:
    """``0.43.1`` -> (0, 43, 1); a suffix such as ``-rc1`` or ``-dev`` is ignored."""
    match = re.match(r"(\d+(?:\.\d+)*)", version.strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def kubo_version_of(path: Path) -> str | None:
    """The version a Kubo binary reports (``ipfs version --number``), or None if it is not Kubo."""
    try:
        done = subprocess.run(
            [str(path), "version", "--number"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            # A repository path that cannot exist: answering this must never read or create one.
            env={**os.environ, "IPFS_PATH": "/nonexistent/provanchor-version-probe"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.strip()
    return text if done.returncode == 0 and version_tuple(text) else None


def find_ipfs() -> IpfsTool:
    """The Kubo to run (pinned version or newer); raises `ToolNotFound` with the fix."""
    wanted = version_tuple(KUBO_VERSION)
    explicit = _from_env(IPFS_ENV, "IPFS")
    if explicit is not None:
        version = kubo_version_of(explicit)
        if version is None or version_tuple(version) < wanted:
            found = f"version {version}" if version else "not Kubo"
            raise ToolNotFound(f"{IPFS_ENV}={explicit} is {found}; provanchor needs Kubo >= {KUBO_VERSION}")
        return IpfsTool(explicit, version)
    notes: list[str] = []
    candidates = [pinned_kubo_path()]
    on_path = shutil.which("ipfs")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if not _is_executable(candidate):
            continue
        version = kubo_version_of(candidate)
        if version is not None and version_tuple(version) >= wanted:
            return IpfsTool(candidate, version, tuple(notes))
        found = f"version {version}" if version else "not Kubo"
        notes.append(f"ignored {candidate} ({found}; provanchor needs Kubo >= {KUBO_VERSION})")
    reason = f" ({'; '.join(notes)})" if notes else ""
    raise ToolNotFound(f"Kubo not found{reason}: {_KUBO_HINT}")


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
