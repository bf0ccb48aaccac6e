"""`replay run` on a real network: runs recorded with `provanchor run`, re-executed from their anchored inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provanchor.home import Home
from provanchor.localnet.devagents import enroll_agent

PASSWORD = "replay-run-test"
CLI = [sys.executable, "-m", "provanchor.cli.main"]

TRAIN = """\
import sys
rows = [line.split(",") for line in open(sys.argv[1]).read().splitlines()[1:]]
total = sum(int(a) * int(b) for a, b in rows)
with open(sys.argv[2], "w") as out:
    out.write(f"weighted total {total}\\n")
"""
STAMP = "import sys, time\nopen(sys.argv[1], 'w').write(str(time.time_ns()))\nopen(sys.argv[2], 'w').write('same')\n"


@pytest.fixture(scope="module")
def agent_home(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    return enroll_agent(net_home, tmp_path_factory.mktemp("run-agent"), "rerunner", PASSWORD)[0]


def env(home: Home) -> dict[str, str]:
    return {**os.environ, "PROVANCHOR_HOME": str(home.root), "PROVANCHOR_PASSWORD": PASSWORD}


def record_run(home: Home, work: Path, *argv: str) -> str:
    done = subprocess.run(
        [*CLI, "run", "--flush", "--json", "--", *argv], cwd=work, env=env(home), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["run_id"])


def replay(home: Home, run_id: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "replay", "run", run_id, "--out", str(out), "--json", *extra],
        env=env(home), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def training(agent_home: Home, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    work = tmp_path_factory.mktemp("work").resolve()
    (work / "data.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    (work / "train.py").write_text(TRAIN)
    run_id = record_run(agent_home, work, "python3", "train.py", "data.csv", "result.txt")
    assert (work / "result.txt").read_text() == "weighted total 44\n"
    return {"work": work, "run_id": run_id}


def test_a_run_reproduces_from_its_recorded_inputs(
    agent_home: Home, training: dict[str, object], tmp_path: Path
) -> None:
    work, run_id = training["work"], training["run_id"]
    assert isinstance(work, Path) and isinstance(run_id, str)
    (work / "data.csv").write_text("a,b\n9,9\n")  # the data changed since: the replay must use what the run read
    (work / "result.txt").unlink()
    done = replay(agent_home, run_id, tmp_path / "scratch")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["reproduced"] is True and result["code_drift"] == []
    [output] = result["outputs"]
    assert {"path", "expected", "actual", "match"} <= set(output)
    assert output["path"] == str(work / "result.txt") and output["match"] is True
    mirrored = tmp_path / "scratch" / str(work).lstrip("/")
    assert (mirrored / "data.csv").read_text() == "a,b\n1,2\n3,4\n5,6\n"
    assert (mirrored / "result.txt").read_text() == "weighted total 44\n"
    assert not (work / "result.txt").exists()  # nothing written outside --out
    (work / "data.csv").write_text("a,b\n1,2\n3,4\n5,6\n")


def test_changed_code_is_refused_unless_drift_is_allowed(
    agent_home: Home, training: dict[str, object], tmp_path: Path
) -> None:
    work, run_id = training["work"], training["run_id"]
    assert isinstance(work, Path) and isinstance(run_id, str)
    script = work / "train.py"
    try:
        script.write_text(TRAIN + "# a harmless comment\n")
        refused = replay(agent_home, run_id, tmp_path / "refused")
        assert refused.returncode == 3
        assert refused.stderr.count("\n") == 1 and f"script {script} changed" in refused.stderr
        assert not (tmp_path / "refused").exists()
        harmless = replay(agent_home, run_id, tmp_path / "harmless", "--allow-code-drift")
        assert harmless.returncode == 0, harmless.stderr
        result = json.loads(harmless.stdout)
        assert result["reproduced"] is True and any("train.py" in d for d in result["code_drift"])
        script.write_text(TRAIN.replace("int(a) * int(b)", "int(a) + int(b)"))
        harmful = replay(agent_home, run_id, tmp_path / "harmful", "--allow-code-drift")
        assert harmful.returncode == 1
        result = json.loads(harmful.stdout)
        assert result["reproduced"] is False and result["outputs"][0]["match"] is False
    finally:
        script.write_text(TRAIN)


def test_a_non_deterministic_run_is_not_reproduced(agent_home: Home, tmp_path: Path) -> None:
    work = (tmp_path / "work").resolve()
    work.mkdir()
    (work / "stamp.py").write_text(STAMP)
    run_id = record_run(agent_home, work, "python3", "stamp.py", "when.txt", "fixed.txt")
    done = replay(agent_home, run_id, tmp_path / "again")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["reproduced"] is False
    by_path = {o["path"]: o for o in result["outputs"]}
    assert by_path[str(work / "when.txt")]["match"] is False
    assert by_path[str(work / "fixed.txt")]["match"] is True
    human = subprocess.run(
        [*CLI, "replay", "run", run_id, "--out", str(tmp_path / "human")],
        env=env(agent_home), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert human.returncode == 1 and f"output {work / 'when.txt'}: DIFFERS" in human.stdout


def test_bad_input(agent_home: Home, training: dict[str, object], tmp_path: Path) -> None:
    run_id = training["run_id"]
    assert isinstance(run_id, str)
    unknown = replay(agent_home, "0" * 32, tmp_path / "u")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "no anchored run" in unknown.stderr
    afile = tmp_path / "file"
    afile.write_text("x")
    onfile = replay(agent_home, run_id, afile)
    assert onfile.returncode != 0 and onfile.stderr.count("\n") == 1 and "not a directory" in onfile.stderr
    work = training["work"]
    assert isinstance(work, Path)
    before = sorted(os.listdir(work))
    for live in (work, work.parent):  # --force must never empty the run's own directory
        refused = replay(agent_home, run_id, live, "--force")
        assert refused.returncode != 0 and "overlaps" in refused.stderr and refused.stderr.count("\n") == 1
    assert sorted(os.listdir(work)) == before
