"""A Kubo RPC proxy that lies about chosen blocks: what an auditor must catch, served over real HTTP.

Every request is forwarded to a real Kubo; for `block/get` (and `cat`) of a CID in `lies`, the answer is
replaced by other bytes. Keep-alive and pipelined requests work (HTTP/1.1), as provanchor's readers use them.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LyingIpfs:
    def __init__(self, kubo_host: str, kubo_port: int, lies: dict[str, bytes]) -> None:
        self.lies = lies
        self.served_lies = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                arg = urllib.parse.parse_qs(url.query).get("arg", [""])[0]
                if url.path in ("/api/v0/block/get", "/api/v0/cat") and arg in proxy.lies:
                    proxy.served_lies += 1
                    self._answer(200, proxy.lies[arg], "application/octet-stream")
                    return
                upstream = http.client.HTTPConnection(kubo_host, kubo_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request("POST", self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                self._answer(answer.status, data, answer.getheader("Content-Type") or "application/octet-stream")

            def _answer(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def api(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.server.server_address[1]}"

    def __enter__(self) -> LyingIpfs:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
