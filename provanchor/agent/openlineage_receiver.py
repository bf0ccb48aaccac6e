"""`provanchor openlineage serve`: OpenLineage events in, each a signed record of this agent, durable before 200.

The endpoint is Marquez's, ``POST /api/v1/lineage``, so an orchestrator's
existing OpenLineage HTTP transport (Airflow, Spark, dbt) needs only a new
URL. For each event:

1. the body is read (at most ``MAX_EVENT_BYTES``; more is a 413, and a body
   over 16 MiB is not even read) and admitted as a RunEvent by
   :func:`provanchor.records.openlineage.parse_lineage_event`; a malformed
   event is a 400 whose JSON body says why, and nothing is recorded;
2. a ``lineage`` record is built: the location is the job
   (``openlineage://NAMESPACE/job/NAME``), ``run`` the event's runId, the
   payload the event as received and its sha256; ``capture.attributed`` is
   false, because provanchor did not watch the job itself, only received what
   its producer reported;
3. the record is signed and committed to the agent's spool (SQLite,
   synchronous=FULL) and only then does the answer go out: 200 with the
   record id. A crash after the answer loses nothing; batching and anchoring
   run in the background and resume from the spool.

With ``token`` every request needs ``Authorization: Bearer TOKEN`` (the
client's ``api_key`` auth sends exactly that).
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from provanchor.errors import BadLineageEvent, LineageEventTooLarge, RecordError
from provanchor.pipeline.recorder import RecordRef
from provanchor.pipeline.session import AgentSession
from provanchor.records import Capture, CaptureBackend, Change, Op
from provanchor.records.openlineage import MAX_EVENT_BYTES, LineageEvent, lineage_payload, parse_lineage_event

__all__ = ["ENDPOINT", "LineageReceiver", "lineage_change"]

ENDPOINT = "/api/v1/lineage"
_DRAIN_LIMIT = 16 * 1024 * 1024


def lineage_change(event: LineageEvent, body: bytes, host_id: str, now_ns: int | None = None) -> Change:
    """The change a received event becomes (validated again when it is placed in the log)."""
    return Change(
        time=now_ns if now_ns is not None else time.time_ns(),
        host=host_id,
        location=event.job_location,
        op=Op.LINEAGE,
        capture=Capture(
            backend=CaptureBackend.OPENLINEAGE,
            attributed=False,
            reason=f"reported by its producer ({event.producer[:200]}); provanchor did not watch the job",
        ),
        run=event.run_id,
        payload=lineage_payload(body),
    )


@dataclass
class LineageReceiver:
    """The HTTP face over one agent session; `serve_forever` until `shutdown`."""

    session: AgentSession
    host_id: str
    listen: tuple[str, int] = ("127.0.0.1", 5000)
    token: str | None = None
    limit: int = MAX_EVENT_BYTES
    on_record: Callable[[RecordRef, LineageEvent], None] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "provanchor-openlineage"
            sys_version = ""

            def log_message(self, format: str, *args: object) -> None:
                return  # the CLI reports records; request lines would only add noise

            def do_POST(self) -> None:
                receiver._post(self)

            def do_GET(self) -> None:
                if not receiver._authorised(self):
                    return
                if self.path == "/health":
                    _answer(self, 200, {"status": "ok", "agent": receiver.session.address})
                else:
                    _answer(self, 404 if self.path != ENDPOINT else 405, {"error": f"POST events to {ENDPOINT}"})

        self.server = ThreadingHTTPServer(self.listen, Handler)
        self.server.daemon_threads = True

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _authorised(self, request: BaseHTTPRequestHandler) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return True
        _answer(request, 401, {"error": "a bearer token is required (Authorization: Bearer TOKEN)"})
        return False

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        if not self._authorised(request):
            return
        if request.path.split("?", 1)[0] != ENDPOINT:
            _answer(request, 404, {"error": f"POST events to {ENDPOINT}"})
            return
        length_text = request.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            _answer(request, 411, {"error": "a Content-Length header is required"})
            return
        length = int(length_text)
        if length > self.limit:
            # Read (and drop) a moderately oversized body so that the client sees the 413, not a reset;
            # beyond that, answer at once and close.
            if length <= _DRAIN_LIMIT:
                for _ in range(0, length, 65536):
                    request.rfile.read(min(65536, length))
                    length -= 65536
            request.close_connection = True
            size = int(length_text)
            _answer(request, 413, {"error": f"event of {size:,} bytes is over the limit of {self.limit:,} bytes"})
            return
        body = request.rfile.read(length)
        if request.headers.get("Content-Encoding", "identity").lower() not in ("identity", ""):
            _answer(request, 415, {"error": "send events uncompressed (Content-Encoding identity)"})
            return
        try:
            event = parse_lineage_event(body, self.limit)
        except LineageEventTooLarge as exc:
            _answer(request, 413, {"error": str(exc)})
            return
        except BadLineageEvent as exc:
            _answer(request, 400, {"error": str(exc)})
            return
        try:
            with self._lock:
                ref = self.session.record(lineage_change(event, body, self.host_id))
        except RecordError as exc:
            _answer(request, 400, {"error": f"the event cannot be recorded: {exc}"})
            return
        except Exception as exc:  # the spool refused (disk full...): the producer must retry
            _answer(request, 503, {"error": f"not recorded, retry later: {str(exc).splitlines()[0][:200]}"})
            return
        if self.on_record is not None:
            self.on_record(ref, event)
        _answer(request, 200, {"record_id": ref.record_id, "seq": ref.seq, "run_id": event.run_id})


def _answer(request: BaseHTTPRequestHandler, status: int, body: dict[str, object]) -> None:
    data = (json.dumps(body) + "\n").encode("utf-8")
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)
