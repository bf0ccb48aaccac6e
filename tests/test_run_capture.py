"""Capture that tells the truth (issue 15), on a real chain and Kubo.

Code hashes name programs (not invocations); `provanchor run` sees every file
its process tree touches on the machine's local filesystems, wherever it
lives; replays say when they cannot show anything; records of the old layout
still verify, index and replay.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers.agent_service import direct_python_env
from helpers.forge import LogWriter

from provanchor.chain.client import LedgerClient
from provanchor.formats.cid import CID, RAW
from provanchor.home import Home
from provanchor.hostid import default_host_id
from provanchor.identity import unlock
from provanchor.ipfs.client import IpfsClient
from provanchor.localnet.devagents import enroll_agent
from provanchor.network import load_network
from provanchor.records import (
    Capture,
    CaptureBackend,
    Change,
    CodeFile,
    CodeIdentity,
    ContentRef,
    Op,
    file_location,
)

PASSWORD = "run-capture-test"
CLI = [sys.executable, "-m", "provanchor.cli.main"]
PYTHON = os.path.realpath(sys.executable)  # the interpreter itself, not a version manager's shim


@pytest.fixture(scope="module")
def home(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    return enroll_agent(net_home, tmp_path_factory.mktemp("capture-agent"), "truthful", PASSWORD)[0]


def env(home: Home) -> dict[str, str]:
    return {**direct_python_env(), "PROVANCHOR_HOME": str(home.root), "PROVANCHOR_PASSWORD": PASSWORD}


def cli(
    home: Home, *args: str, cwd: Path | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *CLI, *args], cwd=cwd, env=env(home), capture_output=True, text=True, timeout=180, check=False
    )


def run_json(home: Home, work: Path, *argv: str, prefix: tuple[str, ...] = ()) -> tuple[dict[str, object], str]:
    done = cli(home, "run", "--flush", "--json", "--", *argv, cwd=work, prefix=prefix)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def paths(entries: object) -> list[str]:
    assert isinstance(entries, list)
    return sorted(str(entry["path"]) for entry in entries)


def test_a_run_sees_absolute_paths_outside_its_working_directory_and_replays_them_in_place(
    home: Home, tmp_path: Path
) -> None:
    root = tmp_path.resolve()
    (root / "data").mkdir()
    (root / "models").mkdir()
    (root / "work").mkdir()
    source, model = root / "data" / "in.csv", root / "models" / "out.bin"
    source.write_text("a,b\n1,2\n")
    program = f"open({str(model)!r}, 'w').write(open({str(source)!r}).read().upper())"
    result, _ = run_json(home, root / "work", PYTHON, "-c", program)
    assert result["capture"] == "fanotify" and "/" in result["watched"]  # type: ignore[operator]
    assert paths(result["inputs"]) == [str(source)]
    assert paths(result["outputs"]) == [str(model)]
    environment = paths(result["environment"])
    prefix = os.path.dirname(os.path.dirname(PYTHON))
    assert any(p.startswith(prefix + "/") or p.startswith("/usr/") for p in environment), environment
    assert not set(environment) & {str(source), str(model)}
    run_id = str(result["run_id"])

    # Lineage walks through the run: the model comes from the input, whatever directory either is in.
    lineage = cli(home, "lineage", "--upstream", "--json", str(model))
    assert lineage.returncode == 0, lineage.stderr
    assert str(source) in lineage.stdout and run_id in lineage.stdout

    # The replay shows the restored input at its own absolute path and catches the output in --out.
    source.write_text("changed since\n")
    model.unlink()
    replayed = cli(home, "replay", "run", run_id, "--out", str(root / "again"), "--json")
    assert replayed.returncode == 0, replayed.stderr
    report = json.loads(replayed.stdout)
    assert report["reproduced"] is True and report["isolated"] is True and report["reason"] is None
    assert not model.exists()  # nothing written outside --out
    assert (root / "again" / str(model).lstrip("/")).read_text() == "A,B\n1,2\n"


def test_a_run_that_wrote_nothing_says_so_and_does_not_replay_as_reproduced(home: Home, tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    result, stderr = run_json(home, tmp_path / "work", PYTHON, "-c", "print('nothing to write')")
    assert result["outputs"] == []
    notes = result["notes"]
    assert isinstance(notes, list) and any("saw no output" in note for note in notes)
    assert "note: the capture saw no output" in stderr
    replayed = cli(home, "replay", "run", str(result["run_id"]), "--out", str(tmp_path / "again"), "--json")
    assert replayed.returncode == 1
    report = json.loads(replayed.stdout)
    assert report["reproduced"] is False and "recorded no output" in report["reason"]
    human = cli(home, "replay", "run", str(result["run_id"]), "--out", str(tmp_path / "human"))
    assert human.returncode == 1 and "not reproduced: the run recorded no output" in human.stderr


def test_a_timestamp_replays_as_a_mismatch_with_both_hashes(home: Home, tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    stamp = "import time; open('when.txt', 'w').write(str(time.time_ns()))"
    result, _ = run_json(home, tmp_path / "work", PYTHON, "-c", stamp)
    recorded = next(o for o in result["outputs"] if o["path"].endswith("when.txt"))  # type: ignore[union-attr]
    replayed = cli(home, "replay", "run", str(result["run_id"]), "--out", str(tmp_path / "again"))
    assert replayed.returncode == 1
    assert f"expected {recorded['sha256']}, got " in replayed.stdout
    assert "not reproduced: 1 of 1 output(s) differ" in replayed.stderr


def test_code_hash_names_the_program_and_query_finds_it_by_program(home: Home, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("same input\n")
    cp = shutil.which("cp")
    assert cp is not None
    first, _ = run_json(home, tmp_path, "cp", "a.txt", "b.txt")
    second, _ = run_json(home, tmp_path, "cp", "-p", "a.txt", "c.txt")
    records = cli(home, "query", "--run", str(first["run_id"]), "--op", "create", "--json")
    assert records.returncode == 0, records.stderr
    [write_b] = json.loads(records.stdout)
    others = json.loads(cli(home, "query", "--run", str(second["run_id"]), "--op", "create", "--json").stdout)
    assert [r["code_hash"] for r in others] == [write_b["code_hash"]]  # two argvs, one program, one hash

    by_hash = json.loads(cli(home, "query", "--code-hash", write_b["code_hash"], "--json").stdout)
    written = {r["location"].rsplit("/", 1)[-1] for r in by_hash if r["op"] == "create"}
    assert written >= {"b.txt", "c.txt"}
    by_program = json.loads(cli(home, "query", "--program", cp, "--op", "create", "--json").stdout)
    assert {r["record_id"] for r in by_program} >= {r["record_id"] for r in by_hash if r["op"] == "create"}
    by_name = json.loads(cli(home, "query", "--program", "cp", "--all-versions", "--op", "create", "--json").stdout)
    assert {r["record_id"] for r in by_name} >= {r["record_id"] for r in by_program}
    python_writes = json.loads(cli(home, "query", "--program", PYTHON, "--op", "create", "--json").stdout)
    assert not {r["record_id"] for r in python_writes} & {r["record_id"] for r in by_program}

    missing = cli(home, "query", "--program", str(tmp_path / "no-such-program"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no program at" in missing.stderr and "Traceback" not in missing.stderr
    lonely = cli(home, "query", "--all-versions")
    assert lonely.returncode == 2 and "--program" in lonely.stderr


def test_where_fanotify_is_refused_the_run_says_which_backend_and_what_it_cannot_see(
    home: Home, tmp_path: Path
) -> None:
    """A user namespace has no CAP_SYS_ADMIN in the initial one: fanotify refuses, for real."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--user", "--map-root-user", "true"], check=False).returncode:
        pytest.skip("user namespaces are not available on this machine (unshare --user)")
    (tmp_path / "in.txt").write_text("x\n")
    result, stderr = run_json(
        home, tmp_path, PYTHON, "-c", "open('out.txt', 'w').write(open('in.txt').read())",
        prefix=(unshare, "--user", "--map-root-user"),
    )  # fmt: skip
    assert result["capture"] == "inotify"
    assert result["watched"] == [str(tmp_path.resolve())]
    notes = " ".join(result["notes"])  # type: ignore[arg-type]
    assert "fanotify unavailable" in notes and "not seen" in notes
    assert "note: fanotify unavailable" in stderr
    assert paths(result["outputs"]) == [str(tmp_path.resolve() / "out.txt")]


