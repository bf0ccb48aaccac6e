"""OpenLineage events on their way to a lineage server: kept on disk until delivered, never dropped.

Every event is written to ``HOME/openlineage/outbox/`` (one JSON file per
event, written to a temporary name, fsynced, then renamed) before it is sent,
and its file is removed only after the server answered 2xx. An unreachable
server therefore costs nothing: the next delivery attempt, by any command
that emits (``export openlineage --emit``, ``run --openlineage``, the agent
service with ``[openlineage] url``), sends what waits first, oldest first.

Sending uses the openlineage-python client's HTTP transport, so what a
Marquez or any OpenLineage endpoint receives is what the reference client
sends.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provanchor.errors import EmitFailed, UsageError
from provanchor.home import Home

__all__ = ["Delivery", "Outbox", "check_url"]


@dataclass(frozen=True)
class Delivery:
    """What one delivery attempt did."""

    url: str
    sent: int
    waiting: int
    error: str | None

    def to_json(self) -> dict[str, object]:
        return {"url": self.url, "sent": self.sent, "waiting": self.waiting, "error": self.error}


def check_url(url: str) -> str:
    """An OpenLineage endpoint's base URL (http or https), as the client's HttpConfig takes it."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"an OpenLineage URL is http(s)://HOST[:PORT][/PATH], got {url!r:.80}")
    return url


class Outbox:
    def __init__(self, home: Home) -> None:
        self.directory = home.root / "openlineage" / "outbox"

    def keep(self, url: str, events: Sequence[dict[str, Any]]) -> list[Path]:
        """Write each event durably before any attempt to send it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        kept = []
        for event in events:
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
            path = self.directory / name
            temporary = path.with_suffix(".tmp")
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump({"url": url, "event": event}, handle, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            kept.append(path)
        if kept:
            _sync_directory(self.directory)
        return kept

    def waiting(self, url: str | None = None) -> list[tuple[Path, str, dict[str, Any]]]:
        """(file, url, event) of every event not delivered yet, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # a file being written by another process right now
            usable = isinstance(entry, dict) and isinstance(entry.get("event"), dict)
            usable = usable and isinstance(entry.get("url"), str)
            if usable and (url is None or entry["url"] == url):
                found.append((path, entry["url"], entry["event"]))
        return found

    def deliver(self, url: str | None = None, timeout: float = 5.0) -> list[Delivery]:
        """Send what waits (for `url`, or for every URL), oldest first; stop at a URL's first failure."""
        by_url: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
        for path, target, event in self.waiting(url):
            by_url.setdefault(target, []).append((path, event))
        results = []
        for target, entries in by_url.items():
            sent, error = 0, None
            session = _Sender(target, timeout)
            for path, event in entries:
                error = session.send(event)
                if error is not None:
                    break
                path.unlink(missing_ok=True)
                sent += 1
            results.append(Delivery(target, sent, len(entries) - sent, error))
        return results

    def emit(self, url: str, events: Sequence[dict[str, Any]], timeout: float = 5.0) -> Delivery:
        """Keep `events`, then deliver everything waiting for `url`; EmitFailed if anything is left."""
        check_url(url)
        self.keep(url, events)
        results = self.deliver(url, timeout=timeout)
        delivery = results[0] if results else Delivery(url, 0, 0, None)
        if delivery.error is not None:
            raise EmitFailed(
                f"could not deliver to {url} ({delivery.error}): {delivery.waiting} event(s) kept in "
                f"{self.directory} and sent first by the next emit"
            )
        return delivery


class _Sender:
    """The openlineage-python client's HTTP transport, posting event dicts as they are."""

    def __init__(self, url: str, timeout: float) -> None:
        from openlineage.client.transport.http import HttpConfig, HttpTransport

        retry = {"total": 1, "connect": 1, "read": 1, "backoff_factor": 0.2, "status_forcelist": [502, 503, 504]}
        self.transport = HttpTransport(HttpConfig(url=url, timeout=timeout, retry=retry))

    def send(self, event: dict[str, Any]) -> str | None:
        """None when delivered, else why not (one line). The client's Serde passes a dict through as it is."""
        try:
            self.transport.emit(event)  # type: ignore[arg-type]
        except Exception as exc:  # the transport raises requests' errors and more: all mean "not delivered"
            return _reason(exc)
        return None


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
