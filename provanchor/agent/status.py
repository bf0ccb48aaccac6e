"""`agent status`: what the running service last reported, and whether it still runs."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from provanchor.errors import ConfigError
from provanchor.home import Home
from provanchor.identity import load_identity

_STALE_SECONDS = 10.0


def read_status(home: Home, config_path: str | None = None) -> dict[str, Any]:
    from provanchor.agent.service import _keystore_address, status_path

    if config_path is not None:
        from provanchor.agent.config import load_config

        config = load_config(config_path)
        home = Home(config.home)
        address = _keystore_address(config.keystore) if config.keystore else load_identity(home).address
    else:
        address = load_identity(home).address
    path = status_path(home, address)
    if not path.exists():
        return {"address": address, "running": False, "reason": "the agent service has never run here"}
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"agent status file {path} is unreadable: {exc}") from exc
    alive = _alive(int(data.get("pid", 0)))
    fresh = time.time() - float(data.get("updated", 0)) < _STALE_SECONDS
    data["running"] = alive and fresh and not data.get("stopping", False)
    if not data["running"]:
        data["reason"] = "stopped" if not alive else "not reporting (hung?)" if not fresh else "stopping"
    return data


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
