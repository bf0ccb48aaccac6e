"""Real-process tests of the local network daemons (anvil, Kubo).

Every test uses its own home under ``tmp_path``; fixtures stop the services and
SIGKILL any pid the test ever saw, even when the test fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from provanchor.errors import DaemonStartError, ProvanchorError, ToolNotFound
from provanchor.localnet import tools
from provanchor.localnet.processes import AnvilService, IpfsService, _pid_alive
from provanchor.localnet.tools import find_anvil, find_ipfs, free_port

HELLO_CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def rpc(url: str, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        reply = json.loads(response.read())
    assert "error" not in reply, reply
    return reply["result"]


def send_and_mine(url: str, to: str, value: int) -> dict[str, Any]:
    sender = rpc(url, "eth_accounts")[0]
    tx_hash = rpc(url, "eth_sendTransaction", {"from": sender, "to": to, "value": hex(value)})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        receipt = rpc(url, "eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            assert receipt["status"] == "0x1"
            # eth_blockNumber can lag the receipt by a moment under automine.
            while int(rpc(url, "eth_blockNumber"), 16) < int(receipt["blockNumber"], 16):
                time.sleep(0.02)
            return dict(receipt)
        time.sleep(0.02)
    raise AssertionError(f"transaction {tx_hash} not mined")


def chain_snapshot(url: str, who: str) -> tuple[int, int]:
    return int(rpc(url, "eth_blockNumber"), 16), int(rpc(url, "eth_getBalance", who, "latest"), 16)


def api_url(multiaddr: str) -> str:
    port = multiaddr.rstrip("/").split("/")[-1]
    return f"http://127.0.0.1:{port}"


def ipfs_add(multiaddr: str, data: bytes) -> str:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="hello.txt"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{api_url(multiaddr)}/api/v0/add?pin=true",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    return str(lines[-1]["Hash"])


def ipfs_cat(multiaddr: str, cid: str) -> bytes:
    request = urllib.request.Request(f"{api_url(multiaddr)}/api/v0/cat?arg={cid}", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=20) as response:
        data: bytes = response.read()
        return data


def processes_with(needle: str) -> list[int]:
    """Pids whose command line mentions ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + b"\0" + (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle.encode() in blob and _pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


class PidTracker:
    """Remembers every daemon pid a test saw so teardown can kill leftovers."""

    def __init__(self) -> None:
        self.pids: set[int] = set()

    def see(self, service: AnvilService | IpfsService) -> int:
        pid = service.pid
        assert pid is not None
        self.pids.add(pid)
        return pid

    def kill_leftovers(self) -> None:
        for pid in self.pids:
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)


def _have(finder: Any) -> bool:
    try:
        finder()
    except ToolNotFound:
        return False
    return True


needs_anvil = pytest.mark.skipif(not _have(find_anvil), reason="anvil not installed (make setup)")
needs_ipfs = pytest.mark.skipif(not _have(find_ipfs), reason="no IPFS implementation (make setup)")


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture
def tracker() -> Iterator[PidTracker]:
    pids = PidTracker()
    yield pids
    pids.kill_leftovers()


@pytest.fixture
def anvil(tmp_path: Path, tracker: PidTracker) -> Iterator[AnvilService]:
    service = AnvilService(tmp_path / "home")
    try:
        yield service
    finally:
        try:
            service.stop(timeout=5)
        finally:
            tracker.kill_leftovers()


@pytest.fixture
def ipfs(tmp_path: Path, tracker: PidTracker) -> Iterator[IpfsService]:
    service = IpfsService(tmp_path / "home")
    try:
        yield service
    finally:
        try:
            service.stop(timeout=10)
        finally:
            tracker.kill_leftovers()


# ---------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port < 65536
    assert tools.port_is_free(port)


def test_explicit_anvil_env_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROVANCHOR_ANVIL", str(tmp_path / "nope"))
    with pytest.raises(ToolNotFound, match="PROVANCHOR_ANVIL"):
        find_anvil()