def test_an_unreadable_input_and_a_bad_program_are_one_line_each(home: Home, tmp_path: Path) -> None:
    missing = cli(home, "run", "--", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1 and "command not found" in missing.stderr
    failing = cli(home, "run", "--json", "--", PYTHON, "-c", "open('/nonexistent/input.csv')", cwd=tmp_path)
    assert failing.returncode == 1  # the command's own exit code, passed through
    result = json.loads(failing.stdout)
    assert result["inputs"] == [] and result["exit_code"] == 1


def test_an_input_the_agent_cannot_read_is_named_in_the_notes_not_lost_silently(home: Home, tmp_path: Path) -> None:
    """A FIFO is read by the command but has no content to keep: the run says so, and does not hang."""
    work = tmp_path / "work"
    work.mkdir()
    os.mkfifo(work / "pipe")

    def feed() -> None:  # a writer outside the run's process tree
        with open(work / "pipe", "w") as pipe:
            pipe.write("hi")

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        result, stderr = run_json(home, work, PYTHON, "-c", "open('out.txt', 'w').write(open('pipe').read())")
    finally:
        feeder.join(timeout=30)
    assert result["inputs"] == [] and paths(result["outputs"]) == [str(work.resolve() / "out.txt")]
    assert any("could not be read by the agent" in note and "pipe" in note for note in result["notes"])  # type: ignore[union-attr]
    assert "could not be read by the agent" in stderr


def test_records_of_the_old_version_still_verify_index_and_replay(home: Home, net_home: Home, tmp_path: Path) -> None:
    network = load_network(net_home)
    _, identity = enroll_agent(net_home, tmp_path / "old", "old-layout", PASSWORD)
    account = unlock(identity.keystore_path, PASSWORD)
    content = b"written by an agent of the previous release\n"
    cid = CID.for_block(RAW, content)
    host = default_host_id()
    target = tmp_path.resolve() / "legacy.txt"
    code = CodeIdentity(CodeFile("/usr/bin/legacy-tool", hashlib.sha256(b"tool").digest()), argv=("legacy-tool", "x"))
    change = Change(
        time=1_700_000_000 * 10**9,
        host=host,
        location=file_location(host, str(target)),
        op=Op.CREATE,
        capture=Capture(CaptureBackend.MANUAL, True),
        after=ContentRef(hashlib.sha256(content).digest(), len(content), cid),
        code=code,
    )
    with IpfsClient(network.ipfs_api) as ipfs:
        writer = LogWriter(LedgerClient(network.rpc_url, network.contract), ipfs, account)
        entry = writer.record(change, version=1)
        writer.publish([entry], extra_blocks=[(cid, content)])
    assert entry.data[1:3] == b"av" and b"invocation" not in entry.data  # the version 1 layout

    verified = cli(home, "verify", "record", entry.cid.encode(), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["verdict"] == "pass"
    queried = cli(home, "query", "--code-hash", code.legacy_digest.hex(), "--json")
    assert queried.returncode == 0, queried.stderr
    found = json.loads(queried.stdout)
    assert [r["record_id"] for r in found] == [entry.cid.encode()]
    assert json.loads(cli(home, "query", "--program", "/usr/bin/legacy-tool", "--all-versions", "--json").stdout)
    replayed = cli(home, "replay", "state", str(target), "--at", "2030-01-01T00:00:00Z", "--out", str(tmp_path / "r"))
    assert replayed.returncode == 0, replayed.stderr
    assert (tmp_path / "r" / "legacy.txt").read_bytes() == content
