"""Which files a run read are its environment, decided without racing the reader's exit.

On a loaded machine a short-lived interpreter (`python3 clean.py` inside a
pipeline) can exit before the run reads its file events; its reads of its own
installation (lib-dynload's extension modules) then carry no executable, and
once were listed as the run's data inputs. Two rules now hold regardless of
timing: an interpreter's library beside its executable is recognised on disk,
and at the end every file under the prefix of an interpreter the tree ran is
environment, whichever event named it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

from provanchor.agent.capture import EventKind, ProcessInfo, RawEvent
from provanchor.agent.run import RunRecorder, _installation_library, _Observed
from provanchor.pipeline.session import AgentSession


def _installation(root: Path, name: str = "python3.11") -> Path:
    """PREFIX/bin/NAME (executable) and PREFIX/lib/NAME/lib-dynload/, as pyenv or /opt lay them out."""
    (root / "bin").mkdir(parents=True)
    exe = root / "bin" / name
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (root / "lib" / name / "lib-dynload").mkdir(parents=True)
    (root / "share").mkdir()
    return exe


def test_an_interpreters_library_beside_its_executable_is_environment(tmp_path: Path) -> None:
    _installation(tmp_path / "versions" / "3.11.7")
    library = tmp_path / "versions" / "3.11.7" / "lib" / "python3.11"
    assert _installation_library(str(library / "lib-dynload" / "_bz2.cpython-311-x86_64-linux-gnu.so"))
    assert _installation_library(str(library / "random.py"))
    # A data directory that merely has lib/ in its path is not, nor a lib/NAME without bin/NAME.
    assert not _installation_library(str(tmp_path / "project" / "lib" / "python3.11" / "rows.csv"))
    assert not _installation_library(str(tmp_path / "versions" / "3.11.7" / "lib" / "data" / "rows.csv"))
    assert not _installation_library(str(tmp_path / "versions" / "3.11.7" / "share" / "rows.csv"))


def test_a_non_executable_namesake_does_not_make_a_library(tmp_path: Path) -> None:
    exe = _installation(tmp_path / "prefix")
    exe.chmod(0o644)
    assert not _installation_library(str(tmp_path / "prefix" / "lib" / "python3.11" / "os.py"))


def _read(path: Path, process: ProcessInfo | None) -> RawEvent:
    return RawEvent(EventKind.OPEN_READ, str(path), None, False, 4242, process, 1)


def _process(exe: str | None) -> ProcessInfo:
    return ProcessInfo(4242, exe, (), "/", 0, "root", None, None if exe else "process exited before its event was read")


def test_reads_named_only_at_the_end_are_settled_as_environment(tmp_path: Path) -> None:
    exe = _installation(tmp_path / "opt" / "py")
    shared = tmp_path / "opt" / "py" / "share" / "zoneinfo.dat"  # under the prefix, outside lib/NAME
    data = tmp_path / "work" / "raw.csv"
    recorder = RunRecorder(cast(AgentSession, None), "host")

    # As collected: the interpreter had exited, so neither read names an executable.
    observed = {str(p): _Observed(EventKind.OPEN_READ, False, [_read(p, _process(None))]) for p in (shared, data)}
    recorder._settle_environment(observed)
    assert not observed[str(shared)].environment, "nothing yet says whose installation this is"

    # As resolved from the process table at the end: python, from /opt/py/bin.
    named = _process(os.fspath(exe))
    for entry in observed.values():
        entry.events = [RawEvent(e.kind, e.path, None, False, e.pid, named, e.time_ns) for e in entry.events]
    recorder._settle_environment(observed)
    assert observed[str(shared)].environment
    assert not observed[str(data)].environment, "data outside the interpreter's prefix stays an input"


def test_a_prefix_any_interpreter_of_the_tree_ran_from_covers_other_readers(tmp_path: Path) -> None:
    exe = _installation(tmp_path / "opt" / "py")
    shared = tmp_path / "opt" / "py" / "share" / "table.dat"
    script = tmp_path / "work" / "clean.py"
    recorder = RunRecorder(cast(AgentSession, None), "host")
    observed = {
        # `cat` read the file (cat is no interpreter); python ran elsewhere in the same tree.
        str(shared): _Observed(EventKind.OPEN_READ, False, [_read(shared, _process("/usr/bin/cat"))]),
        str(script): _Observed(EventKind.OPEN_READ, False, [_read(script, _process(os.fspath(exe)))]),
    }
    recorder._settle_environment(observed)
    assert observed[str(shared)].environment
    assert not observed[str(script)].environment