def test_missing_anvil_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROVANCHOR_ANVIL", raising=False)
    monkeypatch.setenv("PROVANCHOR_NODE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tools, "repo_root", lambda: tmp_path)
    with pytest.raises(ToolNotFound) as info:
        find_anvil()
    assert isinstance(info.value, ProvanchorError)
    assert "make setup" in str(info.value) and "\n" not in str(info.value)


def fake_ipfs(path: Path, version: str) -> Path:
    """An executable that answers `ipfs version --number` like a Kubo of `version`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\n[ "$1 $2" = "version --number" ] && echo {version} && exit 0\nexit 1\n')
    path.chmod(0o755)
    return path


def test_kubo_lookup_takes_the_pinned_version_or_newer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    node = tmp_path / "node"
    anvil_bin = node / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    anvil_bin.parent.mkdir(parents=True)
    anvil_bin.write_text("#!/bin/sh\n")
    anvil_bin.chmod(0o755)
    monkeypatch.delenv("PROVANCHOR_ANVIL", raising=False)
    monkeypatch.delenv("PROVANCHOR_IPFS_BIN", raising=False)
    monkeypatch.setenv("PROVANCHOR_NODE_DIR", str(node))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_anvil() == anvil_bin
    with pytest.raises(ToolNotFound, match="make setup"):
        find_ipfs()

    old_on_path = fake_ipfs(tmp_path / "path" / "ipfs", "0.28.0")
    monkeypatch.setenv("PATH", str(old_on_path.parent))
    with pytest.raises(ToolNotFound) as info:  # an old Kubo on PATH is ignored, and the message says so
        find_ipfs()
    assert "ignored" in str(info.value) and "0.28.0" in str(info.value) and "\n" not in str(info.value)

    pinned = fake_ipfs(node / "bin" / "ipfs", tools.KUBO_VERSION)
    found = find_ipfs()
    assert found.path == pinned and found.version == tools.KUBO_VERSION and found.notes == ()

    pinned.unlink()
    newer_on_path = fake_ipfs(tmp_path / "path2" / "ipfs", "0.50.0")
    monkeypatch.setenv("PATH", f"{old_on_path.parent}:{newer_on_path.parent}")
    with pytest.raises(ToolNotFound, match=r"0\.28\.0"):  # the first `ipfs` on PATH is the one considered
        find_ipfs()
    monkeypatch.setenv("PATH", str(newer_on_path.parent))
    assert find_ipfs() == tools.IpfsTool(newer_on_path, "0.50.0")

    monkeypatch.setenv("PROVANCHOR_IPFS_BIN", str(old_on_path))
    with pytest.raises(ToolNotFound, match=r"0\.28\.0"):  # an explicit choice that is too old is an error
        find_ipfs()
    monkeypatch.setenv("PROVANCHOR_IPFS_BIN", str(tmp_path / "nope"))
    with pytest.raises(ToolNotFound, match="not an executable"):
        find_ipfs()


def test_the_kubo_version_is_the_go_module_pin() -> None:
    go_mod = (tools.repo_root() / "node" / "kubo" / "go.mod").read_text()
    assert f"require github.com/ipfs/kubo v{tools.KUBO_VERSION}\n" in go_mod
    assert (tools.repo_root() / "node" / "kubo" / "go.sum").stat().st_size > 0


# ---------------------------------------------------------------------------
# anvil
# ---------------------------------------------------------------------------


def _foundry_tmp_files_since(start: float) -> list[Path]:
    root = Path.home() / ".foundry" / "anvil" / "tmp"
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and p.stat().st_mtime >= start]


@needs_anvil
def test_anvil_state_survives_stop_and_sigkill(anvil: AnvilService, tracker: PidTracker) -> None:
    test_start = time.time() - 1
    url = anvil.start()
    assert url.startswith("http://127.0.0.1:")
    assert anvil.rpc_url == url and anvil.is_running()
    assert int(rpc(url, "eth_chainId"), 16) == 31337
    first_pid = tracker.see(anvil)

    recipient = "0x000000000000000000000000000000000000bEEF"
    send_and_mine(url, recipient, 10**18)
    before = chain_snapshot(url, recipient)
    assert before[0] >= 1 and before[1] == 10**18

    assert anvil.stop() is True
    assert not anvil.is_running() and anvil.rpc_url is None
    assert not anvil.pid_file.exists()
    assert not _pid_alive(first_pid)

    url2 = anvil.start()
    tracker.see(anvil)
    assert url2 == url  # the previous port is reused when free
    assert chain_snapshot(url2, recipient) == before

    send_and_mine(url2, recipient, 2 * 10**18)
    after_second = chain_snapshot(url2, recipient)
    assert after_second[1] == 3 * 10**18
    time.sleep(2.5)  # let the 1 s state interval write the new block

    pid = tracker.see(anvil)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while anvil.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not anvil.is_running()

    url3 = anvil.start()
    tracker.see(anvil)
    assert chain_snapshot(url3, recipient) == after_second
    assert anvil.state_backup.exists()

    # Many blocks: nothing may land in ~/.foundry/anvil/tmp, and the home cache stays (near) empty.
    rpc(url3, "anvil_mine", hex(300))
    time.sleep(1.2)
    assert _foundry_tmp_files_since(test_start) == []
    cache_files = [p for p in anvil.cache_dir.rglob("*") if p.is_file()] if anvil.cache_dir.exists() else []
    assert len(cache_files) <= 10
    assert anvil.stop() is True
    assert not anvil.pid_file.exists()


@needs_anvil
def test_anvil_start_is_idempotent(anvil: AnvilService, tracker: PidTracker) -> None:
    url = anvil.start()
    pid = tracker.see(anvil)
    assert anvil.start() == url
    assert anvil.start(port=free_port()) == url  # running: the port argument is not used
    assert tracker.see(anvil) == pid
    assert processes_with(str(anvil.state_file)) == [pid]
    # A second service object on the same home finds the same daemon.
    assert AnvilService(anvil.home).rpc_url == url
    assert anvil.stop() is True
    assert anvil.stop() is False
    assert processes_with(str(anvil.state_file)) == []


@needs_anvil
def test_anvil_stale_pid_file_is_ignored(anvil: AnvilService, tracker: PidTracker) -> None:
    anvil.pid_file.parent.mkdir(parents=True)
    anvil.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not anvil: e.g. a pid reused after reboot
    assert not anvil.is_running()
    url = anvil.start()
    tracker.see(anvil)
    assert anvil.rpc_url == url
    assert anvil.pid != os.getpid()


@needs_anvil
def test_anvil_restores_backup_after_torn_state_file(anvil: AnvilService, tracker: PidTracker) -> None:
    url = anvil.start()
    tracker.see(anvil)
    recipient = "0x000000000000000000000000000000000000cafE"
    send_and_mine(url, recipient, 5)
    anvil.stop()
    url = anvil.start()  # takes state.json.bak
    tracker.see(anvil)
    expected = chain_snapshot(url, recipient)
    anvil.stop()

    data = anvil.state_file.read_bytes()
    anvil.state_file.write_bytes(data[: len(data) // 2])  # as if SIGKILLed mid-dump
    url = anvil.start()
    tracker.see(anvil)
    assert chain_snapshot(url, recipient) == expected
    assert list(anvil.chain_dir.glob("state.corrupt-*.json"))


@needs_anvil
def test_anvil_explicit_busy_port_is_a_typed_error(anvil: AnvilService) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(DaemonStartError, match=str(port)):
            anvil.start(port=port)
    assert not anvil.is_running()


# ---------------------------------------------------------------------------
# IPFS
# ---------------------------------------------------------------------------


@needs_ipfs
def test_ipfs_content_survives_restart_and_sigkill(ipfs: IpfsService, tracker: PidTracker) -> None:
    addr = ipfs.start()
    assert addr.startswith("/ip4/127.0.0.1/tcp/")
    assert ipfs.api_multiaddr == addr and ipfs.is_running()
    assert ipfs.kind == "kubo" and ipfs.version == tools.KUBO_VERSION
    pid = tracker.see(ipfs)

    assert ipfs.start() == addr  # idempotent
    assert tracker.see(ipfs) == pid
    assert processes_with(f"IPFS_PATH={ipfs.repo}") == [pid]

    assert ipfs_add(addr, b"hello world\n") == HELLO_CID

    assert ipfs.stop() is True
    assert not ipfs.is_running() and ipfs.api_multiaddr is None
    assert not ipfs.pid_file.exists()
    assert not (ipfs.repo / "repo.lock").exists()  # a clean shutdown releases the lock

    addr2 = ipfs.start()
    assert addr2 == addr  # previous API port reused
    pid = tracker.see(ipfs)
    assert ipfs_cat(addr2, HELLO_CID) == b"hello world\n"

    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while ipfs.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ipfs.is_running()
    assert (ipfs.repo / "api").exists()  # left behind by the kill (the repo lock went with the process)

    addr3 = ipfs.start()  # the stale api file is removed: nothing answers at it
    tracker.see(ipfs)
    assert ipfs_cat(addr3, HELLO_CID) == b"hello world\n"
    assert ipfs.stop() is True


class _FakeIpfsApi(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = b'{"Version":"0.0.0-fake"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@needs_ipfs
def test_ipfs_refuses_repo_used_by_foreign_daemon(ipfs: IpfsService, tracker: PidTracker) -> None:
    addr = ipfs.start()
    tracker.see(ipfs)
    assert ipfs.stop() is True

    server = HTTPServer(("127.0.0.1", 0), _FakeIpfsApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    lock = (ipfs.repo / "repo.lock").open("a")  # a foreign Kubo holds the repo's flock while it runs
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (ipfs.repo / "api").write_text(f"/ip4/127.0.0.1/tcp/{server.server_address[1]}/http")
        with pytest.raises(DaemonStartError, match="not started by provanchor"):
            ipfs.start()
        assert (ipfs.repo / "api").exists()  # someone else's api file is left alone
    finally:
        server.shutdown()
        server.server_close()
        lock.close()  # the foreign daemon exits: the kernel releases its lock
    assert ipfs.start() == addr  # the foreign daemon is gone: lock and api file are stale now
    tracker.see(ipfs)
