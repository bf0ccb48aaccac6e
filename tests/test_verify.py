"""Third-party verification of honest logs against a real chain and IPFS: library and CLI."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from provanchor.formats.cid import CID
from provanchor.formats.unixfs import cid_for_bytes
from provanchor.home import Home
from provanchor.index.store import IndexStore
from provanchor.index.sync import Indexer
from provanchor.ipfs.client import IpfsClient
from provanchor.localnet.devagents import enroll_agent
from provanchor.network import NetworkDescriptor, load_network
from provanchor.pipeline.session import AgentSession
from provanchor.records import Capture, CaptureBackend, Change, ContentRef, Op, file_location
from provanchor.verify.api import VerifyContext, verify_agent, verify_record

PASSWORD = "verify-test"
CLI = [sys.executable, "-m", "provanchor.cli.main"]
T0 = 1_700_000_000 * 10**9


CHAIN_ENGINES = ("anvil", "geth")  # real block times too (see conftest)
GETH_TESTS = {
    "test_verify_record_passes_every_named_check",
    "test_verify_agent_whole_log_with_and_without_index_hint",
    "test_verify_all_and_audit_bundle_round_trip",
}

def content_change(location: str, data: bytes, t: int, op: Op = Op.WRITE, run: str | None = None) -> Change:
    return Change(
        time=t,
        host="h1",
        location=location,
        op=op,
        user="alice",
        run=run,
        capture=Capture(backend=CaptureBackend.MANUAL, attributed=False, reason="test"),
        after=ContentRef(hashlib.sha256(data).digest(), len(data), CID.parse(cid_for_bytes(data))),
    )


@pytest.fixture(scope="module")
def network(net_home: Home) -> NetworkDescriptor:
    return load_network(net_home)


@pytest.fixture(scope="module")
def honest(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One agent, 10 records in 3 checkpoints, every record with content on IPFS."""
    root = tmp_path_factory.mktemp("honest")
    home, _ = enroll_agent(net_home, root / "agent", "honest", PASSWORD)
    ids: list[str] = []
    with AgentSession.open(home, password=PASSWORD, batch_size=4) as session:
        for i in range(10):
            data = f"content {i}\n".encode()
            ref = session.record(content_change(f"file://h1/data/f{i % 3}", data, T0 + i * 10**9), data)
            ids.append(ref.record_id)
        session.flush()
        agent = session.address.lower()
    return {"agent": agent, "ids": ids}


def context(network: NetworkDescriptor, **kwargs: object) -> VerifyContext:
    return VerifyContext(network.rpc_url, network.contract, ipfs_api=network.ipfs_api, **kwargs)  # type: ignore[arg-type]


def test_verify_record_passes_every_named_check(network: NetworkDescriptor, honest: dict[str, object]) -> None:
    ids = honest["ids"]
    assert isinstance(ids, list)
    with context(network) as ctx:
        for record_id in (ids[0], ids[5], ids[9]):
            report = verify_record(ctx, record_id)
            assert report.ok, report.render()
            names = {c.name for c in report.checks}
            assert names >= {
                "blocks match CIDs",
                "record format",
                "signature",
                "agent active at anchoring block",
                "inclusion proof",
                "inclusion proof (contract verifyInclusion)",
                "seq and prev links",
                "content matches hashes",
            }
        # Later checkpoints also check the consistency of the ones before.
        last = verify_record(ctx, ids[9])
        assert any(c.name == "checkpoint consistency" and c.ok for c in last.checks)
        assert last.facts["checkpoint"] == 2


def test_verify_agent_whole_log_with_and_without_index_hint(
    network: NetworkDescriptor, honest: dict[str, object], tmp_path: Path
) -> None:
    agent = str(honest["agent"])
    with context(network) as ctx:
        report = verify_agent(ctx, agent, with_content=True)
        assert report.ok, report.render()
        assert report.facts["records"] == 10 and report.facts["checkpoints"] == 3
    index = tmp_path / "index.sqlite"
    with IndexStore.open(index, must_exist=False) as store:
        Indexer(store, network).sync()
    with context(network, index_path=index) as ctx:
        report = verify_agent(ctx, agent)
        assert report.ok, report.render()
        assert report.facts["index_hint"] == {"served": 10, "refused": 0}


# ------------------------------------------------------------------ the CLI


