"""geth as the local chain: the dev chain persists, funding is a transfer, the wrong chain is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provanchor.errors import DaemonStartError
from provanchor.home import Home
from provanchor.localnet import lifecycle
from provanchor.localnet.geth import GETH_CHAIN_ID, GethService, rpc_call
from provanchor.localnet.processes import AnvilService

CLI = [sys.executable, "-m", "provanchor.cli.main"]


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROVANCHOR_HOME": str(home)}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=180)


def test_node_up_on_geth_persists_the_ledger_across_down_and_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = run(home, "node", "up", "--chain", "geth", "--json")
    try:
        assert first.returncode == 0, first.stderr
        up = json.loads(first.stdout)
        assert (up["chain_id"], up["chain_kind"], up["deployed"]) == (GETH_CHAIN_ID, "geth", True)
        # The dev key the governors were funded from is an ordinary account with a balance now.
        governors = json.loads(Home(home).governor_keys_file.read_text())["governors"]
        balance = int(rpc_call(up["rpc_url"], "eth_getBalance", [governors[0]["address"], "latest"]), 16)
        assert balance > 0
        blocks = int(rpc_call(up["rpc_url"], "eth_blockNumber", []), 16)

        # Another engine for the same network is refused in one line.
        other = run(home, "node", "up", "--chain", "anvil")
        assert other.returncode == 2 and other.stderr.count("\n") == 1 and "--reset" in other.stderr

        assert run(home, "node", "down").returncode == 0
        again = run(home, "node", "up", "--json")
        assert again.returncode == 0, again.stderr
        resumed = json.loads(again.stdout)
        assert resumed["deployed"] is False and resumed["contract"] == up["contract"]
        assert int(rpc_call(resumed["rpc_url"], "eth_blockNumber", []), 16) >= blocks
        status = run(home, "node", "status", "--json")
        assert status.returncode == 0, status.stderr
        live = json.loads(status.stdout)
        assert live["chain_kind"] == "geth" and live["geth_running"] is True and live["anvil_running"] is False
    finally:
        lifecycle.down(Home(home))


def test_a_chain_that_is_not_the_dev_chain_is_refused(tmp_path: Path) -> None:
    """GethService only accepts the dev chain: anvil (chain 31337) answering on the port is refused."""
    anvil = AnvilService(tmp_path / "anvil")
    url = anvil.start()
    try:
        with pytest.raises(DaemonStartError, match="31337, not the dev chain 1337"):
            GethService._mining(url)
    finally:
        anvil.stop()


def test_an_unknown_engine_is_a_usage_error(tmp_path: Path) -> None:
    done = run(tmp_path / "home", "node", "up", "--chain", "besu")
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
