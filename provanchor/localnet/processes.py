"""Background daemons of the local network: an anvil chain and an IPFS node.

Both live entirely inside a provanchor home directory::

    home/
      chain/state.json      anvil state (rewritten every second, and on SIGTERM/SIGINT)
      chain/state.json.bak  copy taken at each start (recovery from a torn write)
      chain/cache/          anvil's --cache-path (stays empty with --prune-history)
      chain/ports.json      {"port": N}: the RPC port, reused on the next start
      ipfs/repo/            the Kubo repository
      ipfs/daemon.json      {"kind": ..., "api_port": N, "gateway_port": M}
      logs/anvil.log, logs/ipfs.log
      run/anvil.pid, run/ipfs.pid, run/*.lock

The daemons are started detached (own session, stdin closed, output to the log)
so they outlive the CLI command that started them; every later command finds
them again through the pid file. A pid file only counts when the pid is alive
*and* its ``/proc/PID/cmdline`` still names the expected program, so a stale pid
file after a reboot (pid reused by something else) is never mistaken for a
running daemon and is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from provanchor.errors import ConfigError, DaemonStartError
from provanchor.localnet.tools import (
    LOCAL_HOST,
    LOOPBACK,
    Host,
    IpfsTool,
    find_anvil,
    find_ipfs,
    free_port,
    port_is_free,
)

__all__ = [
    "ANVIL_CHAIN_ID",
    "ANVIL_PRUNE_HISTORY",
    "ANVIL_STATE_INTERVAL",
    "AnvilService",
    "DaemonStartError",
    "IpfsService",
    "ManagedDaemon",
]

log = logging.getLogger(__name__)

ANVIL_CHAIN_ID = 31337
# Kubo's datastore for a new local repository: flatfs (blocks, one file each) + leveldb, Kubo's
# default. Measured here: pebbleds imports ~1 KB record blocks 1.7-2.5x faster (16-23k against 9-10k
# blocks/s), but 1.1 MB files 3x slower (3.6 s against 1.2 s for 220 MB) and serves them no faster;
# the pipeline is bound by signing and spooling, not by the record import, so the reference layout
# stays. Durability does not rest on the datastore either way: the anchorer syncfs()es the
# repository before anchoring a batch (IpfsClient.persist). Fixed at init.
DATASTORE_PROFILE = "flatfs"
#: Seconds between anvil's state dumps: a SIGKILL loses at most this much chain history.
ANVIL_STATE_INTERVAL = 1
#: Recent block states anvil keeps in memory for historical queries (``eth_call`` at block N).
ANVIL_PRUNE_HISTORY = 64
ANVIL_ACCOUNTS = 10

_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_POLL = 0.05

# Popen objects of daemons started by this Python process, kept so they are
# reaped (no zombies, no "still running" ResourceWarning at garbage collection).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_EXIT_CODES: dict[int, int] = {}

_RUN_MARK = "=== provanchor"


# ---------------------------------------------------------------------------
# process helpers
# ---------------------------------------------------------------------------


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is an exited child of this process; harmless otherwise."""
    child = _CHILDREN.get(pid)
    if child is not None:
        code = child.poll()
        if code is not None:
            del _CHILDREN[pid]  # a later, unrelated process may get this pid
            _EXIT_CODES[pid] = code
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    # Format: "pid (comm) S ..."; comm may contain spaces/parentheses, so split at the last ')'.
    state = stat.rpartition(")")[2].split()
    return not (state and state[0] in {"Z", "X"})


