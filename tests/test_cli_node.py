"""`provanchor node` and `provanchor gov` end to end, as a user runs them, on a real network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from helpers.waiting import wait_until

from provanchor.localnet.processes import AnvilService


def run(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROVANCHOR_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "provanchor.cli.main", *args], capture_output=True, text=True, env=env, timeout=180
    )
    if check and done.returncode != 0:
        raise AssertionError(f"provanchor {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


def run_json(home: Path, *args: str) -> object:
    return json.loads(run(home, *args, "--json").stdout)


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("home")
    run(path, "node", "up", "--governors", "3", "--quorum", "2")
    try:
        yield path
    finally:
        run(path, "node", "down", check=False)


def test_status_reports_the_network(home: Path) -> None:
    status = run_json(home, "node", "status")
    assert isinstance(status, dict)
    for key in ("chain_id", "rpc_url", "contract", "ipfs_api", "governors", "quorum", "block"):
        assert key in status
    assert status["chain_id"] == 31337
    assert len(status["governors"]) == 3 and status["quorum"] == 2
    descriptor = json.loads((home / "network.json").read_text())
    assert descriptor["contract"] == status["contract"]


def test_governance_walkthrough_and_bad_input(home: Path) -> None:
    agent = Account.create().address
    proposed = run_json(home, "gov", "propose", "add-agent", agent, "--name", "vm-1")
    assert isinstance(proposed, dict) and proposed["executed"] is False
    pid = str(proposed["proposal_id"])
    agents = run_json(home, "gov", "agents")
    assert isinstance(agents, list) and agent not in [a["address"] for a in agents]

    assert_one_line_error(run(home, "gov", "approve", pid, check=False), "AlreadyApproved")
    approved = run_json(home, "gov", "approve", pid, "--as", "1")
    assert isinstance(approved, dict) and approved["executed"] is True
    agents = run_json(home, "gov", "agents")
    assert isinstance(agents, list)
    mine = [a for a in agents if a["address"] == agent]
    assert mine and mine[0]["name"] == "vm-1" and mine[0]["active"] is True
    listed = run_json(home, "gov", "list")
    assert isinstance(listed, list) and any(p["proposal_id"] == int(pid) and p["executed"] for p in listed)

    assert_one_line_error(run(home, "gov", "propose", "add-agent", "0x1234", "--name", "x", check=False), "address")
    assert_one_line_error(run(home, "gov", "approve", "4242", check=False), "UnknownProposal")
    assert_one_line_error(run(home, "gov", "propose", "set-quorum", "7", check=False), "InvalidQuorum")
    assert_one_line_error(run(home, "gov", "approve", "1", "--as", "9", check=False), "dev governors")
    assert_one_line_error(run(home, "gov", "approve", "not-a-number", check=False))


def test_up_is_idempotent_and_survives_down_and_sigkill(home: Path) -> None:
    before = run_json(home, "node", "status")
    assert isinstance(before, dict)
    again = run_json(home, "node", "up")
    assert isinstance(again, dict)
    assert again["contract"] == before["contract"] and again["deployed"] is False and again["started"] == []

    agent = Account.create().address
    run(home, "gov", "propose", "add-agent", agent, "--name", "persisted")
    pending = run_json(home, "gov", "list", "--pending")
    assert isinstance(pending, list) and pending
    block_before = run_json(home, "node", "status")["block"]  # type: ignore[index]

    run(home, "node", "down")
    assert_one_line_error(run(home, "node", "status", check=False), "does not answer")
    assert_one_line_error(run(home, "gov", "agents", check=False), "does not answer")
    run(home, "node", "up")
    after_down = run_json(home, "node", "status")
    assert isinstance(after_down, dict)
    assert after_down["contract"] == before["contract"] and after_down["block"] == block_before
    since = time.time()

    # SIGKILL: anvil writes its state every second, so wait until it has written it since the last block.
    anvil = AnvilService(home)
    wait_until(lambda: anvil.state_file.stat().st_mtime > since, 10, "anvil to write its state after the last block")
    pid = anvil.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _alive(pid), 10, "anvil to die")
    assert_one_line_error(run(home, "node", "status", check=False), "does not answer")
    restarted = run_json(home, "node", "up")
    assert isinstance(restarted, dict) and "anvil" in restarted["started"] and restarted["deployed"] is False
    after_kill = run_json(home, "node", "status")
    assert isinstance(after_kill, dict)
    assert after_kill["contract"] == before["contract"] and after_kill["block"] == block_before
    proposals = run_json(home, "gov", "list", "--pending")
    assert isinstance(proposals, list) and any(p["target"] == agent for p in proposals)


def test_missing_network_and_impossible_quorum(tmp_path: Path) -> None:
    assert_one_line_error(run(tmp_path, "node", "status", check=False), "network.json")
    assert_one_line_error(run(tmp_path, "gov", "agents", check=False), "network.json")
    assert_one_line_error(run(tmp_path, "node", "up", "--governors", "2", "--quorum", "3", check=False), "quorum")
    assert not (tmp_path / "network.json").exists()



def test_a_governor_signs_with_their_own_keystore(home: Path, tmp_path: Path) -> None:
    """Real governors keep their own keys: `--keystore` (password as for agents) works like `--as`."""
    from provanchor.home import Home
    from provanchor.localnet.lifecycle import fund

    governor = Account.create()
    keystore = tmp_path / "governor.json"
    keystore.write_text(json.dumps(Account.encrypt(governor.key, "governor-password")))
    password = tmp_path / "password"
    password.write_text("governor-password\n")
    fund(Home(home), governor.address)
    added = run_json(home, "gov", "propose", "add-governor", governor.address)
    assert isinstance(added, dict)
    run(home, "gov", "approve", str(added["proposal_id"]), "--as", "1")

    agent = Account.create().address
    signed = ["--keystore", str(keystore), "--password-file", str(password)]
    proposed = run_json(home, "gov", "propose", "add-agent", agent, "--name", "by-keystore", *signed)
    assert isinstance(proposed, dict) and proposed["approvals"] == 1 and proposed["executed"] is False
    listed = run_json(home, "gov", "list", "--pending")
    assert isinstance(listed, list)
    assert [p["proposer"] for p in listed if p["proposal_id"] == proposed["proposal_id"]] == [governor.address]

    both = run(home, "gov", "approve", str(proposed["proposal_id"]), *signed, "--as", "1", check=False)
    assert_one_line_error(both, "--as and --keystore")
    assert both.returncode == 2
    password.write_text("wrong\n")
    assert_one_line_error(run(home, "gov", "approve", str(proposed["proposal_id"]), *signed, check=False), "password")
    missing = ["--keystore", str(tmp_path / "absent.json"), "--password-file", str(password)]
    assert_one_line_error(run(home, "gov", "approve", str(proposed["proposal_id"]), *missing, check=False), "keystore")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
