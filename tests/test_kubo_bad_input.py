"""Kubo's bad input (issue 13): no Kubo and no Go, a foreign daemon on the API port, a full disk.

Each is one clear line naming the cause and the fix, a non-zero exit, and
nothing already spooled is lost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from provanchor.home import Home
from provanchor.localnet import lifecycle
from provanchor.localnet.devagents import enroll_agent
from provanchor.localnet.tools import repo_root

CLI = [sys.executable, "-m", "provanchor.cli.main"]
PASSWORD = "kubo-bad-input"


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_no_kubo_and_no_go_is_one_line_with_the_fix(tmp_path: Path) -> None:
    # The build script, in a checkout without node/bin/ipfs, on a PATH without Go.
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    (checkout / "node" / "kubo").mkdir(parents=True)
    shutil.copy(repo_root() / "scripts" / "build-go-tools", checkout / "scripts")
    shutil.copy(repo_root() / "node" / "kubo" / "go.mod", checkout / "node" / "kubo")
    no_go = {**os.environ, "PATH": "/usr/bin:/bin"}
    assert shutil.which("go", path=no_go["PATH"]) is None
    built = subprocess.run(["bash", str(checkout / "scripts" / "build-go-tools")], env=no_go, capture_output=True,
                           text=True)
    one_line_error(built, "Go is not installed", "PROVANCHOR_IPFS_BIN")
    assert not (checkout / "node" / "bin" / "ipfs").exists()

    # `node up` where no Kubo can be found: the same fix, in one line.
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PROVANCHOR_NODE_DIR": str(checkout / "node"),
           "PROVANCHOR_HOME": str(tmp_path / "home")}
    env.pop("PROVANCHOR_IPFS_BIN", None)
    env["PROVANCHOR_ANVIL"] = str(repo_root() / "node/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
    done = subprocess.run([*CLI, "node", "up"], env=env, capture_output=True, text=True, timeout=120)
    one_line_error(done, "Kubo not found", "make setup")
    lifecycle.down(Home(tmp_path / "home"))


class _OldIpfs(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = b'{"Version":"0.18.1"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_another_ipfs_daemon_on_the_api_port_is_named(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    first = lifecycle.up(home)
    lifecycle.down(home)
    port = int(first.descriptor.ipfs_api.rstrip("/").split("/")[-1])
    server = HTTPServer(("127.0.0.1", port), _OldIpfs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        done = subprocess.run([*CLI, "--home", str(home.root), "node", "up"], capture_output=True, text=True,
                              timeout=120)
        one_line_error(done, f"port {port}", "0.18.1", "stop that daemon")
    finally:
        server.shutdown()
        server.server_close()
        lifecycle.down(home)
    again = lifecycle.up(home)  # the squatter is gone: the same network comes back on its port
    try:
        assert again.descriptor.ipfs_api == first.descriptor.ipfs_api
        assert again.descriptor.contract == first.descriptor.contract
    finally:
        lifecycle.down(home)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs for the IPFS repository (root can mount here; skip with the reason where not)."""
    mount = tmp_path / "net" / "ipfs"
    mount.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_while_importing_keeps_every_record(small_disk: Path, tmp_path: Path) -> None:
    net = Home(small_disk.parent)
    lifecycle.up(net)
    try:
        home, _ = enroll_agent(net, tmp_path / "agent", "full-disk", PASSWORD)
        env = {**os.environ, "PROVANCHOR_HOME": str(home.root), "PROVANCHOR_PASSWORD": PASSWORD}
        filler = small_disk / "filler"  # leave ~2 MiB: the repository's own bookkeeping fits, the content not
        free = shutil.disk_usage(small_disk).free
        subprocess.run(["fallocate", "-l", str(free - 2 * 1024 * 1024), str(filler)], check=True)
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(6 * 1024 * 1024))
        recorded = subprocess.run([*CLI, "record", "--location", str(big), "--op", "create", "--json"], env=env,
                                  capture_output=True, text=True, timeout=120)
        assert recorded.returncode == 0, recorded.stderr
        record_id = json.loads(recorded.stdout)["record_id"]
        flushed = subprocess.run([*CLI, "anchor", "--flush", "--timeout", "30"], env=env, capture_output=True,
                                 text=True, timeout=180)
        one_line_error(flushed, "out of disk space", "free space")
        shown = json.loads(subprocess.run([*CLI, "anchor", "--json"], env=env, capture_output=True, text=True,
                                          check=True).stdout)
        assert shown["records"] == 1 and shown["pending"] == 1  # spooled, waiting

        filler.unlink()
        again = subprocess.run([*CLI, "anchor", "--flush", "--json"], env=env, capture_output=True, text=True,
                               timeout=180)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["pending"] == 0
        report = subprocess.run([*CLI, "verify", "record", record_id, "--json"], env=env, capture_output=True,
                                text=True, timeout=120)
        assert report.returncode == 0 and json.loads(report.stdout)["ok"] is True, report.stdout
    finally:
        lifecycle.down(net)
