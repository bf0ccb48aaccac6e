"""`replay run`: re-execute a recorded run on its exact inputs and compare every output bit for bit.

The scratch tree mirrors the original file system under ``--out``: a file
recorded at ``/work/data.csv`` is restored at ``OUT/work/data.csv``, and the
command runs in ``OUT/<recorded cwd>``. So relative paths in the recorded
argv resolve into the scratch tree, and argv items that are absolute paths of
the run's inputs, outputs or working directory are rewritten to their mirror;
nothing outside ``--out`` is written by the replay itself.

Before anything runs, the code on this machine (the executable, the script,
and the code files the run read) must hash to what the run recorded; the
differing parts are named and the replay refused unless code drift is
allowed. Code files under the recorded working directory are copied into
the scratch tree (a script run as ``python train.py`` must be found there).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provanchor.errors import CodeDrift, ReplayError, UsageError
from provanchor.formats.cid import CID
from provanchor.ipfs.client import IpfsClient
from provanchor.records import CodeIdentity, parse_file_location
from provanchor.records.codehash import CodeFile
from provanchor.records.environment import env_digest
from provanchor.replay.content import Blob, ContentWriter
from provanchor.replay.isolate import can_isolate, command_line, minimal_directories
from provanchor.replay.paths import OutputTree, check_relative_path, refuse_overlap
from provanchor.replay.source import LedgerRecords

__all__ = ["OutputComparison", "RecordedFile", "RunReplay", "code_drift", "replay_run"]

_Mirror = Callable[[str], Path]
"""Maps an absolute path of the original run to its place in the scratch tree."""


@dataclass(frozen=True)
class RecordedFile:
    path: str
    sha256: bytes
    size: int
    cid: CID | None

    @classmethod
    def from_wire(cls, wire: object, what: str) -> RecordedFile:
        if not isinstance(wire, dict):
            raise ReplayError(f"the run record's {what} entry is not a map")
        location, sha256, size, cid = wire.get("location"), wire.get("sha256"), wire.get("size"), wire.get("cid")
        if not isinstance(location, str) or not isinstance(sha256, bytes) or not isinstance(size, int):
            raise ReplayError(f"the run record's {what} entry lacks location, sha256 or size")
        if cid is not None and not isinstance(cid, CID):
            raise ReplayError(f"the run record's {what} entry has a malformed cid")
        _, path = parse_file_location(location)
        check_relative_path(path.lstrip("/"), f"run {what} {location!r:.120}")
        return cls(path, sha256, size, cid)


@dataclass(frozen=True)
class OutputComparison:
    path: str
    expected: bytes
    actual: bytes | None
    scratch_path: str

    @property
    def match(self) -> bool:
        return self.actual == self.expected

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "expected": self.expected.hex(),
            "actual": self.actual.hex() if self.actual is not None else None,
            "match": self.match,
            "restored_at": self.scratch_path,
        }


@dataclass
class RunReplay:
    run_id: str
    record_id: str
    argv: list[str]
    cwd: str
    scratch: Path
    recorded_exit: int | None
    exit_code: int
    outputs: list[OutputComparison]
    inputs: int
    drift: list[str] = field(default_factory=list)
    env_matches: bool = True
    isolated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return self.reason is None

    @property
    def reason(self) -> str | None:
        """Why the run did not reproduce, or None when it did (every output bit-identical, same exit code)."""
        if not self.outputs:
            return "the run recorded no output: there is nothing to compare, so it cannot be shown to reproduce"
        differing = [o for o in self.outputs if not o.match]
        if differing:
            shown = "; ".join(
                f"{o.path} expected {o.expected.hex()}, got {o.actual.hex() if o.actual else 'no file'}"
                for o in differing[:3]
            )
            more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
            return f"{len(differing)} of {len(self.outputs)} output(s) differ: {shown}{more}"
        if self.exit_code != self.recorded_exit:
            return f"the exit code differs: recorded {self.recorded_exit}, now {self.exit_code}"
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "reproduced": self.reproduced,
            "reason": self.reason,
            "isolated": self.isolated,
            "notes": self.notes,
            "run_id": self.run_id,
            "record_id": self.record_id,
            "argv": self.argv,
            "cwd": self.cwd,
            "out": str(self.scratch),
            "exit_code": {"recorded": self.recorded_exit, "actual": self.exit_code},
            "inputs": self.inputs,
            "outputs": [o.to_json() for o in self.outputs],
            "code_drift": self.drift,
            "env_matches": self.env_matches,
        }


# ---------------------------------------------------------------------------- code


def _now(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").digest()
    except OSError:
        return None


def _describe(kind: str, recorded: CodeFile, now: bytes | None) -> str | None:
    if now == recorded.sha256:
        return None
    if now is None:
        return f"{kind} {recorded.path} is missing (recorded sha256 {recorded.sha256.hex()[:16]})"
    return f"{kind} {recorded.path} changed (recorded sha256 {recorded.sha256.hex()[:16]}, now {now.hex()[:16]})"


def code_drift(code: CodeIdentity, code_files: list[CodeFile]) -> list[str]:
    """Every part of the recorded code that differs on this machine, named; empty when identical."""
    parts: list[tuple[str, CodeFile]] = []
    if code.exe is not None:
        parts.append(("executable", code.exe))
    parts.extend(("script", script) for script in code.scripts)
    parts.extend(("code file", f) for f in code_files)
    return [d for kind, f in parts if (d := _describe(kind, f, _now(f.path))) is not None]


def _code_files(payload: dict[str, object]) -> list[CodeFile]:
    files: list[CodeFile] = []
    for wire in _list(payload.get("code_files")):
        recorded = RecordedFile.from_wire(wire, "code file")
        files.append(CodeFile(recorded.path, recorded.sha256))
    return files


# ---------------------------------------------------------------------------- replay


def replay_run(
    records: LedgerRecords,
    ipfs: IpfsClient | None,
    run_id: str,
    out: str | os.PathLike[str],
    *,
    allow_code_drift: bool = False,
    force: bool = False,
    cache_dir: Path | None = None,
    verify_cache: bool = False,
    timeout: float | None = None,
) -> RunReplay:
    item = records.run(run_id)
    record = item.record
    payload = record.payload or {}
    argv, cwd = payload.get("argv"), payload.get("cwd")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv) or not isinstance(cwd, str):
        raise ReplayError(f"run {run_id} does not record its argv and working directory")
    if not isinstance(record.code, CodeIdentity):
        raise ReplayError(f"run {run_id} hides its code behind a commitment: it cannot be checked or re-run")
    inputs = [RecordedFile.from_wire(w, "input") for w in _list(payload.get("inputs"))]
    outputs = [RecordedFile.from_wire(w, "output") for w in _list(payload.get("outputs"))]
    code_files = _code_files(payload)
    drift = code_drift(record.code, code_files)
    if drift and not allow_code_drift:
        raise CodeDrift(f"the code differs from run {run_id}: {'; '.join(drift)} (use --allow-code-drift to re-run)")
    refuse_overlap(out, cwd, "the run's working directory")
    output = OutputTree(out, force=force)
    try:
        output.prepare()
        scratch = output.root

        def mirror(path: str) -> Path:
            return output.join(check_relative_path(path.lstrip("/"), f"path {path!r:.120}"))

        _restore_inputs(inputs, mirror, ContentWriter(ipfs, cache_dir, verify_every_byte=verify_cache))
        _copy_code(record.code, code_files, cwd, mirror)
        for recorded in outputs:
            mirror(recorded.path).parent.mkdir(parents=True, exist_ok=True)
        work = mirror(cwd) if cwd != "/" else scratch
        work.mkdir(parents=True, exist_ok=True)
        notes: list[str] = []
        binds = _isolation_binds(inputs + outputs, cwd, _environment_paths(payload), mirror, notes)
        if binds is not None:
            command = command_line(binds, cwd, argv)
        else:
            known = {f.path for f in inputs + outputs} | {cwd}
            command = [_rewrite(arg, known, cwd, mirror) for arg in argv]
        exit_code = _execute(command, work, timeout)
    except BaseException:
        output.discard()
        raise
    comparisons = [
        OutputComparison(o.path, o.sha256, _now(str(mirror(o.path))), str(mirror(o.path))) for o in outputs
    ]
    env = payload.get("env")
    recorded_env = env.get("sha256") if isinstance(env, dict) else None
    recorded_exit = payload.get("exit_code")
    return RunReplay(
        run_id,
        item.record_id,
        list(argv),
        cwd,
        scratch,
        recorded_exit if isinstance(recorded_exit, int) else None,
        exit_code,
        comparisons,
        len(inputs),
        drift,
        recorded_env is None or recorded_env == env_digest(dict(os.environ))[0],
        isolated=binds is not None,
        notes=notes,
    )


def _environment_paths(payload: dict[str, object]) -> list[str]:
    entries = _list(payload.get("environment"))
    return [w["path"] for w in entries if isinstance(w, dict) and isinstance(w.get("path"), str)]


def _isolation_binds(
    files: list[RecordedFile], cwd: str, environment: list[str], mirror: _Mirror, notes: list[str]
) -> list[tuple[str, str]] | None:
    """Bind mounts that show the scratch tree at the run's own paths, or None (then argv is rewritten).

    Each directory holding an input or output, and the working directory, is
    covered by its mirror; what the run used from the environment inside one of
    them (a virtual environment under the working directory) is mounted back
    from the original, read as it is.
    """
    if not can_isolate():
        notes.append(
            "not isolated (creating a mount namespace needs root): argv paths were rewritten into --out, "
            "but paths written inside the program itself reach the real files"
        )
        return None
    directories = minimal_directories([os.path.dirname(f.path) for f in files] + [cwd])
    binds: list[tuple[str, str]] = []
    for directory in directories:
        if directory == "/":
            notes.append("files directly under / are not mirrored (the root cannot be covered)")
            continue
        if not os.path.isdir(directory):
            notes.append(f"{directory} does not exist on this machine: the re-run cannot reach it")
            continue
        mirror(directory).mkdir(parents=True, exist_ok=True)
        binds.append((str(mirror(directory)), directory))
    recorded = {f.path for f in files}
    kept_back: set[str] = set()
    for path in environment:
        for _, directory in binds:
            if not path.startswith(directory.rstrip("/") + "/"):
                continue
            top = os.path.join(directory, path[len(directory) :].lstrip("/").split("/", 1)[0])
            if top in kept_back or not os.path.isdir(top):
                continue
            if any(f == top or f.startswith(top + "/") for f in recorded):
                notes.append(f"{top} holds both environment files and the run's data: only the data is mirrored")
                continue
            mirror(top).mkdir(parents=True, exist_ok=True)
            kept_back.add(top)
    binds += [(top, top) for top in sorted(kept_back)]  # mounted after the mirrors: the original, seen again
    return binds


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _restore_inputs(inputs: list[RecordedFile], mirror: _Mirror, writer: ContentWriter) -> None:
    writes: list[tuple[Blob, Path, str]] = []
    for recorded in inputs:
        dest = mirror(recorded.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if recorded.cid is None and _now(recorded.path) == recorded.sha256:
            shutil.copyfile(recorded.path, dest)  # not stored (too large), but the same bytes are still here
            if _now(str(dest)) == recorded.sha256:
                continue
        writes.append((Blob(recorded.sha256, recorded.size, recorded.cid), dest, recorded.path))
    writer.write_all(writes)


def _copy_code(code: CodeIdentity, code_files: list[CodeFile], cwd: str, mirror: _Mirror) -> None:
    """Copy the code that lives with the data (under the working directory) into the scratch tree."""
    prefix = cwd.rstrip("/") + "/"
    candidates = ([code.exe] if code.exe is not None else []) + list(code.scripts) + code_files
    for code_file in candidates:
        if code_file.path.startswith(prefix) and os.path.isfile(code_file.path):
            dest = mirror(code_file.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                shutil.copy2(code_file.path, dest)


def _rewrite(arg: str, known: set[str], cwd: str, mirror: _Mirror) -> str:
    """An absolute path of the run's files (or below its working directory) becomes its scratch mirror."""
    if not arg.startswith("/"):
        return arg
    normalized = os.path.normpath(arg)
    if normalized in known or normalized.startswith(cwd.rstrip("/") + "/"):
        return str(mirror(normalized))
    return arg


def _execute(command: list[str], work: Path, timeout: float | None) -> int:
    try:
        completed = subprocess.run(command, cwd=work, stdout=sys.stderr, timeout=timeout, check=False)
    except FileNotFoundError:
        raise UsageError(f"cannot re-run: command not found: {command[0]}") from None
    except subprocess.TimeoutExpired:
        raise ReplayError(f"the re-run did not finish within {timeout} s") from None
    return completed.returncode


def remember_replay(data_dir: Path, result: RunReplay) -> Path:
    """Keep the outcome of the latest replay of a run (`DATA_DIR/replays/RUN_ID.json`) for the explorer.

    Written to a temporary name and renamed, so a reader never sees half a file. The ledger is not
    touched: this is the replaying machine's own note of what it saw.
    """
    import json
    import time as _time

    directory = data_dir / "replays"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.run_id}.json"
    temporary = path.with_suffix(".tmp")
    body = {**result.to_json(), "replayed_at_ns": _time.time_ns()}
    temporary.write_text(json.dumps(body, default=lambda v: v.hex() if isinstance(v, bytes) else str(v)))
    os.replace(temporary, path)
    return path
