"""What a training run ran on: the interpreter, the installed packages, the hardware, the code and its git commit.

A model is a function of its data, its hyperparameters, its code and the
software underneath; the last two are what make "same data, same settings,
different model" explainable later. Everything here is read, never guessed:
what cannot be determined is left out or null.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from provanchor.errors import DatasetNotFound, InvalidHyperparameter

__all__ = ["code_files", "environment", "git_state", "hash_regular_file", "read_hyperparameters", "regular_file"]

_GIT_TIMEOUT = 5.0


def regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """The resolved path of an existing regular file; otherwise DatasetNotFound naming ``what`` and the path."""
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        state = "is not a regular file" if resolved.exists() else "does not exist"
        raise DatasetNotFound(f"{what} path {os.fspath(path)} {state}")
    return resolved.resolve()


def hash_regular_file(path: str | os.PathLike[str], what: str) -> tuple[Path, bytes, int]:
    """(absolute path, SHA-256, size) of a regular file; a missing one is DatasetNotFound naming ``what``."""
    resolved = regular_file(path, what)
    digest = hashlib.sha256()
    size = 0
    with resolved.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
            size += len(chunk)
    return resolved, digest.digest(), size


def read_hyperparameters(path: str | os.PathLike[str]) -> dict[str, object] | None:
    """The mapping in a ``.json`` or ``.toml`` hyperparameters file; None for other formats.

    A file of a known format that does not hold a mapping is an InvalidHyperparameter.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".json", ".toml"):
        return None
    try:
        data = Path(path).read_bytes()
        parsed = json.loads(data) if suffix == ".json" else tomllib.loads(data.decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidHyperparameter(f"hyperparameters file {os.fspath(path)} is unreadable: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidHyperparameter(f"hyperparameters file {os.fspath(path)} does not hold a mapping")
    return parsed


def code_files(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, object]]:
    """``[{"path": absolute path, "sha256": bytes32}]`` for the training code, sorted by path."""
    entries: list[dict[str, object]] = []
    for path in paths:
        resolved, digest, _ = hash_regular_file(path, "code")
        entries.append({"path": str(resolved), "sha256": digest})
    return sorted(entries, key=lambda e: str(e["path"]))


def git_state(paths: Sequence[str | os.PathLike[str]]) -> dict[str, object] | None:
    """The commit checked out where the first code file lives, and whether its tree is dirty.

    None when there is no code, no git, or the code is not in a repository.
    """
    if not paths:
        return None
    where = Path(paths[0]).expanduser().resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=_GIT_TIMEOUT
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def _packages() -> dict[str, object]:
    """Every installed distribution's version, by normalised name (the environment, not a guess at what matters)."""
    found: dict[str, object] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found[str(name).lower().replace("_", "-")] = dist.version
    return dict(sorted(found.items()))


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _accelerators() -> list[str]:
    """GPUs the driver exposes (NVIDIA's /proc entries); empty when none are visible."""
    root = Path("/proc/driver/nvidia/gpus")
    names = []
    try:
        for entry in sorted(root.iterdir()):
            info = (entry / "information").read_text(encoding="utf-8", errors="replace")
            model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("Model:")), None)
            names.append(model or entry.name)
    except OSError:
        return []
    return names


def environment() -> dict[str, object]:
    """The software and hardware of this process, as stored in a training record."""
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": _packages(),
        "platform": platform.platform(),
        "hardware": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "memory_bytes": _memory_bytes(),
            "accelerators": _accelerators(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        },
    }
