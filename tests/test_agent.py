"""The provenance agent as a real service: real programs write, records come out.

Each test starts `provanchor agent start --config FILE` as a subprocess on a
real local network (anvil + Kubo), runs ordinary programs in a watched
directory, stops the agent with SIGTERM and reads back what it recorded.
fanotify is available on these machines (root); the inotify backend is forced
through the config.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from helpers.agent_service import CLI, Agent, path_of
from helpers.waiting import wait_until

from provanchor.home import Home
from provanchor.records import Op, Record, code_hash, identify_command, parse_file_location


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sh(command: str, cwd: Path) -> None:
    subprocess.run(["bash", "-c", command], cwd=cwd, check=True)


@pytest.mark.parametrize("backend", ["fanotify", "inotify"])
def test_real_programs_produce_the_expected_records(net_home: Home, tmp_path: Path, backend: str) -> None:
    agent = Agent(net_home, tmp_path, f"programs-{backend}", backend)
    agent.start()
    d = agent.data
    big = os.urandom(8 * 1024 * 1024)  # large enough that cp is still alive when its events are read
    (tmp_path / "big.bin").write_bytes(big)
    # Each change waits for the agent to spool the one before, so every change is its own record.
    sh("echo hello > a.txt", d)
    agent.wait_for((Op.CREATE, d / "a.txt"))
    sh(f"cp {tmp_path / 'big.bin'} copy.bin", d)
    agent.wait_for((Op.CREATE, d / "copy.bin"))
    sh("mv copy.bin moved.bin", d)
    agent.wait_for((Op.RENAME, d / "moved.bin"))
    sh("dd if=/dev/zero of=moved.bin bs=4 count=1 conv=notrunc status=none", d)
    agent.wait_for((Op.WRITE, d / "moved.bin"))
    sh("truncate -s 0 a.txt", d)
    agent.wait_for((Op.TRUNCATE, d / "a.txt"))
    sh("rm moved.bin", d)
    script = tmp_path / "writer.py"
    script.write_text("import sys, time\nopen(sys.argv[1], 'w').write('from python\\n')\ntime.sleep(0.5)\n")
    subprocess.run([sys.executable, str(script), str(d / "py.txt")], check=True)
    shell_script = tmp_path / "writer.sh"
    shell_script.write_text("#!/bin/bash\necho 'from bash' > \"$1\"\nsleep 0.5\n")
    subprocess.run(["bash", str(shell_script), str(d / "sh.txt")], check=True)
    agent.wait_for((Op.DELETE, d / "moved.bin"), (Op.CREATE, d / "py.txt"), (Op.CREATE, d / "sh.txt"))
    agent.stop()
    records = agent.records()
    by = [(r.op, path_of(r).removeprefix(str(d) + "/")) for r in records]
    assert agent.anchored() == len(records)  # SIGTERM flushed everything to the chain

    def find(op: Op, name: str) -> Record:
        matches = [r for r in records if r.op == op and path_of(r) == str(d / name)]
        assert matches, f"no {op} record for {name}; got {by}"
        return matches[-1]

    created = find(Op.CREATE, "a.txt")
    assert created.after is not None and created.after.sha256 == sha(b"hello\n") and created.before is None
    copied = find(Op.CREATE, "copy.bin")
    assert copied.after is not None and copied.after.sha256 == sha(big) and copied.after.cid is not None
    renamed = find(Op.RENAME, "moved.bin")
    assert renamed.from_location is not None and parse_file_location(renamed.from_location)[1] == str(d / "copy.bin")
    assert renamed.before is not None and renamed.before.sha256 == sha(big)
    written = find(Op.WRITE, "moved.bin")
    assert written.after is not None and written.after.sha256 == sha(b"\0" * 4 + big[4:])
    assert written.before is not None and written.before.sha256 == sha(big)
    truncated = find(Op.TRUNCATE, "a.txt")
    assert truncated.after is not None and truncated.after.size == 0
    deleted = find(Op.DELETE, "moved.bin")
    assert deleted.after is None and deleted.before is not None
    py = find(Op.CREATE, "py.txt")
    shell = find(Op.CREATE, "sh.txt")
    # seq is gap-free and prev links chain the records.
    assert [r.seq for r in records] == list(range(len(records)))
    assert all(b.prev == a.hash for a, b in itertools.pairwise(records))

    if backend == "inotify":
        for record in records:
            assert not record.capture.attributed and record.code is None and record.pid is None
            assert record.capture.reason and "inotify" in record.capture.reason
        return
    # fanotify: writers are named by content, following the documented code_hash rule.
    cp_exe = os.path.realpath(shutil.which("cp") or "/bin/cp")
    assert copied.capture.attributed and copied.code is not None and copied.code.exe is not None
    assert copied.code.exe.path == cp_exe and copied.code.exe.sha256 == sha(Path(cp_exe).read_bytes())
    assert copied.code_hash == code_hash(identify_command(cp_exe, copied.code.argv, str(d)))
    assert copied.user == "root" and copied.uid == 0 and copied.pid is not None
    assert py.capture.attributed and py.code is not None
    assert [s.sha256 for s in py.code.scripts] == [sha(script.read_bytes())]
    assert shell.capture.attributed and shell.code is not None
    assert [s.sha256 for s in shell.code.scripts] == [sha(shell_script.read_bytes())]
    for record in records:  # never a guessed writer: unattributed records say why
        if not record.capture.attributed:
            assert record.code is None and record.capture.reason


@pytest.mark.parametrize("backend", ["fanotify", "inotify"])
def test_a_burst_of_10000_files_loses_nothing(net_home: Home, tmp_path: Path, backend: str) -> None:
    agent = Agent(net_home, tmp_path, f"burst-{backend}", backend)
    agent.start()
    writer = "import sys\nfor i in range(10000):\n    open(f'{sys.argv[1]}/f{i}', 'w').write(str(i))\n"
    subprocess.run([sys.executable, "-c", writer, str(agent.data)], check=True)
    wait_until(lambda: agent.status().get("records_spooled", 0) >= 10000, 60, "10,000 records spooled")
    agent.stop()
    creates = [r for r in agent.records() if r.op == Op.CREATE]
    assert len(creates) == 10000
    assert {path_of(r) for r in creates} == {str(agent.data / f"f{i}") for i in range(10000)}
    assert all(r.after is not None and r.after.sha256 == sha(path_of(r).rsplit("f", 1)[1].encode()) for r in creates)


def test_restart_resumes_seq_and_finds_changes_made_while_down(net_home: Home, tmp_path: Path) -> None:
    agent = Agent(net_home, tmp_path, "restart", "fanotify")
    (agent.data / "before-start.txt").write_text("baseline\n")
    agent.start()
    (agent.data / "live.txt").write_text("live\n")
    agent.wait_for((Op.CREATE, agent.data / "live.txt"))
    agent.stop()
    first = agent.records()
    # Changes while the agent is down: modify, create, delete.
    (agent.data / "live.txt").write_text("changed while down\n")
    (agent.data / "offline.txt").write_text("created while down\n")
    (agent.data / "before-start.txt").unlink()
    agent.start()
    d = agent.data
    agent.wait_for((Op.WRITE, d / "live.txt"), (Op.CREATE, d / "offline.txt"), (Op.DELETE, d / "before-start.txt"))
    agent.stop()
    records = agent.records()
    assert [r.seq for r in records] == list(range(len(records)))
    assert records[: len(first)] == first
    later = records[len(first) :]
    found = {(r.op, os.path.basename(path_of(r))) for r in later}
    assert found == {(Op.WRITE, "live.txt"), (Op.CREATE, "offline.txt"), (Op.DELETE, "before-start.txt")}
    assert all(r.capture.backend.value == "rescan" and r.capture.reason for r in later)
    baseline = [r for r in first if os.path.basename(path_of(r)) == "before-start.txt"]
    assert baseline and baseline[0].capture.backend.value == "rescan"  # the baseline taken at first start


def test_metrics_status_and_sigterm(net_home: Home, tmp_path: Path) -> None:
    agent = Agent(net_home, tmp_path, "metrics", "auto")
    agent.start()
    (agent.data / "m.txt").write_text("metric\n")
    agent.wait_for((Op.CREATE, agent.data / "m.txt"))
    wait_until(lambda: agent.status().get("records_captured", 0) >= 1, 30, "the status file to count the capture")
    text = urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics", timeout=5).read().decode()
    assert 'provanchor_capture_backend{backend="fanotify"} 1' in text
    for name in (
        "provanchor_records_captured_total",
        "provanchor_records_spooled",
        "provanchor_records_anchored",
        "provanchor_anchoring_lag_seconds",
        "provanchor_overflows_total",
        "provanchor_rescans_total",
    ):
        assert f"\n{name} " in "\n" + text, name
    status = subprocess.run(
        [*CLI, "agent", "status", "--json"], env=agent.env(), capture_output=True, text=True, check=True
    )
    data = json.loads(status.stdout)
    assert data["running"] is True and data["backend"] == "fanotify" and data["records_captured"] >= 1
    agent.stop()
    assert "flushed" in agent.stderr
    stopped = json.loads(
        subprocess.run(
            [*CLI, "agent", "status", "--json"], env=agent.env(), capture_output=True, text=True, check=True
        ).stdout
    )
    assert stopped["running"] is False and stopped["records_anchored"] == stopped["records_spooled"]


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_configs_and_unregistered_keys(net_home: Home, tmp_path: Path) -> None:
    agent = Agent(net_home, tmp_path, "stranger", "auto", approve=False)

    def start(config_text: str) -> subprocess.CompletedProcess[str]:
        config = tmp_path / "bad.toml"
        config.write_text(config_text)
        return subprocess.run(
            [*CLI, "agent", "start", "--config", str(config)],
            env=agent.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    good = agent.config.read_text()
    one_line_error(start(good), "not registered")
    one_line_error(start(good.replace(str(agent.data), str(tmp_path / "missing"))), "does not exist")
    one_line_error(start(good + "\n[capture.extra]\n"), "")
    one_line_error(start(good.replace("settle_seconds", "setle_seconds")), "setle_seconds")
    one_line_error(start(good.replace('backend = "auto"', 'backend = "ebpf"')), "backend")
    one_line_error(start(good.replace('backend = "auto"', "backend = 3")), "wrong type")
    one_line_error(start("not toml ["), "TOML")
    snapshots = good.replace('name = "stranger"', 'name = "stranger"\nsnapshot_interval = 60')
    one_line_error(start(snapshots + "\n[snapshot]\ninterval = 30\n"), "not both")
    one_line_error(start(good + "\n[snapshot]\ninterval = -1\n"), "snapshot interval")
    one_line_error(start(snapshots.replace("= 60", '= "often"')), "wrong type")
    done = subprocess.run(
        [*CLI, "agent", "start", "--config", str(tmp_path / "nope.toml")],
        env=agent.env(),
        capture_output=True,
        text=True,
    )
    one_line_error(done, "does not exist")


def test_inotify_warning_and_fallback_without_cap_sys_admin(net_home: Home, tmp_path: Path) -> None:
    """Without CAP_SYS_ADMIN `auto` falls back to inotify and says writers cannot be attributed."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed, so capabilities cannot be dropped")
    agent = Agent(net_home, tmp_path, "nocap", "auto")
    agent.spawn("setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin")
    assert agent.wait_running()["backend"] == "inotify"
    (agent.data / "x.txt").write_text("x\n")
    agent.wait_for((Op.CREATE, agent.data / "x.txt"))
    agent.stop()
    assert "using inotify" in agent.stderr and "cannot be attributed" in agent.stderr
    records = agent.records()
    assert records and all(not r.capture.attributed for r in records)


