"""The auditor's explorer (issue 19) on a live local network, in a real browser.

An agent records a 3-step pipeline with `provanchor run` (anchored). Two
explorers serve it: one reading the real Kubo, one reading through a proxy that
lies about the content of one file. Debian's chromium, driven by playwright-core
(tests/browser/explorer.mjs), opens the pages and reports what they show;
screenshots land in the test's temporary directory. schemathesis then fuzzes the
JSON API from its OpenAPI document and must find no 5xx. Bad input is checked
over plain HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.agent_service import direct_python_env
from helpers.lying_ipfs import LyingIpfs

from provanchor.home import Home
from provanchor.hostid import default_host_id
from provanchor.localnet.devagents import enroll_agent
from provanchor.network import load_network
from provanchor.records import file_location

PASSWORD = "explorer-test"
CLI = [sys.executable, "-m", "provanchor.cli.main"]
ROOT = Path(__file__).resolve().parent.parent
PLAYWRIGHT = ROOT / "node" / "node_modules" / "playwright-core"
CHROMIUM = shutil.which("chromium")


def env(home: Home) -> dict[str, str]:
    return {**direct_python_env(), "PROVANCHOR_HOME": str(home.root), "PROVANCHOR_PASSWORD": PASSWORD}


def cli(home: Home, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, env=env(home), capture_output=True, text=True, timeout=180,
                          check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """A `provanchor explorer` process."""

    def __init__(self, home: Home, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([*CLI, "explorer", "--listen", f"127.0.0.1:{self.port}", *extra],
                                        env=env(home), stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/api/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # up, and guarded by a token
                    return
                raise
            except OSError:
                if self.process.poll() is not None:
                    died = self.process.stderr.read() if self.process.stderr else "explorer died"
                    raise AssertionError(died) from None
                time.sleep(0.2)
        raise AssertionError("the explorer did not come up")

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET",
            data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base + path, headers=headers or {}, method=method, data=data)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Ledger:
    def __init__(self, home: Home, work: Path, runs: list[dict[str, Any]], at: str) -> None:
        self.home, self.work, self.runs, self.at = home, work, runs, at

    def location(self, name: str) -> str:
        return file_location(default_host_id(), str(self.work / name))


@pytest.fixture(scope="module")
def ledger(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    home = enroll_agent(net_home, tmp_path_factory.mktemp("explorer-agent"), "explorer", PASSWORD)[0]
    work = tmp_path_factory.mktemp("explorer-work").resolve()
    (work / "gen.py").write_text("open('a.csv', 'w').write('x,y\\n1,2\\n3,4\\n')\n")
    (work / "clean.py").write_text("rows = open('a.csv').read().splitlines()\nopen('b.csv', 'w').write("
                                   "'\\n'.join(r for r in rows if r) + '\\n')\n")
    (work / "report.py").write_text("n = len(open('b.csv').read().splitlines())\n"
                                    "open('report.txt', 'w').write(f'{n} rows, all present\\n')\n")
    runs = []
    for script in ("gen.py", "clean.py", "report.py"):
        done = cli(home, "run", "--flush", "--json", "--", sys.executable, script, cwd=work)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
    time.sleep(1.1)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return Ledger(home, work, runs, at)


@pytest.fixture(scope="module")
def explorer(ledger: Ledger) -> Iterator[Served]:
    served = Served(ledger.home)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def lying_explorer(ledger: Ledger) -> Iterator[tuple[Served, str]]:
    """An explorer whose IPFS lies about report.txt's content; returns it and that record's id."""
    rows = json.loads(cli(ledger.home, "query", "--location", str(ledger.work / "report.txt"), "--json").stdout)
    record = rows[-1]
    kubo = load_network(ledger.home).ipfs_api.split("/")
    with LyingIpfs(kubo[2], int(kubo[4]), {record["after_cid"]: b"0 rows, all gone\n"}) as lying:
        served = Served(ledger.home, "--ipfs", lying.api)
        try:
            yield served, str(record["record_id"])
        finally:
            served.stop()


def browse(tmp_path: Path, base: str, pages: list[dict[str, str]]) -> dict[str, Any]:
    if CHROMIUM is None or not (PLAYWRIGHT / "package.json").exists():
        pytest.skip("Debian's chromium or node/node_modules/playwright-core is missing (make setup installs both)")
    shots = tmp_path / "screenshots"
    shots.mkdir(exist_ok=True)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"base": base, "screenshots": str(shots), "pages": pages, "chromium": CHROMIUM}))
    done = subprocess.run(
        ["node", str(ROOT / "tests" / "browser" / "explorer.mjs"), str(plan)],
        env={**os.environ, "PLAYWRIGHT_CORE_PATH": str(PLAYWRIGHT)}, capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    facts: dict[str, Any] = json.loads(done.stdout)
    for page in pages:
        assert (shots / f"{page['name']}.png").stat().st_size > 10_000, page["name"]
        assert facts[page["name"]]["consoleErrors"] == [], (page["name"], facts[page["name"]]["consoleErrors"])
    return facts


def test_pages_in_a_real_browser(ledger: Ledger, explorer: Served, tmp_path: Path) -> None:
    from urllib.parse import quote

    work = quote(str(ledger.work))
    first = browse(tmp_path, explorer.base, [{"name": "search", "path": f"/search?location={work}/b.csv"}])
    search = first["search"]
    assert search["status"] == 200 and "script-src 'self'" in search["csp"]
    assert ledger.location("b.csv") in search["resultLocations"]
    record_path = search["resultLinks"][0]
    b_csv = quote(ledger.location("b.csv"), safe="")
    facts = browse(tmp_path, explorer.base, [
        {"name": "record", "path": record_path},
        {"name": "lineage", "path": f"/lineage?location={b_csv}&depth=3", "waitFor": "#graph[data-rendered]"},
        {"name": "state", "path": f"/state?location={work}&at={quote(ledger.at)}"},
        {"name": "run", "path": f"/run/{ledger.runs[1]['run_id']}"},
        {"name": "agent", "path": "/agent/" + json.loads((ledger.home.root / "agent.json").read_text())["address"]},
    ])
    record = facts["record"]
    assert record["verdict"] == ["Every check passed"]
    names = {c["name"] for c in record["checks"]}
    assert {"signature", "agent active at anchoring block", "inclusion proof", "content matches hashes"} <= names
    assert all(c["status"] == "pass" for c in record["checks"]), record["checks"]
    assert all(c["color"] == "rgb(10, 107, 45)" for c in record["checks"])  # green, as rendered
    assert record["preview"] == ["x,y\n1,2\n3,4"]
    lineage = facts["lineage"]
    runs = [f"run:{r['run_id']}" for r in ledger.runs]
    a, b, report = ledger.location("a.csv"), ledger.location("b.csv"), ledger.location("report.txt")
    assert {a, b, report, *runs} <= set(lineage["nodes"])
    assert [runs[0], a, "output"] in lineage["edges"] and [a, runs[1], "input"] in lineage["edges"]
    assert [runs[1], b, "output"] in lineage["edges"] and [b, runs[2], "input"] in lineage["edges"]
    assert [runs[2], report, "output"] in lineage["edges"]
    assert int(lineage["graphRendered"]) == len(lineage["nodes"]) and lineage["graphCanvases"] >= 1
    state = facts["state"]
    assert {"a.csv", "b.csv", "report.txt"} <= {Path(p).name for p in state["tree"]}
    assert state["tarLink"].startswith("/api/state.tar?")
    status, headers, body = explorer.get(state["tarLink"])
    assert status == 200 and headers["content-type"] == "application/gzip"
    archive = tmp_path / "state.tar.gz"
    archive.write_bytes(body)
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("report.txt"))
        extracted = tar.extractfile(member)
        assert extracted is not None and extracted.read() == (ledger.work / "report.txt").read_bytes()
    assert facts["run"]["h1"] == [f"Run {ledger.runs[1]['run_id']}"]
    assert facts["agent"]["status"] == 200


def test_a_lying_ipfs_turns_the_content_check_red_with_its_reason(
    lying_explorer: tuple[Served, str], tmp_path: Path
) -> None:
    served, record_id = lying_explorer
    facts = browse(tmp_path, served.base, [{"name": "record-lying", "path": f"/record/{record_id}"}])
    page = facts["record-lying"]
    assert page["verdict"] == ["Some checks failed"]
    failed = [c for c in page["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["content matches hashes"], page["checks"]
    assert "IPFS returned wrong bytes" in failed[0]["detail"]
    assert failed[0]["color"] == "rgb(179, 21, 27)"  # red
    assert page["preview"] and page["preview"][0].startswith("No preview")


def test_bad_input_is_a_4xx_with_a_clear_message(ledger: Ledger, explorer: Served) -> None:
    cases = {
        "/api/record/not-a-cid": 400,
        "/api/record/bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy": 404,
        "/api/run/no-such-run": 404,
        "/api/agent/0x123": 400,
        "/api/search?since=yesterday-ish&location=/x": 400,
        "/api/search?code_hash=zz&location=/x": 400,
        "/api/search?location=/x&page_size=100000": 400,
        "/api/lineage?location=/data/../etc/passwd": 400,
        "/api/lineage?location=file://host/data/../etc": 400,
        "/api/search?location=/data//x": 400,
        "/api/state?location=/tmp/../etc&at=2026-01-01": 400,
        "/api/state?location=/x&at=not-a-time": 400,
        "/api/content/not-a-cid": 400,
        "/record/not-a-cid": 400,
        "/run/nope": 404,
    }
    for path, expected in cases.items():
        status, headers, body = explorer.get(path)
        assert status == expected, (path, status, body[:300])
        assert b"Traceback" not in body and b"File \"" not in body
        if path.startswith("/api/"):
            message = json.loads(body)["error"]
            assert message and "\n" not in message, (path, message)
        assert "default-src 'none'" in headers["content-security-policy"]
    assert explorer.get("/api/search?location=/x", method="POST", data=b"{}")[0] == 405
    assert explorer.get("/search?location=" + "a" * 5000)[0] == 414


def test_a_chain_that_went_away_is_named_not_a_500(net_home: Home, ledger: Ledger, tmp_path: Path) -> None:
    """An explorer whose chain is gone answers from its index and says which service is down."""
    broken = Home(tmp_path / "broken")
    broken.root.mkdir()
    network = json.loads(net_home.network_file.read_text())
    network["rpc_url"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    broken.network_file.write_text(json.dumps(network))
    shutil.copy(ledger.home.root / "index.sqlite", broken.root / "index.sqlite")
    served = Served(broken)
    try:
        record = json.loads(cli(ledger.home, "query", "--location", str(ledger.work / "a.csv"), "--json",
                                "--no-sync").stdout)[0]["record_id"]
        status, _, body = served.get(f"/record/{record}")
        assert status == 503 and b"the chain (JSON-RPC) is unavailable" in body and b"Traceback" not in body
        assert b"is not following the chain right now" in body
        status, _, body = served.get(f"/api/record/{record}")
        assert status == 200 and json.loads(body)["record_id"] == record  # the index still answers
    finally:
        served.stop()


def test_schemathesis_finds_no_server_error(explorer: Served, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", explorer.base + "/api/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "25", "--phases", "examples,coverage,fuzzing",
         "--generation-deterministic"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or " passed" in done.stdout, done.stdout[-2000:]
    print(done.stdout[-1500:])


def test_a_token_guards_every_request_and_beyond_loopback_one_is_required(ledger: Ledger) -> None:
    refused = cli(ledger.home, "explorer", "--listen", "0.0.0.0:8600")
    assert refused.returncode == 2 and "needs --token" in refused.stderr and "Traceback" not in refused.stderr
    served = Served(ledger.home, "--token", "s3cret")
    try:
        assert served.get("/api/search?location=/x")[0] == 401
        assert served.get("/search")[0] == 401
        assert served.get("/api/search?location=/x", {"Authorization": "Bearer wrong"})[0] == 401
        assert served.get("/api/search?location=/x", {"Authorization": "Bearer s3cret"})[0] == 200
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
        connection.request("GET", "/login?token=s3cret")
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 303 and "HttpOnly" in (answer.getheader("set-cookie") or "")
        cookie = (answer.getheader("set-cookie") or "").split(";", 1)[0]
        assert served.get("/search", {"Cookie": cookie})[0] == 200
    finally:
        served.stop()
