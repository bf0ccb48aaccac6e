"""Hosts of our own on one machine: network namespaces joined by veth pairs to one bridge.

Each host is a network namespace with one interface (``eth0``) whose other end
is plugged into a bridge in this namespace; the bridge has the subnet's first
address, so the test process reaches every host and every host reaches every
other. Cutting a host off is ``ip link set VETH down`` on this side of its
pair: its daemons keep running and see their peers time out, exactly like a
pulled cable. Killing a host is SIGKILL to every process in its namespace.

Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the ``ip`` tool; `available`
says why not where they are missing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from provanchor.localnet.tools import Host


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def unavailable() -> str | None:
    """Why hosts of our own cannot be built here (None: they can)."""
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"pa-probe-{secrets.token_hex(3)}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"`ip netns add` is refused here: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass(frozen=True)
class NetHost:
    """One host: its name, its namespace and address (as a daemon `Host`) and this side of its veth pair."""

    name: str
    host: Host
    veth: str

    @property
    def namespace(self) -> str:
        assert self.host.namespace is not None
        return self.host.namespace

    def wrap(self, *argv: str) -> list[str]:
        return self.host.wrap(argv)


@dataclass
class HostNetwork:
    """A bridge and the hosts plugged into it; `close` removes every trace (processes included)."""

    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: str = ""
    hosts: list[NetHost] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A /24 in 10.0.0.0/8 chosen at random: two test runs on one machine do not collide.
        if not self.subnet:
            octets = secrets.token_bytes(2)
            self.subnet = f"10.{64 + octets[0] % 128}.{octets[1]}"
        self.bridge = f"pa{self.tag}br"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, name: str) -> NetHost:
        """A new host on the bridge, with the subnet's next address and its loopback up."""
        namespace = f"pa-{self.tag}-{name}"
        address = f"{self.subnet}.{10 + len(self.hosts)}"
        veth = f"pa{self.tag}v{len(self.hosts)}"
        _ip("netns", "add", namespace)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("link", "set", veth, "master", self.bridge, "up")
        inside = ("netns", "exec", namespace, "ip")
        _ip(*inside, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        _ip(*inside, "link", "set", "lo", "up")
        host = NetHost(name, Host(address, namespace), veth)
        self.hosts.append(host)
        return host

    def cut(self, host: NetHost) -> None:
        """Pull the host's cable: nothing reaches it and it reaches nothing, its processes keep running."""
        _ip("link", "set", host.veth, "down")

    def restore(self, host: NetHost) -> None:
        _ip("link", "set", host.veth, "up")

    def pids(self, host: NetHost) -> list[int]:
        done = _ip("netns", "pids", host.namespace, check=False)
        return [int(line) for line in done.stdout.split() if line.strip().isdigit()]

    def kill(self, host: NetHost, timeout: float = 10.0) -> None:
        """SIGKILL every process of the host (a power cut, as far as its daemons can tell)."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids(host)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {pids} of host {host.name} survived SIGKILL")
            time.sleep(0.1)

    def close(self) -> None:
        for host in self.hosts:
            with contextlib.suppress(RuntimeError):
                self.kill(host)
            _ip("link", "del", host.veth, check=False)
            _ip("netns", "del", host.namespace, check=False)
        _ip("link", "del", self.bridge, check=False)
