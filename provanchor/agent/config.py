"""The agent's configuration file (TOML), validated strictly.

Every key is documented in `agent/agent.example.toml`. Unknown or mistyped
keys are errors naming the key, never ignored: a typo in `exclude` must not
silently record what the operator meant to leave out.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provanchor.errors import ConfigError

BACKENDS = ("auto", "fanotify", "inotify")
USER_RULES = ("uid", "loginuid")


@dataclass(frozen=True)
class CaptureConfig:
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    backend: str = "auto"
    rescan_interval: float = 300.0
    settle_seconds: float = 1.0
    max_content_bytes: int = 256 * 1024 * 1024
    # Directories never captured, whatever the paths say: the agent's own data directory. Recording
    # its own spool would loop (each record changes the spool), and reading the live SQLite files
    # from the service's process would drop the service's POSIX locks on them, which lets another
    # process delete the WAL under it and lose records.
    internal: tuple[str, ...] = ()

    def excluded(self, path: str) -> bool:
        """Exclusion globs match the absolute path or any of its components' names; internal dirs by prefix."""
        for directory in self.internal:
            if path == directory or path.startswith(directory.rstrip("/") + "/"):
                return True
        name = os.path.basename(path)
        return any(fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude)


@dataclass(frozen=True)
class SnapshotConfig:
    interval: float = 0.0  # seconds between periodic snapshots; 0 = off
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentConfig:
    source: Path
    name: str
    home: Path
    keystore: Path | None
    password_file: Path | None
    host_id: str | None
    capture: CaptureConfig
    batch_size: int = 1024
    batch_interval: float = 1.0
    user_rule: str = "uid"
    fixed_user: str | None = None
    metrics_listen: str | None = "127.0.0.1:9464"
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    openlineage_url: str | None = None
    """Where the service sends its anchored runs as OpenLineage events (None: nowhere)."""


_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "agent": {
        "name": str, "home": str, "keystore": str, "password_file": str, "host_id": str,
        "snapshot_interval": (int, float),
    },
    "capture": {
        "paths": list,
        "exclude": list,
        "backend": str,
        "rescan_interval": (int, float),
        "settle_seconds": (int, float),
        "max_content_bytes": int,
    },
    "batch": {"size": int, "interval": (int, float)},
    "identity": {"user": str},
    "metrics": {"listen": str},
    "snapshot": {"interval": (int, float), "paths": list},
    "openlineage": {"url": str},
}


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    source = Path(path).expanduser().absolute()
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {source} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {source} is not valid TOML: {exc}") from exc
    _check_keys(raw, source)
    agent = raw.get("agent", {})
    capture = raw.get("capture", {})
    batch = raw.get("batch", {})
    identity = raw.get("identity", {})
    metrics = raw.get("metrics", {})
    snapshot = raw.get("snapshot", {})
    lineage_url = raw.get("openlineage", {}).get("url") or None
    if lineage_url is not None and not lineage_url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: openlineage.url must be an http(s) URL, got {lineage_url!r:.80}")
    base = source.parent

    if "name" not in agent:
        raise ConfigError(f"{source}: [agent] name is required")
    if not capture.get("paths"):
        raise ConfigError(f"{source}: [capture] paths must list at least one directory to watch")
    paths = tuple(_watched_path(p, base, source) for p in _strings(capture["paths"], "capture.paths", source))
    backend = capture.get("backend", "auto")
    if backend not in BACKENDS:
        raise ConfigError(f"{source}: capture.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    user = identity.get("user", "uid")
    fixed_user = None
    if user.startswith("fixed:"):
        fixed_user = user.removeprefix("fixed:")
        if not fixed_user:
            raise ConfigError(f"{source}: identity.user 'fixed:' needs a name")
        user = "fixed"
    elif user not in USER_RULES:
        raise ConfigError(f"{source}: identity.user must be uid, loginuid or fixed:NAME, got {user!r}")
    size = batch.get("size", 1024)
    if size < 1:
        raise ConfigError(f"{source}: batch.size must be at least 1")
    interval = float(batch.get("interval", 1.0))
    if interval <= 0:
        raise ConfigError(f"{source}: batch.interval must be positive")
    if "snapshot_interval" in agent and "interval" in snapshot:
        raise ConfigError(f"{source}: give [agent] snapshot_interval or [snapshot] interval, not both")
    snapshot_interval = float(agent.get("snapshot_interval", snapshot.get("interval", 0.0)))
    if snapshot_interval < 0:
        raise ConfigError(f"{source}: the snapshot interval must be 0 (off) or a number of seconds")
    listen = metrics.get("listen", "127.0.0.1:9464")
    if listen and (":" not in listen or not listen.rsplit(":", 1)[1].isdigit()):
        raise ConfigError(f'{source}: metrics.listen must be HOST:PORT (or "" to disable), got {listen!r}')
    home = _path(agent.get("home", os.environ.get("PROVANCHOR_HOME", "~/.provanchor")), base)
    return AgentConfig(
        source=source,
        name=agent["name"],
        home=home,
        keystore=_path(agent["keystore"], base) if "keystore" in agent else None,
        password_file=_path(agent["password_file"], base) if "password_file" in agent else None,
        host_id=agent.get("host_id") or None,
        capture=CaptureConfig(
            paths=paths,
            exclude=tuple(_strings(capture.get("exclude", []), "capture.exclude", source)),
            backend=backend,
            rescan_interval=float(capture.get("rescan_interval", 300.0)),
            settle_seconds=float(capture.get("settle_seconds", 1.0)),
            max_content_bytes=int(capture.get("max_content_bytes", 256 * 1024 * 1024)),
            internal=(os.path.realpath(home),),
        ),
        batch_size=size,
        batch_interval=interval,
        user_rule=user,
        fixed_user=fixed_user,
        metrics_listen=listen or None,
        snapshot=SnapshotConfig(
            interval=snapshot_interval,
            paths=tuple(
                _watched_path(p, base, source) for p in _strings(snapshot.get("paths", []), "snapshot.paths", source)
            )
            or paths,
        ),
        openlineage_url=lineage_url,
    )


def _check_keys(raw: dict[str, Any], source: Path) -> None:
    for section, values in raw.items():
        if section not in _SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}] (known: {', '.join(sorted(_SCHEMA))})")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, value in values.items():
            expected = _SCHEMA[section].get(key)
            if expected is None:
                known = ", ".join(sorted(_SCHEMA[section]))
                raise ConfigError(f"{source}: unknown key {section}.{key} (known in [{section}]: {known})")
            if isinstance(value, bool) or not isinstance(value, expected):
                raise ConfigError(f"{source}: {section}.{key} has the wrong type ({type(value).__name__})")


def _strings(values: Any, name: str, source: Path) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{source}: {name} must be a list of non-empty strings")
    return list(values)


def _path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _watched_path(value: str, base: Path, source: Path) -> str:
    path = _path(value, base)
    if not path.exists():
        raise ConfigError(f"{source}: watched path {path} does not exist")
    if not path.is_dir():
        raise ConfigError(f"{source}: watched path {path} is not a directory")
    return os.path.realpath(path)