def _cmdline(pid: int) -> list[str] | None:
    """argv of ``pid`` from procfs (None where procfs is unavailable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return [] if Path("/proc/self/cmdline").exists() else None
    except OSError:
        return None
    return [part.decode(errors="replace").strip() for part in raw.split(b"\0") if part.strip()]


def _cmdline_matches(pid: int, markers: Sequence[str]) -> bool:
    """Whether one of the first program-ish arguments of ``pid`` contains one of ``markers``.

    The first three arguments cover ``/path/anvil ...`` and ``/path/ipfs daemon``.
    """
    argv = _cmdline(pid)
    if argv is None:
        return True  # cannot check on this platform; liveness has to do
    for arg in argv[:3]:
        name = os.path.basename(arg.split(" ")[0])
        if any(marker in name for marker in markers):
            return True
    return False


def _tail(path: Path, lines: int = 8) -> str:
    """The last ``lines`` non-empty lines of a log, joined on one line."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    # Only the latest run's output: everything after the last marker written by `_spawn`.
    text = text.rpartition(_RUN_MARK)[2].partition("\n")[2] if _RUN_MARK in text else text
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"


def _atomic_write(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(data)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file the local network keeps (ports, state); {} when absent or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def post_json(url: str, payload: bytes | None, timeout: float) -> Any:
    """One JSON POST to a local daemon (a chain's JSON-RPC, Kubo's RPC API)."""
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    request = urllib.request.Request(url, data=payload or b"", headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _choose_port(explicit: int | None, previous: int | None, what: str, avoid: int | None = None) -> int:
    """Explicit port (must be free), else the previous one if still free, else a new free one."""
    if explicit is not None:
        if not port_is_free(explicit):
            raise DaemonStartError(f"cannot start {what}: port {explicit} on {LOOPBACK} is already in use")
        return explicit
    if previous and previous != avoid and port_is_free(previous):
        return previous
    while True:
        port = free_port()
        if port != avoid:
            return port


# ---------------------------------------------------------------------------
# base: one managed background daemon
# ---------------------------------------------------------------------------


class ManagedDaemon:
    """A detached background process tracked by a pid file inside the home directory."""

    def __init__(self, name: str, home: Path, markers: Sequence[str], host: Host | None = None) -> None:
        """``host``: where to start the daemon; None starts it where it last ran (this machine's loopback
        the first time), so every later command finds a daemon on a host of our own at its address."""
        self.name = name
        self.home = Path(home).expanduser()
        self.log_file = self.home / "logs" / f"{name}.log"
        self.pid_file = self.home / "run" / f"{name}.pid"
        self.host_file = self.home / "run" / f"{name}.host.json"
        self._lock_file = self.home / "run" / f"{name}.lock"
        self._markers = tuple(markers)
        self._host = host

    @property
    def host(self) -> Host:
        """The host given to this object, else the one the daemon was last started on."""
        if self._host is not None:
            return self._host
        return Host.from_json(read_json(self.host_file)) if self.host_file.exists() else LOCAL_HOST

    # -- inspection ---------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Pid of the running daemon, or None (a stale pid file does not count)."""
        try:
            fields = self.pid_file.read_text().split()
            pid = int(fields[0])
        except (OSError, ValueError, IndexError):
            return None
        # Second field: the program name recorded at spawn (covers renamed binaries).
        markers = (*self._markers, *fields[1:2])
        if pid <= 0 or not _pid_alive(pid) or not _cmdline_matches(pid, markers):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid is not None

    def log_tail(self, lines: int = 8) -> str:
        return _tail(self.log_file, lines)

    # -- control ------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise start/stop of this daemon across processes sharing the home directory."""
        self._lock_file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _rotate_log(self) -> None:
        with contextlib.suppress(OSError):
            if self.log_file.stat().st_size > _LOG_ROTATE_BYTES:
                os.replace(self.log_file, self.log_file.with_name(self.log_file.name + ".1"))

    def _spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
        """Start ``argv`` detached, output appended to the log, and record its pid."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._rotate_log()
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        host = self.host
        _atomic_write(self.host_file, json.dumps(host.to_json()) + "\n")
        with self.log_file.open("ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            out.write(f"\n{_RUN_MARK} {stamp} starting: {' '.join(host.wrap(argv))}\n".encode())
            out.flush()
            try:
                child = subprocess.Popen(
                    host.wrap(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=full_env,
                    cwd=self.home,
                    close_fds=True,
                )
            except OSError as exc:
                raise DaemonStartError(f"cannot start {self.name}: {argv[0]}: {exc.strerror}") from exc
        _CHILDREN[child.pid] = child
        _atomic_write(self.pid_file, f"{child.pid} {os.path.basename(argv[0])}\n")
        return child.pid

    def _wait_ready(self, pid: int, probe: Callable[[], bool], timeout: float) -> None:
        """Poll ``probe`` until it succeeds; raise `DaemonStartError` if ``pid`` dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not _pid_alive(pid):
                code = _EXIT_CODES.pop(pid, None)
                self._forget(pid)
                status = f" (exit code {code})" if code is not None else ""
                raise DaemonStartError(
                    f"{self.name} exited while starting{status}; log {self.log_file}: {self.log_tail()}"
                )
            if probe() and _pid_alive(pid):
                return
            if time.monotonic() >= deadline:
                self._kill(pid, timeout=5)
                raise DaemonStartError(
                    f"{self.name} did not become ready within {timeout:.0f}s; log {self.log_file}: {self.log_tail()}"
                )
            time.sleep(_POLL)

    def _forget(self, pid: int | None = None) -> None:
        """Remove the pid file (only if it still names ``pid``, when given)."""
        try:
            if pid is not None and self.pid_file.read_text().split()[0] != str(pid):
                return
            self.pid_file.unlink()
        except (OSError, IndexError):
            pass

    def _kill(self, pid: int, timeout: float) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL the daemon's process group."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(_POLL)
        if _pid_alive(pid):
            log.warning("%s (pid %d) ignored SIGTERM for %.0fs; killing it", self.name, pid, timeout)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < kill_deadline:
                time.sleep(_POLL)
        _reap(pid)
        self._forget(pid)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the daemon (SIGTERM, then SIGKILL after ``timeout``). Returns whether one was running."""
        with self._exclusive():
            pid = self.pid
            if pid is None:
                self._forget()
                return False
            self._kill(pid, timeout)
            return True


# ---------------------------------------------------------------------------
# anvil
# ---------------------------------------------------------------------------


class AnvilService(ManagedDaemon):
    """A persistent local anvil chain (chain id 31337, automine) inside ``home``.

    Flags and why:

    * ``--state home/chain/state.json --state-interval 1``: ``--state`` loads the
      file at start and dumps it on SIGTERM/SIGINT; the interval additionally
      rewrites it every second, so after a SIGKILL at most the last ~1 s of blocks
      is lost (without an interval a SIGKILL loses *everything* since the start).
      Blocks, transactions, receipts and logs are part of the dump and survive.
    * ``--prune-history 64``: keep the 64 most recent block states in memory (so
      ``eth_call``/``eth_getBalance`` at a recent block work while running) and
      never persist per-block state snapshots to disk. Without it anvil moves
      older states into its cache directory, one JSON file per block holding the
      whole state (~50 KB for an empty chain, 1-2 MB with real contracts); a
      SIGKILLed anvil never cleans them up. (Measured: 592 files after 800 blocks.)
    * ``--cache-path home/chain/cache``: so that anything anvil would still write
      lands inside the home directory and never in ``~/.foundry/anvil/tmp``; stale
      ``anvil-state-*`` directories left by a killed anvil are removed at start.
    * No ``--preserve-historical-states``: it serialises every kept historical
      state into state.json, which anvil rewrites in full every second (measured:
      54 MB after 800 blocks without pruning). The price: after a restart, state
      queries at blocks before the restart fail (``BlockOutOfRangeError``); read
      history from logs/receipts, which do persist.

    anvil rewrites state.json in place (``O_TRUNC``), so a SIGKILL during a dump can
    leave it truncated; anvil then refuses to start. `start` detects that and
    restores ``state.json.bak``, the copy taken at the previous successful start.
    """

    def __init__(self, home: Path, host: Host | None = None) -> None:
        super().__init__("anvil", home, markers=("anvil",), host=host)
        self.chain_dir = self.home / "chain"
        self.state_file = self.chain_dir / "state.json"
        self.state_backup = self.chain_dir / "state.json.bak"
        self.cache_dir = self.chain_dir / "cache"
        self.ports_file = self.chain_dir / "ports.json"

    @property
    def port(self) -> int | None:
        """The port of the running chain (None if not running)."""
        if not self.is_running():
            return None
        port = read_json(self.ports_file).get("port")
        return port if isinstance(port, int) else None

    @property
    def rpc_url(self) -> str | None:
        port = self.port
        return f"http://{self.host.address}:{port}" if port is not None else None

    def start(self, port: int | None = None, timeout: float = 30.0) -> str:
        """Start the chain (or find it running) and return its JSON-RPC URL.

        ``port`` is used only when a new anvil has to be started; otherwise the
        previous port is reused if free, else a free one is picked.
        """
        with self._exclusive():
            url = self.rpc_url
            if url is not None:
                return url
            self._forget()
            self.chain_dir.mkdir(parents=True, exist_ok=True)
            self._prepare_state()
            self._clean_cache()
            previous = read_json(self.ports_file).get("port")
            attempts = 1 if port is not None else 3
            for attempt in range(attempts):
                chosen = _choose_port(port, previous if isinstance(previous, int) else None, "anvil")
                try:
                    return self._launch(chosen, timeout)
                except DaemonStartError:
                    if attempt + 1 >= attempts or port_is_free(chosen):
                        raise
                    previous = None  # lost a race for the port: pick another one
            raise AssertionError("unreachable")

    def _argv(self, port: int) -> list[str]:
        return [
            str(find_anvil()),
            "--host", self.host.address,
            "--port", str(port),
            "--chain-id", str(ANVIL_CHAIN_ID),
            "--accounts", str(ANVIL_ACCOUNTS),
            "--state", str(self.state_file),
            "--state-interval", str(ANVIL_STATE_INTERVAL),
            "--prune-history", str(ANVIL_PRUNE_HISTORY),
            "--cache-path", str(self.cache_dir),
        ]  # fmt: skip

    def _launch(self, port: int, timeout: float) -> str:
        argv = self._argv(port)
        url = f"http://{self.host.address}:{port}"
        # Recorded before the spawn so a running anvil always has a known port.
        _atomic_write(self.ports_file, json.dumps({"port": port}) + "\n")
        pid = self._spawn(argv)
        self._wait_ready(pid, lambda: self._answers(url), timeout)
        return url

    @staticmethod
    def _answers(url: str) -> bool:
        payload = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
        try:
            reply = post_json(url, payload, timeout=1.0)
        except (OSError, ValueError, http.client.HTTPException):
            return False
        return isinstance(reply, dict) and "result" in reply

    def _prepare_state(self) -> None:
        """Make sure anvil can load state.json: back it up if valid, restore the backup if torn."""
        if not self.state_file.exists():
            return
        if _valid_state(self.state_file):
            tmp = self.state_backup.with_name(f".{self.state_backup.name}.tmp")
            shutil.copyfile(self.state_file, tmp)
            os.replace(tmp, self.state_backup)
            return
        if not _valid_state(self.state_backup):
            raise DaemonStartError(
                f"chain state {self.state_file} is corrupt (anvil killed while writing it?) and there is "
                "no usable backup: move it away to start a fresh chain"
            )
        corrupt = self.state_file.with_name(f"state.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.json")
        os.replace(self.state_file, corrupt)
        shutil.copyfile(self.state_backup, self.state_file)
        message = (
            f"chain state {self.state_file} was corrupt (kept as {corrupt.name}); restored the copy "
            "taken at the previous start: blocks mined since then are lost"
        )
        log.warning("%s", message)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("a") as out:
            out.write(f"provanchor: {message}\n")

    def _clean_cache(self) -> None:
        """Remove per-run snapshot directories a killed anvil left in the cache dir."""
        if not self.cache_dir.is_dir():
            return
        for entry in self.cache_dir.glob("anvil-state-*"):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)


def _valid_state(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "block" in data


# ---------------------------------------------------------------------------
# IPFS
# ---------------------------------------------------------------------------


class IpfsService(ManagedDaemon):
    """An offline Kubo daemon on loopback with its repo in ``home/ipfs/repo``.

    Kubo is the only IPFS daemon (the pinned build from `make setup`, or a
    newer one; see `find_ipfs`). The repository is created once with the
    `test` profile (loopback addresses, no bootstrap peers, no mDNS) and the
    daemon always runs `--offline`: the local network never dials out.

    Storage: `DATASTORE_PROFILE` (flatfs, see there). Neither it nor
    pebbleds syncs each write (flatfs with `sync: true` imports
    7,000 instead of 22,000 1 KB blocks/s here); provanchor makes its own
    durability point instead: the anchorer calls `syncfs(2)` on the
    repository's filesystem after a batch is imported and before its
    checkpoint is anchored (`IpfsClient.persist`), so a block the ledger
    references survives a power cut once its batch is anchored.

    A SIGKILLed daemon leaves ``repo/api`` behind (the repo lock itself is
    released by the kernel); `start` removes a stale ``api`` file when nothing
    answers at it, and refuses when another daemon does.
    """

    def __init__(
        self,
        home: Path,
        name: str = "ipfs",
        ipfs_dir: Path | None = None,
        online: bool = False,
        host: Host | None = None,
    ) -> None:
        """`online` (an IPFS Cluster member): the daemon listens on a fixed swarm port of its host and
        exchanges blocks with the nodes it is connected to; otherwise it runs `--offline`."""
        super().__init__(name, home, markers=("ipfs",), host=host)
        self.ipfs_dir = ipfs_dir if ipfs_dir is not None else self.home / "ipfs"
        self.repo = self.ipfs_dir / "repo"
        self.state_file = self.ipfs_dir / "daemon.json"
        self.online = online
        self.notes: list[str] = []

    @property
    def swarm_port(self) -> int | None:
        port = read_json(self.state_file).get("swarm_port")
        return port if isinstance(port, int) else None

    @property
    def swarm_multiaddr(self) -> str | None:
        """``/ip4/ADDRESS/tcp/PORT/p2p/ID``: where the other cluster members' nodes dial this one."""
        port, peer = self.swarm_port, self.peer_id
        return f"/ip4/{self.host.address}/tcp/{port}/p2p/{peer}" if port is not None and peer else None

    @property
    def peer_id(self) -> str | None:
        identity = read_json(self.repo / "config").get("Identity")
        value = identity.get("PeerID") if isinstance(identity, dict) else None
        return value if isinstance(value, str) else None

    # -- inspection ---------------------------------------------------------

    @property
    def kind(self) -> str:
        return "kubo"

    @property
    def api_port(self) -> int | None:
        if not self.is_running():
            return None
        port = read_json(self.state_file).get("api_port")
        return port if isinstance(port, int) else None

    @property
    def api_multiaddr(self) -> str | None:
        """``/ip4/127.0.0.1/tcp/PORT`` of the running daemon's RPC API, else None."""
        port = self.api_port
        return f"/ip4/{self.host.address}/tcp/{port}" if port is not None else None

    @property
    def api_url(self) -> str | None:
        """``http://127.0.0.1:PORT`` of the running daemon's RPC API, else None."""
        port = self.api_port
        return f"http://{self.host.address}:{port}" if port is not None else None

    @property
    def gateway_url(self) -> str | None:
        if not self.is_running():
            return None
        port = read_json(self.state_file).get("gateway_port")
        return f"http://{self.host.address}:{port}" if isinstance(port, int) else None

    @property
    def version(self) -> str | None:
        """The Kubo version this repository was last started with."""
        value = read_json(self.state_file).get("version")
        return value if isinstance(value, str) else None

    # -- control ------------------------------------------------------------

    def start(self, api_port: int | None = None, timeout: float = 60.0) -> str:
        """Start the daemon (or find it running) and return its API multiaddr."""
        with self._exclusive():
            running = self.api_multiaddr
            if running is not None:
                return running
            self._forget()
            tool = find_ipfs()
            self.notes = list(tool.notes)
            self._ensure_repo(tool)
            self._clear_stale_api()
            attempts = 1 if api_port is not None else 3
            for attempt in range(attempts):
                api, gateway = self._choose_ports(api_port, fresh=attempt > 0)
                try:
                    return self._launch(tool, api, gateway, timeout)
                except DaemonStartError:
                    if attempt + 1 >= attempts or (port_is_free(api) and port_is_free(gateway)):
                        raise
            raise AssertionError("unreachable")

    def _env(self) -> dict[str, str]:
        return {"IPFS_PATH": str(self.repo)}

    def _run(self, tool: IpfsTool, args: Sequence[str], what: str) -> None:
        """Run a short ipfs CLI command against the repo; `DaemonStartError` on failure."""
        try:
            done = subprocess.run(
                [str(tool.path), *args],
                env={**os.environ, **self._env()},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DaemonStartError(f"cannot {what} with {tool.path}: {exc}") from exc
        if done.returncode != 0:
            output = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            detail = " | ".join(output[-5:]) if output else f"exit code {done.returncode}"
            raise DaemonStartError(f"cannot {what} with {tool.path}: {detail}")

    def _ensure_repo(self, tool: IpfsTool) -> None:
        if (self.repo / "config").exists():
            if read_json(self.state_file).get("kind") not in (None, "kubo"):
                raise ConfigError(
                    f"the IPFS repository {self.repo} was made by another IPFS implementation: provanchor now "
                    f"runs Kubo only; move it away (its blocks can be moved with `ipfs dag export/import`) or "
                    f"run `provanchor node up --reset`"
                )
            return
        if self.repo.exists():
            # A half-created repository (init interrupted): unusable without its config; keep it aside.
            os.replace(self.repo, self.repo.with_name(f"repo.broken-{time.strftime('%Y%m%d-%H%M%S')}"))
        self.ipfs_dir.mkdir(parents=True, exist_ok=True)
        self._run(
            tool,
            ["init", "--profile", f"test,{DATASTORE_PROFILE}", "--empty-repo"],
            f"initialise the IPFS repository {self.repo}",
        )
        self._record(kind="kubo")

    def _record(self, **values: object) -> None:
        data = read_json(self.state_file)
        data.update(values)
        _atomic_write(self.state_file, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def _clear_stale_api(self) -> None:
        """Remove the ``api`` file a killed daemon left (Kubo's repo.lock is an flock, gone with it)."""
        api_file = self.repo / "api"
        if api_file.exists():
            address = api_file.read_text().strip()
            if _api_answers(_multiaddr_to_url(address)):
                raise DaemonStartError(
                    f"an IPFS daemon not started by provanchor is using {self.repo} (API {address}): stop it first"
                )
        api_file.unlink(missing_ok=True)

    def _previous_ports(self) -> tuple[int | None, int | None]:
        addresses = read_json(self.repo / "config").get("Addresses")
        if not isinstance(addresses, dict):
            return None, None
        return _multiaddr_port(addresses.get("API")), _multiaddr_port(addresses.get("Gateway"))

    def _choose_ports(self, api_port: int | None, fresh: bool) -> tuple[int, int]:
        previous_api, previous_gateway = (None, None) if fresh else self._previous_ports()
        for port in (api_port, previous_api):
            # Another IPFS daemon on the port this network's clients use would take their blocks:
            # say so rather than quietly moving (any other process there: a new port is chosen).
            if port is not None and not port_is_free(port):
                foreign = _daemon_version(f"http://{self.host.address}:{port}")
                if foreign is not None:
                    raise DaemonStartError(
                        f"port {port}, this network's IPFS API, is taken by another IPFS daemon (version "
                        f"{foreign}), not provanchor's Kubo: stop that daemon, then run `provanchor node up` again"
                    )
        api = _choose_port(api_port, previous_api, "the IPFS daemon")
        gateway = _choose_port(None, previous_gateway, "the IPFS gateway", avoid=api)
        return api, gateway

    def _configure(self, tool: IpfsTool, api: int, gateway: int) -> None:
        """Loopback addresses only (the daemon runs offline and never dials out anyway)."""
        config_path = self.repo / "config"
        config = read_json(config_path)
        if not config:
            raise ConfigError(f"IPFS repository config {config_path} is unreadable: remove {self.repo}")
        addresses = config.setdefault("Addresses", {})
        swarm = 0
        if self.online:  # cluster members dial each other on this port: keep it across restarts
            previous = self.swarm_port
            swarm = previous if previous is not None and port_is_free(previous) else free_port()
            self._record(swarm_port=swarm)
        address = self.host.address
        addresses.update(
            API=f"/ip4/{address}/tcp/{api}",
            Gateway=f"/ip4/{address}/tcp/{gateway}",
            Swarm=[f"/ip4/{address}/tcp/{swarm}"],
            Announce=[],
            NoAnnounce=[],
        )
        config["Bootstrap"] = []
        if self.online:  # no DHT: blocks move by bitswap between the nodes the cluster connects
            config.setdefault("Routing", {})["Type"] = "none"
        _atomic_write(config_path, json.dumps(config, indent=2) + "\n")

    def _launch(self, tool: IpfsTool, api: int, gateway: int, timeout: float) -> str:
        self._configure(tool, api, gateway)
        argv = [str(tool.path), "daemon"] if self.online else [str(tool.path), "daemon", "--offline"]
        self._record(kind="kubo", version=tool.version, binary=str(tool.path), api_port=api, gateway_port=gateway)
        pid = self._spawn(argv, env=self._env())
        url = f"http://{self.host.address}:{api}"
        self._wait_ready(pid, lambda: _api_answers(url), timeout)
        running = _daemon_version(url)
        if running is not None and running != tool.version:  # someone else's daemon answered on our port
            raise DaemonStartError(
                f"the IPFS API at {url} answers as version {running}, not the Kubo {tool.version} just started: "
                f"another daemon holds the port; stop it"
            )
        return f"/ip4/{self.host.address}/tcp/{api}"


def _multiaddr_port(value: object) -> int | None:
    """TCP port of ``/ip4/HOST/tcp/PORT[/...]`` (None if absent or 0)."""
    if not isinstance(value, str):
        return None
    parts = value.strip("/").split("/")
    try:
        port = int(parts[parts.index("tcp") + 1])
    except (ValueError, IndexError):
        return None
    return port or None


def _multiaddr_to_url(value: str) -> str:
    parts = value.strip("/").split("/")
    host = parts[1] if len(parts) > 1 else LOOPBACK
    return f"http://{host}:{_multiaddr_port(value) or 0}"


def _api_answers(url: str) -> bool:
    return _daemon_version(url) is not None


def _daemon_version(url: str) -> str | None:
    """The version an IPFS RPC API at ``url`` reports, or None if nothing (IPFS) answers there."""
    try:
        reply = post_json(f"{url}/api/v0/version", None, timeout=1.0)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    if isinstance(reply, dict) and isinstance(reply.get("Version"), str):
        return str(reply["Version"])
    return None
