"""Changes recorded by hand (`provanchor record`): built here, checked before anything is signed.

A record is permanent, so the checks come first: a location that does not
exist cannot be `create`d, written or truncated without the content being
given, since such a record would say "this file now has no known content"
forever; a typo must not become history.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provanchor.errors import UsageError
from provanchor.formats.cid import CID
from provanchor.formats.unixfs import cid_for_bytes
from provanchor.home import Home
from provanchor.hostid import default_host_id
from provanchor.records import Capture, CaptureBackend, Change, ContentRef, Op, file_location

__all__ = ["ManualChange", "ManualRecordResult", "manual_change", "parse_code_hash", "record_manual_change"]

# Operations whose record states the location's new content.
_CONTENT_OPS = frozenset({Op.CREATE, Op.WRITE, Op.TRUNCATE})


@dataclass(frozen=True)
class ManualChange:
    change: Change
    content: bytes | None

    @property
    def location(self) -> str:
        return str(self.change.location)


def parse_code_hash(value: str | None) -> bytes | None:
    if value is None:
        return None
    text = value.removeprefix("0x")
    if len(text) != 64:
        raise UsageError(f"--code-hash must be 64 hex digits (a sha256), got {len(text)} characters")
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise UsageError(f"--code-hash is not hexadecimal: {value!r}") from exc


def manual_change(
    location: str,
    op: str,
    file_path: str | None = None,
    user: str | None = None,
    code_hash: str | None = None,
    host: str | None = None,
) -> ManualChange:
    """The change `provanchor record` signs: LOCATION (a path or URI), OP, and the new content."""
    try:
        operation = Op(op)
    except ValueError as exc:
        raise UsageError(f"unknown op {op!r}: one of {', '.join(o.value for o in Op)}") from exc
    host = host or default_host_id()
    is_uri = "://" in location
    where = location if is_uri else file_location(host, os.path.realpath(os.path.abspath(location)))
    source = file_path or (None if is_uri else location)
    if file_path is not None and not Path(file_path).is_file():
        raise UsageError(f"--file {file_path} is not a readable file: nothing was recorded")
    if operation in _CONTENT_OPS and not is_uri and file_path is None and not Path(location).is_file():
        raise UsageError(
            f"{location} does not exist (or is not a file): a {operation.value} record states the new content, "
            "so give it with --file, or check the path; nothing was recorded"
        )
    content: bytes | None = None
    if operation != Op.DELETE and source is not None and Path(source).is_file():
        try:
            content = Path(source).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror}; nothing was recorded") from exc
    after = None
    if content is not None:
        after = ContentRef(
            sha256=hashlib.sha256(content).digest(), size=len(content), cid=CID.parse(cid_for_bytes(content))
        )
    digest = parse_code_hash(code_hash)
    mode = os.stat(source).st_mode if operation == Op.CREATE and source and Path(source).exists() else None
    change = Change(
        time=time.time_ns(),
        host=host,
        location=where,
        op=operation,
        capture=Capture(
            backend=CaptureBackend.MANUAL,
            attributed=digest is not None,
            reason=None if digest is not None else "recorded by hand; the writing program is unknown",
        ),
        user=user if user is not None else getpass.getuser(),
        uid=None if user is not None else os.getuid(),
        after=after,
        code_hash=digest,
        mode=mode,
    )
    return ManualChange(change, content)


@dataclass(frozen=True)
class ManualRecordResult:
    """What `provanchor record` reports: the record, where it lives, and its anchoring when flushed."""

    record_id: str
    seq: int
    hash: bytes
    location: str
    agent: str
    warning: str | None
    anchored_size: int | None = None
    root: bytes | None = None
    tx: str | None = None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "record_id": self.record_id,
            "cid": self.record_id,
            "seq": self.seq,
            "hash": "0x" + self.hash.hex(),
            "location": self.location,
            "agent": self.agent,
            "warning": self.warning,
        }
        if self.anchored_size is not None:
            data.update({"anchored_size": self.anchored_size, "root": "0x" + (self.root or b"").hex(), "tx": self.tx})
        return data


def record_manual_change(
    home: Home,
    location: str,
    op: str,
    file_path: str | None,
    user: str | None,
    code_hash: str | None,
    *,
    flush: bool = False,
    password_file: str | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> ManualRecordResult:
    """Check, sign and spool one hand-made change as the configured agent; durable when this returns.

    `on_warning` hears at once that the agent is not approved (before a flush waits on the chain).
    """
    from provanchor.pipeline.session import AgentSession

    built = manual_change(location, op, file_path, user, code_hash)
    with AgentSession.open(home, password_file=password_file) as session:
        ref = session.record(built.change, built.content)
        warning = session.approval_warning()
        if warning and on_warning is not None:
            on_warning(warning)
        status = session.flush() if flush else None
    return ManualRecordResult(
        ref.record_id,
        ref.seq,
        ref.hash,
        built.location,
        session.address,
        warning,
        status.size if status is not None else None,
        status.root if status is not None else None,
        status.tx if status is not None else None,
    )