def trust(network: NetworkDescriptor) -> list[str]:
    return ["--rpc", network.rpc_url, "--contract", network.contract, "--ipfs", network.ipfs_api]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # No data directory at all: the trust base is on the command line.
    env = {k: v for k, v in os.environ.items() if k != "PROVANCHOR_HOME"}
    env["PROVANCHOR_HOME"] = "/nonexistent/provanchor-home"
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_cli_verify_record_and_agent_json(network: NetworkDescriptor, honest: dict[str, object]) -> None:
    ids = honest["ids"]
    assert isinstance(ids, list)
    done = cli("verify", "record", ids[3], *trust(network), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is True and data["checks"]
    assert all(
        {"name", "ok", "detail", "status"} == set(c) and c["ok"] and c["status"] == "pass" for c in data["checks"]
    )
    assert data["facts"]["seq"] == 3
    readable = cli("verify", "agent", str(honest["agent"]), *trust(network))
    assert readable.returncode == 0, readable.stdout + readable.stderr
    assert "PASS" in readable.stdout and readable.stdout.rstrip().endswith("OK: every check passed")


@pytest.fixture(scope="module")
def tracked(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A file recorded twice, and a run whose output is recorded with the run id."""
    root = tmp_path_factory.mktemp("tracked")
    home, _ = enroll_agent(net_home, root / "agent", "tracked", PASSWORD)
    work = root / "work"
    work.mkdir()
    data_file = work / "data.csv"
    output = work / "out.txt"
    script = work / "step.py"
    script.write_text("print('step')\n")
    run_id = "run-" + hashlib.sha256(str(root).encode()).hexdigest()[:12]
    from provanchor.records import identify_command

    code = identify_command(sys.executable, [sys.executable, str(script)], str(work))
    with AgentSession.open(home, password=PASSWORD, batch_size=16) as session:
        for i, text in enumerate((b"v1\n", b"v2\n")):
            data_file.write_bytes(text)
            op = Op.CREATE if i == 0 else Op.WRITE
            session.record(content_change(file_location("h1", str(data_file)), text, T0 + i * 10**9, op), text)
        output.write_bytes(b"result\n")
        out_location = file_location("h1", str(output))
        write = content_change(out_location, b"result\n", T0 + 5 * 10**9, run=run_id)
        session.record(Change(**{**write.__dict__, "code": code}), b"result\n")
        digest = hashlib.sha256(b"result\n").digest()
        payload: dict[str, object] = {
            "run_id": run_id,
            "argv": [sys.executable, str(script)],
            "cwd": str(work),
            "inputs": [],
            "outputs": [{"location": out_location, "sha256": digest, "size": 7, "cid": None}],
            "code_files": [],
            "env": {"sha256": "0" * 64, "names": []},
            "exit_code": 0,
        }
        session.record(
            Change(
                time=T0 + 4 * 10**9,
                host="h1",
                location=f"run://h1/{run_id}",
                op=Op.RUN,
                capture=Capture(backend=CaptureBackend.RUN, attributed=True),
                code=code,
                run=run_id,
                payload=payload,
            )
        )
        session.flush()
    return {"file": data_file, "run": run_id, "output": output}


def test_verify_file_reports_the_last_match_after_an_outside_change(
    network: NetworkDescriptor, tracked: dict[str, object]
) -> None:
    data_file = tracked["file"]
    assert isinstance(data_file, Path)
    done = cli("verify", "file", str(data_file), *trust(network), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["facts"]["records_found"] == 2
    # Changed outside the agent's view, back to the first recorded content.
    data_file.write_bytes(b"v1\n")
    try:
        done = cli("verify", "file", str(data_file), "--location", file_location("h1", str(data_file)),
                   *trust(network), "--json")
        assert done.returncode == 1
        data = json.loads(done.stdout)
        failed = [c for c in data["checks"] if not c["ok"]]
        assert [c["name"] for c in failed] == ["file matches latest record"]
        assert "last matched record" in failed[0]["detail"] and data["facts"]["last_matched_record"]
        data_file.write_bytes(b"never recorded\n")
        done = cli("verify", "file", str(data_file), *trust(network))
        assert done.returncode == 1 and "never matched" in done.stdout
    finally:
        data_file.write_bytes(b"v2\n")


def test_verify_run_checks_code_hash_and_every_output(network: NetworkDescriptor, tracked: dict[str, object]) -> None:
    done = cli("verify", "run", str(tracked["run"]), *trust(network), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    names = {c["name"] for c in data["checks"]}
    assert {"run record found", "code hash", "output hashes", "output records authentic", "outputs on disk"} <= names
    output = tracked["output"]
    assert isinstance(output, Path)
    output.write_bytes(b"edited\n")
    try:
        done = cli("verify", "run", str(tracked["run"]), *trust(network), "--json")
        assert done.returncode == 1
        assert [c["name"] for c in json.loads(done.stdout)["checks"] if not c["ok"]] == ["outputs on disk"]
    finally:
        output.write_bytes(b"result\n")
    missing = cli("verify", "run", "no-such-run", *trust(network), "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["ok"] is False


def test_verify_all_and_audit_bundle_round_trip(
    network: NetworkDescriptor, honest: dict[str, object], tracked: dict[str, object], tmp_path: Path
) -> None:
    done = cli("verify", "all", *trust(network), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(json.loads(done.stdout)["checks"]) >= 2
    bundle = tmp_path / "alpha.car"
    exported = cli("audit", "export", "--agent", str(honest["agent"]), "--with-content", "-o", str(bundle),
                   *trust(network), "--json")
    assert exported.returncode == 0, exported.stderr
    summary = json.loads(exported.stdout)
    assert summary["records"] == 10 and summary["contents"] == 10 and summary["checkpoints"] == 3
    checked = cli("audit", "verify", str(bundle), "--rpc", network.rpc_url, "--contract", network.contract, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = {c["name"] for c in json.loads(checked.stdout)["checks"]}
    assert {"bundle matches the chain", "inclusion proof", "inclusion proof (contract verifyInclusion)",
            "signature", "content matches hashes", "checkpoint consistency"} <= names
    # A selection: one location, a time window.
    part = tmp_path / "part.car"
    exported = cli("audit", "export", "--agent", str(honest["agent"]), "--location", "file://h1/data/f1",
                   "--since", "1700000001", "--until", "1700000008", "-o", str(part), *trust(network), "--json")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["records"] == 3  # seq 1, 4, 7
    # Without IPFS nobody can tell whether another record matched the selection: unproven, never a pass.
    checked = cli("audit", "verify", str(part), "--rpc", network.rpc_url, "--contract", network.contract, "--json")
    assert checked.returncode == 3, checked.stdout
    data = json.loads(checked.stdout)
    assert data["ok"] is False and data["verdict"] == "unproven" and data["facts"]["complete"] == "unproven"
    assert [c["status"] for c in data["checks"] if c["name"] == "bundle complete"] == ["unproven"]
    human = cli("audit", "verify", str(part), "--rpc", network.rpc_url, "--contract", network.contract)
    assert "every check passed" not in human.stdout and "UNPROVEN" in human.stdout
    # With IPFS the records left out are read: none matches, so the selection is proven complete.
    proven = cli("audit", "verify", str(part), *trust(network), "--json")
    assert proven.returncode == 0, proven.stdout
    assert json.loads(proven.stdout)["facts"]["complete"] == "proven"


def test_bad_input_is_one_line_and_never_a_pass(
    network: NetworkDescriptor, honest: dict[str, object], tmp_path: Path
) -> None:
    ids = honest["ids"]
    assert isinstance(ids, list)
    no_code = "0x" + "12" * 20
    garbage = tmp_path / "garbage.car"
    garbage.write_bytes(b"this is not a CAR file at all")
    bundle = tmp_path / "full.car"
    assert cli("audit", "export", "--agent", str(honest["agent"]), "-o", str(bundle), *trust(network)).returncode == 0
    truncated = tmp_path / "truncated.car"
    truncated.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    cases = [
        (["verify", "record", ids[0], "--rpc", network.rpc_url, "--contract", no_code, "--ipfs", network.ipfs_api],
         "no contract code"),
        (["verify", "record", ids[0], "--rpc", "http://127.0.0.1:9", "--contract", network.contract,
          "--ipfs", network.ipfs_api], "does not answer"),
        (["verify", "record", "not-a-cid", *trust(network)], "not a record id"),
        (["verify", "agent", "0x" + "ab" * 20, "--rpc", "localhost:8545", "--contract", network.contract,
          "--ipfs", network.ipfs_api], "http(s) url"),
        (["verify", "record", ids[0], "--rpc", network.rpc_url, "--contract", network.contract,
          "--ipfs", "http://127.0.0.1:9"], "does not answer"),
        (["verify", "file", str(tmp_path / "missing.csv"), *trust(network)], "not a readable regular file"),
        (["verify", "agent", "0x123", *trust(network)], "not an agent address"),
        (["verify", "record", ids[0], "--rpc", network.rpc_url, "--contract", network.contract], "block source"),
        (["audit", "verify", str(garbage), "--rpc", network.rpc_url, "--contract", network.contract], "car"),
        (["audit", "verify", str(truncated), "--rpc", network.rpc_url, "--contract", network.contract], "truncated"),
    ]
    for args, needle in cases:
        done = cli(*args)
        assert done.returncode != 0, args
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert needle in done.stderr.lower(), done.stderr
        assert "OK" not in done.stdout


def test_index_hint_is_verified_not_believed(
    network: NetworkDescriptor, honest: dict[str, object], tmp_path: Path
) -> None:
    import sqlite3

    agent = str(honest["agent"])
    index = tmp_path / "index.sqlite"
    with IndexStore.open(index, must_exist=False) as store:
        Indexer(store, network).sync()
        other = store.record_bytes(agent, 3)
    with sqlite3.connect(index) as db:  # the hint lies about record 2
        db.execute(
            "UPDATE record_bytes SET canonical = ? WHERE id = (SELECT id FROM records WHERE agent = ? AND seq = 2)",
            (other, agent),
        )
    with context(network, index_path=index) as ctx:
        report = verify_agent(ctx, agent)
        assert report.ok, report.render()  # record 2 came from IPFS instead
        assert report.facts["index_hint"] == {"served": 9, "refused": 1}


class _Gateway(http.server.ThreadingHTTPServer):
    """A trustless gateway in front of the test's IPFS daemon; `lie` flips a byte of every block."""

    def __init__(self, ipfs_api: str) -> None:
        self.ipfs = IpfsClient(ipfs_api)
        self.lie = False
        super().__init__(("127.0.0.1", 0), _GatewayHandler)


class _GatewayHandler(http.server.BaseHTTPRequestHandler):
    server: _Gateway

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        cid = self.path.split("?")[0].removeprefix("/ipfs/")
        try:
            data = self.server.ipfs.get_block(cid)
        except Exception:
            self.send_response(404)
            self.end_headers()
            return
        if self.server.lie:
            data = bytes([data[0] ^ 1]) + data[1:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_gateway_block_source(network: NetworkDescriptor, honest: dict[str, object]) -> None:
    ids = honest["ids"]
    assert isinstance(ids, list)
    gateway = _Gateway(network.ipfs_api)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{gateway.server_address[1]}"
    try:
        with VerifyContext(network.rpc_url, network.contract, gateway=url) as ctx:
            report = verify_record(ctx, ids[6])
            assert report.ok, report.render()
        gateway.lie = True
        with VerifyContext(network.rpc_url, network.contract, gateway=url) as ctx:
            report = verify_record(ctx, ids[6])
            assert {c.name for c in report.failures()} == {"blocks match CIDs"}
    finally:
        gateway.shutdown()
        gateway.server_close()
        thread.join(timeout=5)


def test_bundle_proofs_equal_rfc9162_paths() -> None:
    from provanchor.formats import merkle
    from provanchor.verify.bundle import _levels, _proof

    leaves = [merkle.leaf_hash(i.to_bytes(32, "big")) for i in range(70)]
    for size in range(1, 71):
        levels = _levels(leaves[:size])
        assert levels[-1][0] == merkle.root(leaves[:size])
        for index in range(size):
            assert _proof(levels, index) == merkle.inclusion_proof(leaves[:size], index)


def test_verify_location_replays_from_verified_records(
    network: NetworkDescriptor, tracked: dict[str, object]
) -> None:
    data_file = tracked["file"]
    assert isinstance(data_file, Path)
    location = file_location("h1", str(data_file))
    done = cli("verify", "location", location, "--at", "1700000000.5", *trust(network), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert {c["name"] for c in data["checks"]} >= {"records verified", "before-chain", "replayed hashes"}
    (restored,) = [f for f in data["facts"]["files"] if f["kind"] == "file"]
    assert restored["sha256"] == hashlib.sha256(b"v1\n").hexdigest()
    before = cli("verify", "location", location, "--at", "1699999990", *trust(network), "--json")
    assert before.returncode == 1 and json.loads(before.stdout)["ok"] is False
    # A plain path names it on this machine, as `replay state` takes it; these records are host h1's.
    here = cli("verify", "location", str(data_file), "--at", "1700000001", *trust(network), "--json")
    assert here.returncode == 1 and "nothing is recorded" in here.stdout
    on_h1 = cli("verify", "location", str(data_file), "--host", "h1", "--at", "1700000000.5", *trust(network))
    assert on_h1.returncode == 0, on_h1.stdout + on_h1.stderr


def test_verify_location_reports_a_change_outside_the_agents_view(
    net_home: Home, network: NetworkDescriptor, tmp_path: Path
) -> None:
    home, _ = enroll_agent(net_home, tmp_path / "agent", "outside", PASSWORD)
    location = file_location("h1", str(tmp_path / "seen.txt"))
    with AgentSession.open(home, password=PASSWORD) as session:
        session.record(content_change(location, b"one\n", T0, Op.CREATE), b"one\n")
        # The next write found other content than the agent last saw: changed behind its back.
        unseen = b"changed unseen\n"
        write = content_change(location, b"two\n", T0 + 10**9)
        write = Change(**{**write.__dict__, "before": ContentRef(hashlib.sha256(unseen).digest(), len(unseen))})
        session.recorder.record(write, b"two\n", fill_before=False)
        session.flush()
    done = cli("verify", "location", location, "--at", "1700000005", *trust(network), "--json")
    assert done.returncode == 1
    failed = [c for c in json.loads(done.stdout)["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["before-chain"], failed
