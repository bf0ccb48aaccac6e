"""Fresh answers and no accidental history (issue 12, items 3 and 4), as a user meets them on the CLI.

`query` and `lineage` sync the index first; `verify` defaults its trust base
from network.json and says so; `verify location` takes a plain path; a record
IPFS does not have is "not found" quickly; no check name is reported twice;
`record` refuses to sign history about a file that does not exist; an agent
the ledger never approved still spools, with a warning saying how to approve it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provanchor.formats.cid import CID, DAG_CBOR
from provanchor.home import Home
from provanchor.localnet.devagents import enroll_agent
from provanchor.pipeline.session import spool_path
from provanchor.pipeline.spool import Spool

PASSWORD = "fresh-answers"


def run(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROVANCHOR_HOME": str(home), "PROVANCHOR_PASSWORD": PASSWORD}
    return subprocess.run([sys.executable, "-m", "provanchor.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=180, stdin=subprocess.DEVNULL, cwd=cwd)


def ok_json(home: Path, *args: str, cwd: Path | None = None) -> object:
    done = run(home, *args, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


@pytest.fixture(scope="module")
def agent(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home, _ = enroll_agent(net_home, tmp_path_factory.mktemp("fresh") / "home", "fresh", PASSWORD)
    yield home.root


def spooled(home: Path) -> int:
    address = json.loads((home / "agent.json").read_text())["address"]
    path = spool_path(Home(home), address)
    if not path.exists():
        return 0
    spool = Spool(path, readonly=True)
    try:
        return spool.count_records()
    finally:
        spool.close()


def test_query_and_lineage_answer_right_after_a_record(agent: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("a\nb\n")
    record = ok_json(agent, "record", "--location", str(data / "in.txt"), "--op", "create", "--flush")
    assert isinstance(record, dict)
    rows = ok_json(agent, "query", "--location", str(data / "in.txt"))
    assert isinstance(rows, list) and [r["record_id"] for r in rows] == [record["record_id"]]

    (data / "in.txt").write_text("a\nb\nc\n")
    second = ok_json(agent, "record", "--location", str(data / "in.txt"), "--op", "write", "--flush")
    assert isinstance(second, dict)
    stale = ok_json(agent, "query", "--location", str(data / "in.txt"), "--no-sync")
    assert isinstance(stale, list) and len(stale) == 1  # the index as it was: --no-sync means exactly that
    fresh = ok_json(agent, "query", "--location", str(data / "in.txt"))
    assert isinstance(fresh, list) and [r["record_id"] for r in fresh][-1] == second["record_id"]

    done = run(agent, "run", "--flush", "--json", "--", "sh", "-c", "sort -r in.txt > out.txt", cwd=data)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["warning"] is None
    graph = ok_json(agent, "lineage", str(data / "out.txt"), "--upstream")
    assert isinstance(graph, dict)
    assert any(str(data / "in.txt") in json.dumps(node) for node in graph["nodes"]), graph


def test_query_without_a_network_says_how_to_get_one(tmp_path: Path) -> None:
    one_line_error(run(tmp_path, "query"), "node up", "--no-sync")


def test_verify_defaults_its_trust_base_from_network_json_and_says_so(agent: Path, tmp_path: Path) -> None:
    target = tmp_path / "v.txt"
    target.write_text("verify me\n")
    record = ok_json(agent, "record", "--location", str(target), "--op", "create", "--flush")
    assert isinstance(record, dict)
    report = ok_json(agent, "verify", "record", str(record["record_id"]))
    assert isinstance(report, dict) and report["ok"] is True
    trust = report["facts"]["trust_base"]
    network = json.loads((agent / "network.json").read_text())
    assert trust["rpc"] == network["rpc_url"] and trust["contract"] == network["contract"]
    assert trust["from_network_json"] == ["rpc", "contract", "ipfs"]
    human = run(agent, "verify", "record", str(record["record_id"]))
    assert human.returncode == 0 and "network.json" in human.stdout and "trust base" in human.stdout
    names = [check["name"] for check in report["checks"]]
    assert len(names) == len(set(names))

    explicit = ok_json(agent, "verify", "record", str(record["record_id"]), "--rpc", network["rpc_url"])
    assert isinstance(explicit, dict)
    assert explicit["facts"]["trust_base"]["from_network_json"] == ["contract", "ipfs"]

    empty = tmp_path / "empty-home"
    empty.mkdir()
    one_line_error(run(empty, "verify", "record", str(record["record_id"])), "--rpc")


def test_verify_agent_and_all_name_every_check_once(agent: Path) -> None:
    address = json.loads((agent / "agent.json").read_text())["address"]
    for args in (("verify", "agent", address), ("verify", "all")):
        report = ok_json(agent, *args)
        assert isinstance(report, dict) and report["ok"] is True, report
        reports = [report, *report["facts"].get("agents", {}).values()]
        for each in reports:
            names = [check["name"] for check in each["checks"]]
            assert len(names) == len(set(names)), names
        if args[1] == "agent":
            assert [n for n in (c["name"] for c in report["checks"]) if n == "checkpoint consistency"] == [
                "checkpoint consistency"
            ]


def test_verify_location_takes_a_plain_path_on_this_host(agent: Path, tmp_path: Path) -> None:
    target = tmp_path / "plain.txt"
    target.write_text("plain\n")
    ok_json(agent, "record", "--location", str(target), "--op", "create", "--flush")
    report = ok_json(agent, "verify", "location", str(target), "--at", f"{time.time():.3f}")
    assert isinstance(report, dict) and report["ok"] is True, report


def test_a_record_ipfs_does_not_have_is_not_found_quickly(agent: Path) -> None:
    absent = CID.for_block(DAG_CBOR, b"\xa1ano\xf6").encode()  # valid dag-cbor, never stored
    started = time.monotonic()
    done = run(agent, "verify", "record", absent, "--json", "--fetch-timeout", "2")
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [c["name"] for c in report["checks"]] == ["record found"]
    assert "not found" in report["checks"][0]["detail"]
    assert elapsed < 30  # bounded: the fetch timeout, not the daemon's patience


def test_record_of_a_missing_file_is_refused_and_nothing_is_spooled(agent: Path, tmp_path: Path) -> None:
    before = spooled(agent)
    missing = tmp_path / "no" / "such" / "file.txt"
    for op in ("write", "create", "truncate"):
        done = run(agent, "record", "--location", str(missing), "--op", op)
        one_line_error(done, str(missing), "--file")
        assert done.returncode == 2
    assert spooled(agent) == before
    content = tmp_path / "content.txt"
    content.write_text("given\n")
    given = ok_json(agent, "record", "--location", str(missing), "--op", "write", "--file", str(content))
    assert isinstance(given, dict) and given["warning"] is None
    deleted = ok_json(agent, "record", "--location", str(missing), "--op", "delete")
    assert isinstance(deleted, dict)
    assert spooled(agent) == before + 2


def test_an_unapproved_agent_spools_with_a_warning(net_home: Home, tmp_path: Path) -> None:
    home, identity = enroll_agent(net_home, tmp_path / "home", "stranger", PASSWORD, approve=False)
    target = tmp_path / "s.txt"
    target.write_text("s\n")
    done = run(home.root, "record", "--location", str(target), "--op", "create", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["seq"] == 0 and spooled(home.root) == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ")
    assert f"gov propose add-agent {identity.address}" in lines[0]
    assert data["warning"] == lines[0].removeprefix("warning: ")
