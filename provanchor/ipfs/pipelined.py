"""Fetching many blocks from Kubo fast: HTTP/1.1 pipelining over a few keep-alive connections.

A verifier or the indexer reads a checkpoint's manifest and its 1,024 records:
small blocks, each named by its CID. One `block/get` request each costs a
round trip plus the HTTP client's own work (about 1 ms in `requests`), which
caps a reader near 1,000 blocks/s. Kubo's RPC server (Go's net/http) answers
pipelined requests in order, so here every request of a set is written to the
socket back to back by one thread while another reads the answers as they
come: no round trip is waited for, and the parsing is a few lines of our own.

`dag/export` would return a manifest and its records in one CAR, but it
follows every link, so it would also drag along every content file the
records name (gigabytes for an agent capturing large files). Pipelined
`block/get` fetches exactly the blocks asked for.

Nothing is trusted: every block is hashed against its CID; a block the daemon
does not have (Kubo answers an error at once when offline, else within the
request's `timeout`) comes back as `BlockNotFound`, wrong bytes as
`BlockMismatch`, and a connection that fails as `IpfsUnavailable`.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Sequence
from typing import BinaryIO
from urllib.parse import urlsplit

from provanchor.errors import BlockMismatch, BlockNotFound, IpfsUnavailable, UsageError
from provanchor.formats.cid import CID

__all__ = ["PipelinedBlocks"]

_MAX_BODY = 8 * 1024 * 1024  # a block is at most a few MiB; a larger answer is refused, not buffered


class _Answer:
    __slots__ = ("body", "status", "trailer_error")

    def __init__(self, status: int, body: bytes, trailer_error: str | None) -> None:
        self.status = status
        self.body = body
        self.trailer_error = trailer_error


class PipelinedBlocks:
    """`get_many(cids)`: verified blocks from a Kubo RPC API, requests pipelined on `connections` sockets."""

    def __init__(self, api_url: str, connections: int = 2, timeout: float = 10.0) -> None:
        parts = urlsplit(api_url if "://" in api_url else f"http://{api_url}")
        if parts.scheme != "http" or not parts.hostname:
            raise UsageError(f"pipelined block reads need a plain http:// IPFS API, got {api_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.connections = max(1, connections)
        self.timeout = timeout

    def get_many(self, cids: Sequence[CID]) -> list[bytes | Exception]:
        """Each block, verified, in order; an unusable one is its BlockNotFound / BlockMismatch."""
        if not cids:
            return []
        shares = [list(range(i, len(cids), self.connections)) for i in range(min(self.connections, len(cids)))]
        results: list[bytes | Exception | None] = [None] * len(cids)
        errors: list[BaseException] = []

        def fetch(positions: list[int]) -> None:
            try:
                answers = self._pipeline([cids[p] for p in positions])
                for position, answer in zip(positions, answers, strict=True):
                    results[position] = _verified(cids[position], answer)
            except BaseException as exc:  # reported once, below
                errors.append(exc)

        threads = [threading.Thread(target=fetch, args=(share,), daemon=True) for share in shares[1:]]
        for thread in threads:
            thread.start()
        fetch(shares[0])
        for thread in threads:
            thread.join()
        if errors:
            error = errors[0]
            if isinstance(error, OSError | ConnectionError | ValueError):
                raise IpfsUnavailable(
                    f"IPFS daemon at {self.host}:{self.port} failed a pipelined block read: {error}"
                ) from error
            raise error
        return [r for r in results if r is not None]

    def _pipeline(self, cids: list[CID]) -> list[_Answer]:
        """Write every request while reading the answers: neither side waits for the other."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout + 5)
        except OSError as exc:
            raise IpfsUnavailable(f"IPFS daemon at {self.host}:{self.port} does not answer ({exc})") from exc
        timeout_ms = max(1, int(self.timeout * 1000))
        host = f"{self.host}:{self.port}"
        send_error: list[BaseException] = []

        def send() -> None:
            try:
                for start in range(0, len(cids), 256):
                    sock.sendall(
                        b"".join(
                            f"POST /api/v0/block/get?arg={cid.encode()}&timeout={timeout_ms}ms HTTP/1.1\r\n"
                            f"Host: {host}\r\nContent-Length: 0\r\n\r\n".encode("ascii")
                            for cid in cids[start : start + 256]
                        )
                    )
            except OSError as exc:
                send_error.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answers: list[_Answer] = []
        try:
            stream = sock.makefile("rb")
            for _ in cids:
                answers.append(_read_answer(stream))
        finally:
            sender.join(timeout=self.timeout + 5)
            sock.close()
        if send_error:
            raise send_error[0]
        return answers


def _read_answer(stream: BinaryIO) -> _Answer:
    status_line = stream.readline(65536)
    if not status_line:
        raise ConnectionError("the connection closed before every answer arrived")
    fields = status_line.split(b" ", 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    status = int(fields[1])
    headers = _read_headers(stream)
    trailer_error = None
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = stream.readline(1024)
            if not size_line:
                raise ConnectionError("the connection closed inside a chunked answer")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                trailers = _read_headers(stream)
                trailer_error = trailers.get("x-stream-error") or None
                break
            total += size
            if total > _MAX_BODY:
                raise ValueError("an answer larger than any block")
            chunks.append(_read_exact(stream, size))
            _read_exact(stream, 2)
        body = b"".join(chunks)
    else:
        length = int(headers.get("content-length", "0"))
        if length > _MAX_BODY:
            raise ValueError("an answer larger than any block")
        body = _read_exact(stream, length)
    return _Answer(status, body, trailer_error)


def _read_headers(stream: BinaryIO) -> dict[str, str]:
    headers: dict[str, str] = {}
    while True:
        line = stream.readline(65536)
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ConnectionError("the connection closed inside an answer")
    return data


def _verified(cid: CID, answer: _Answer) -> bytes | Exception:
    if answer.status != 200 or answer.trailer_error:
        message = answer.trailer_error or _error_message(answer.body) or f"HTTP {answer.status}"
        return BlockNotFound(str(cid), f"IPFS block {cid} is not available: {message}")
    if not cid.matches(answer.body):
        return BlockMismatch(str(cid), f"IPFS returned wrong bytes for block {cid}: refusing them")
    return answer.body


def _error_message(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace") or None
    return str(value.get("Message")) if isinstance(value, dict) and value.get("Message") else None
