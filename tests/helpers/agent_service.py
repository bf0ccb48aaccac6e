"""The agent service as tests run it: an enrolled identity, a config, and `provanchor agent start` as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers.waiting import wait_until
from provanchor.home import Home
from provanchor.localnet.devagents import enroll_agent
from provanchor.localnet.tools import free_port
from provanchor.records import Op, Record, decode_record, parse_file_location

PASSWORD = "agent-test-password"
CLI = [sys.executable, "-m", "provanchor.cli.main"]


class Agent:
    """One agent identity, its config, and the service process."""

    def __init__(
        self, net_home: Home, root: Path, name: str, backend: str, approve: bool = True, extra: str = ""
    ) -> None:
        self.home, self.identity = enroll_agent(net_home, root / "home", name, PASSWORD, approve=approve)
        self.data = root / "data"
        self.data.mkdir()
        self.metrics_port = free_port()
        self.config = root / "agent.toml"
        self.config.write_text(
            f'[agent]\nname = "{name}"\nhome = "{self.home.root}"\n'
            f'[capture]\npaths = ["{self.data}"]\nbackend = "{backend}"\nsettle_seconds = 0.5\n'
            f'[batch]\ninterval = 0.3\n[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n{extra}'
        )
        self.process: subprocess.Popen[str] | None = None
        self.stderr = ""

    def env(self) -> dict[str, str]:
        return {**direct_python_env(), "PROVANCHOR_HOME": str(self.home.root), "PROVANCHOR_PASSWORD": PASSWORD}

    def spawn(self, *wrapper: str) -> None:
        """Start the service without waiting for it, optionally under a wrapper (``setpriv ...``)."""
        self.process = subprocess.Popen(
            [*wrapper, *CLI, "agent", "start", "--config", str(self.config)],
            env=self.env(),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )

    @property
    def status_file(self) -> Path:
        return self.home.root / "agents" / self.identity.address.lower() / "status.json"

    def status(self) -> dict[str, Any]:
        """The service's status.json, {} before it wrote one."""
        try:
            found: dict[str, Any] = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}
        return found

    def wait_running(self, timeout: float = 60.0) -> dict[str, Any]:
        """Until the service reports its capture backend (its watches are in place): its status."""

        def running() -> dict[str, Any] | None:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"agent exited: {self.process.stderr.read() if self.process.stderr else ''}")
            current = self.status()
            mine = self.process is None or current.get("pid") == self.process.pid
            return current if current.get("backend") and mine and not current.get("stopping") else None

        return wait_until(running, timeout, "the agent service to report its capture backend")

    def start(self) -> None:
        self.spawn()
        self.wait_running()

    def wait_for(self, *wanted: tuple[Op, Path], timeout: float = 60.0) -> list[Record]:
        """Until the spool holds a record of each (op, path): the records so far."""

        def spooled() -> list[Record] | None:
            records = self.records() if list((self.home.root / "agents").glob("*/spool.sqlite")) else []
            seen = {(r.op, path_of(r)) for r in records}
            return records if all((op, str(path)) in seen for op, path in wanted) else None

        what = ", ".join(f"{op.value} {path}" for op, path in wanted)
        return wait_until(spooled, timeout, f"records of {what}")

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        _, self.stderr = self.process.communicate(timeout=120)
        assert self.process.returncode == 0, self.stderr

    def records(self) -> list[Record]:
        db = next((self.home.root / "agents").glob("*/spool.sqlite"))
        with sqlite3.connect(db) as connection:
            rows = connection.execute("SELECT data FROM records ORDER BY seq").fetchall()
        return [decode_record(bytes(r[0])) for r in rows]

    def anchored(self) -> int:
        db = next((self.home.root / "agents").glob("*/spool.sqlite"))
        with sqlite3.connect(db) as connection:
            row = connection.execute("SELECT MAX(end_seq) FROM batches WHERE state = 'anchored'").fetchone()
        return int(row[0] or 0)


def direct_python_env() -> dict[str, str]:
    """This environment with the real interpreter's directory first on PATH.

    A version manager's shim (pyenv's `python3` is a bash script that sources
    hooks and reads version files) really does read those files, and a
    recorded run rightly lists them as inputs; tests that count a command's
    exact inputs call the interpreter directly.
    """
    real_bin = os.path.dirname(os.path.realpath(sys.executable))
    return {**os.environ, "PATH": real_bin + os.pathsep + os.environ.get("PATH", "")}


def path_of(record: Record) -> str:
    """The local path of a record's file:// location."""
    return parse_file_location(str(record.location))[1]
