"""A Prometheus text-format metrics endpoint for the agent.

Plain `http.server` in a daemon thread: the agent must not pull in a web
framework for one page. Counters come from a snapshot callable so the numbers
are read when scraped, never cached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from provanchor.errors import ConfigError

Snapshot = Callable[[], dict[str, float | str]]

_HELP = {
    "records_captured": ("counter", "Changes captured since the agent started."),
    "records_spooled": ("gauge", "Records durably committed to the spool (all time)."),
    "records_anchored": ("gauge", "Records covered by an anchored checkpoint."),
    "anchoring_lag_seconds": ("gauge", "Age of the oldest record not yet in a batch."),
    "overflows": ("counter", "Kernel event queue overflows (each triggers a rescan)."),
    "rescans": ("counter", "Rescans of the watched trees."),
    "found_by_rescan": ("counter", "Changes found by rescans rather than events."),
    "unreadable_files": ("counter", "Files the agent could not read (recorded with the reason)."),
    "capture_errors": ("counter", "Events the agent failed to record (logged with the reason)."),
    "changes_pending": ("gauge", "Changes seen but not yet in the spool (files settling, records being committed)."),
    "snapshots_taken": ("counter", "Periodic snapshots taken, recorded and anchored."),
    "snapshot_errors": ("counter", "Periodic snapshots that failed (logged with the reason; retried)."),
}


def render(snapshot: dict[str, float | str]) -> str:
    lines: list[str] = []
    for key, value in snapshot.items():
        if key == "backend":
            lines += [
                "# HELP provanchor_capture_backend The capture backend in use.",
                "# TYPE provanchor_capture_backend gauge",
                f'provanchor_capture_backend{{backend="{value}"}} 1',
            ]
            continue
        kind, text = _HELP.get(key, ("gauge", key.replace("_", " ")))
        name = f"provanchor_{key}" + ("_total" if kind == "counter" else "")
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {float(value):g}"]
    return "\n".join(lines) + "\n"


class MetricsServer:
    def __init__(self, listen: str, snapshot: Snapshot) -> None:
        host, _, port = listen.rpartition(":")
        self._snapshot = snapshot
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = render(outer._snapshot()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        try:
            self._server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen for metrics on {listen}: {exc.strerror}") from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