def test_provanchor_run_lists_exactly_its_inputs_and_outputs(net_home: Home, tmp_path: Path) -> None:
    agent = Agent(net_home, tmp_path, "runner", "auto")
    work = agent.data
    (work / "raw.csv").write_text("a,b\n1,2\n3,4\n")
    (work / "unrelated.txt").write_text("not touched\n")
    (work / "clean.py").write_text(
        "import sys, os\nrows = open(sys.argv[1]).read().splitlines()\n"
        "tmp = sys.argv[2] + '.tmp'\nopen(tmp, 'w').write('\\n'.join(r.upper() for r in rows) + '\\n')\n"
        "os.rename(tmp, sys.argv[2])\n"
    )
    (work / "report.sh").write_text('#!/bin/sh\nwc -l "$1" > "$2"\n')
    pipeline = "cat raw.csv > staged.csv && python3 clean.py staged.csv clean.csv && sh report.sh clean.csv report.txt"
    done = subprocess.run(
        [*CLI, "run", "--json", "--name", "pipeline", "--", "sh", "-c", pipeline],
        cwd=work,
        env=agent.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) >= {"run_id", "exit_code", "inputs", "outputs"} and result["exit_code"] == 0
    assert [i["path"] for i in result["inputs"]] == [str(work / "raw.csv")]
    assert sorted(o["path"] for o in result["outputs"]) == sorted(
        str(work / n) for n in ("staged.csv", "clean.csv", "report.txt")
    )
    assert (
        next(o for o in result["outputs"] if o["path"].endswith("clean.csv"))["sha256"] == sha(b"A,B\n1,2\n3,4\n").hex()
    )
    records = agent.records()
    run = [r for r in records if r.op == Op.RUN]
    assert len(run) == 1 and run[0].run == result["run_id"] and run[0].payload is not None
    assert run[0].payload["exit_code"] == 0 and run[0].payload["argv"] == ["sh", "-c", pipeline]
    outputs = [r for r in records if r.run == result["run_id"] and r.op != Op.RUN]
    assert sorted(os.path.basename(path_of(r)) for r in outputs) == ["clean.csv", "report.txt", "staged.csv"]
    # The command's exit code passes through.
    failed = subprocess.run(
        [*CLI, "run", "--", "sh", "-c", "exit 3"], cwd=work, env=agent.env(), capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 3


def test_systemd_unit_is_valid(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    unit = (Path(__file__).parents[1] / "agent" / "provanchor-agent.service").read_text()
    exe = shutil.which("provanchor") or str(Path(sys.executable).parent / "provanchor")
    unit = unit.replace("/usr/local/bin/provanchor", exe)
    path = tmp_path / "provanchor-agent.service"
    path.write_text(unit)
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    problems = [line for line in done.stderr.splitlines() if "provanchor-agent.service" in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_mmap_writes_and_files_gone_before_they_are_read(net_home: Home, tmp_path: Path) -> None:
    agent = Agent(net_home, tmp_path, "mmap", "fanotify")
    agent.start()
    target = agent.data / "mapped.bin"
    target.write_bytes(b"\0" * 4096)
    agent.wait_for((Op.CREATE, target))
    # Write through a shared mapping after the descriptor is closed: no close-after-write follows.
    writer = (
        "import mmap, sys, time\nf = open(sys.argv[1], 'r+b')\nm = mmap.mmap(f.fileno(), 4096)\nf.close()\n"
        "m[:5] = b'MMAP!'\nm.flush()\ntime.sleep(2.0)\nm.close()\n"
    )
    subprocess.run([sys.executable, "-c", writer, str(target)], check=True)
    # Created and deleted at once: the agent cannot read it, and must say so.
    sh("for i in 1 2 3 4 5; do echo gone > ephemeral$i.txt; rm ephemeral$i.txt; done", agent.data)
    agent.wait_for(*[(Op.DELETE, agent.data / f"ephemeral{i}.txt") for i in range(1, 6)], (Op.WRITE, target))
    agent.stop()
    records = agent.records()
    mapped = [r for r in records if path_of(r) == str(target) and r.op == Op.WRITE]
    assert mapped, [(r.op, path_of(r)) for r in records]
    assert mapped[-1].after is not None and mapped[-1].after.sha256 == sha(b"MMAP!" + b"\0" * 4091)
    for i in range(1, 6):
        mine = [r for r in records if path_of(r) == str(agent.data / f"ephemeral{i}.txt")]
        assert mine and mine[-1].op == Op.DELETE, [(r.op, path_of(r)) for r in records]
        created = [r for r in mine if r.op == Op.CREATE]
        assert created  # never silently dropped
        if created[0].after is None:
            assert created[0].capture.reason and "before the agent could read it" in created[0].capture.reason


def test_an_unreadable_file_is_recorded_with_the_reason(net_home: Home, tmp_path: Path) -> None:
    """An agent without the right to read a file records that it could not, and keeps running."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed, so the agent cannot be run as another user")
    probe = subprocess.run(
        [
            "setpriv",
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            sys.executable,
            "-c",
            "import provanchor.agent.service",
        ],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("this checkout is not readable by user nobody (a private directory), so the agent cannot run as it")
    base = Path(tempfile.mkdtemp(prefix="provanchor-nobody-"))  # pytest's tmp_path is private to root
    try:
        os.chmod(base, 0o755)
        agent = Agent(net_home, base, "nobody", "auto")
        for path in [agent.home.root, *agent.home.root.rglob("*")]:
            os.chown(path, 65534, 65534)
        agent.spawn("setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups")
        agent.wait_running()
        secret = agent.data / "secret.txt"
        secret.write_text("for root only\n")
        os.chmod(secret, 0o600)
        (agent.data / "public.txt").write_text("for everyone\n")
        agent.wait_for((Op.CHMOD, secret), (Op.CREATE, agent.data / "public.txt"))
        agent.stop()
        everything = agent.records()
        records = {path_of(r): r for r in everything}
        # The secret's history: its creation and writes (content unreadable, and saying so), its chmod.
        secret_records = [r for r in everything if path_of(r) == str(secret)]
        assert all(r.after is None for r in secret_records), "nothing the agent could not read has content"
        reasons = [r.capture.reason or "" for r in secret_records if r.op in (Op.CREATE, Op.WRITE)]
        assert reasons and all("could not read" in reason for reason in reasons), reasons
        public = records[str(agent.data / "public.txt")]
        assert public.after is not None and public.after.sha256 == sha(b"for everyone\n")
    finally:
        shutil.rmtree(base, ignore_errors=True)
