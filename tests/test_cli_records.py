"""`agent init`, `record`, `anchor` and `log` as a user runs them, and their bad-input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provanchor.home import Home
from provanchor.localnet import lifecycle

PASSWORD = "pw-for-tests"


def run(home: Path, *args: str, password: str | None = PASSWORD) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROVANCHOR_HOME": str(home)}
    env.pop("PROVANCHOR_PASSWORD", None)
    if password is not None:
        env["PROVANCHOR_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "provanchor.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def ok_json(home: Path, *args: str) -> dict[str, object]:
    done = run(home, *args, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("home")
    lifecycle.up(Home(path))
    try:
        yield path
    finally:
        lifecycle.down(Home(path))


def test_init_record_anchor_log(home: Path, tmp_path: Path) -> None:
    agent = ok_json(home, "agent", "init", "--name", "cli-agent")
    assert set(agent) >= {"address", "keystore"} and Path(str(agent["keystore"])).exists()
    assert oct(Path(str(agent["keystore"])).stat().st_mode & 0o777) == "0o600"
    proposed = ok_json(home, "gov", "propose", "add-agent", str(agent["address"]), "--name", "cli-agent")
    assert proposed["executed"] is True

    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    first = ok_json(home, "record", "--location", str(data), "--op", "create")
    assert set(first) >= {"record_id", "seq", "cid"} and first["seq"] == 0
    assert first["record_id"] == first["cid"] and str(first["cid"]).startswith("bafy")
    data.write_text("a,b\n1,2\n3,4\n")
    second = ok_json(
        home, "record", "--location", str(data), "--op", "write", "--user", "alice", "--code-hash", "ab" * 32
    )
    assert second["seq"] == 1

    anchored = ok_json(home, "anchor", "--flush")
    assert anchored["size"] == 2 and str(anchored["root"]).startswith("0x") and str(anchored["tx"]).startswith("0x")
    again = ok_json(home, "anchor", "--flush")
    assert again["size"] == 2 and again["newly_anchored"] == 0

    done = run(home, "log", "--agent", str(agent["address"]), "--json")
    assert done.returncode == 0, done.stderr
    checkpoints = json.loads(done.stdout)
    assert [c["size"] for c in checkpoints] == [2]
    assert set(checkpoints[0]) >= {"index", "size", "root", "manifest_cid", "time", "tx"}
    assert checkpoints[0]["tx"] == anchored["tx"]


def test_bad_input_is_one_line(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-home"
    other.mkdir()
    (other / "network.json").write_text((home / "network.json").read_text())
    one_line_error(run(other, "record", "--location", "/etc/hostname", "--op", "write"), "agent init")
    created = run(other, "agent", "init", "--name", "x", "--json")
    assert created.returncode == 0, created.stderr
    one_line_error(run(other, "anchor", "--flush", password="wrong"), "wrong password")
    one_line_error(run(other, "anchor", "--flush", password=None), "PROVANCHOR_PASSWORD")
    keystore = Path(json.loads(created.stdout)["keystore"])
    one_line_error(
        run(other, "record", "--location", "/etc/hostname", "--op", "write", "--code-hash", "xyz"), "code-hash"
    )
    one_line_error(run(other, "record", "--location", "/etc/hostname", "--op", "explode"), "explode")
    one_line_error(run(other, "log", "--agent", "0xnothex"), "address")
    keystore.write_text("{not json")
    one_line_error(run(other, "anchor", "--flush"), "keystore")
    keystore.unlink()
    one_line_error(run(other, "anchor", "--flush"), "does not exist")
    one_line_error(run(other, "agent", "init", "--name", "y"), "already configured")
    assert run(other, "agent", "init", "--name", "y", "--force").returncode == 0
