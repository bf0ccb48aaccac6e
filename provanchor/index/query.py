"""Finding records in the index: who changed what, where, when, with which code.

A :class:`QueryFilter` is validated when built, so every user mistake (a bad
address, an unknown op, a reversed time window) surfaces as one clear
`UsageError` before any SQL runs. :func:`run_query` turns it into a single
``SELECT`` whose every condition is served by an index of the store.

Locations. Records name files by URI (``file://HOST/PATH``). Users mostly type
paths, and often do not know (or care) which host id an agent used, so a
location may be given either way:

* a URI (anything containing ``://``) matches the ``location`` column exactly;
* an absolute path matches the ``path`` column: the (percent-encoded) path
  part of every ``file://`` location, whatever its host.

Both go through one index on ``(path, location, time)``: a location fixes its
path, so the path leads and the location follows in the same entry. (Two
separate text indexes cost a random page write each per inserted record,
a third of the indexing time; one is enough.)

:func:`location_arg` makes one of these from command-line text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from provanchor.errors import BadAgent as BadAgent
from provanchor.errors import BadCodeHash as BadCodeHash
from provanchor.errors import BadLimit as BadLimit
from provanchor.errors import BadLocation as BadLocation
from provanchor.errors import BadOp as BadOp
from provanchor.errors import BadProgram as BadProgram
from provanchor.errors import BadTimeRange as BadTimeRange
from provanchor.errors import RecordError
from provanchor.formats.cid import CID
from provanchor.index.store import IndexStore, location_path, record_id
from provanchor.index.timeparse import MAX_TIME_NS, format_time
from provanchor.records import Op
from provanchor.records.locations import encoded_path as encoded_path
from provanchor.records.locations import location_arg as location_arg
from provanchor.records.model import normalize_address

__all__ = [
    "BadAgent",
    "BadCodeHash",
    "BadLimit",
    "BadLocation",
    "BadOp",
    "BadProgram",
    "BadTimeRange",
    "QueryFilter",
    "QueryRow",
    "encoded_path",
    "location_arg",
    "parse_agent",
    "parse_code_hash",
    "parse_op",
    "program_arg",
    "query_plan",
    "run_query",
]

_INT64_MAX = (1 << 63) - 1
_CHUNK = 500  # ids per IN (...): far below every SQLite build's variable limit
_OPS = tuple(op.value for op in Op)


# ------------------------------------------------------------------ argument helpers


def program_arg(text: str, all_versions: bool = False) -> tuple[str, bytes | None]:
    """The program at ``text`` now: its resolved path and SHA-256 (a bare name is looked up on PATH).

    Records name code files by resolved path (symlinks followed), so the query
    does too: ``/usr/bin/python3`` finds what ``python3.11`` wrote. For every
    version ever seen at a path (``all_versions``), the file need not exist any
    more: no hash is taken.
    """
    import shutil

    from provanchor.records import sha256_file

    found = text if "/" in text else (shutil.which(text) or text)
    resolved = os.path.realpath(found)
    if all_versions:
        if "/" not in found:
            raise BadProgram(f"{text} is not a command on PATH: give the program's path")
        return resolved, None
    if not os.path.exists(resolved):
        raise BadProgram(f"no program at {text}: the file does not exist (and it is not a command on PATH)")
    if not os.path.isfile(resolved):
        raise BadProgram(f"{text} is not a regular file: --program takes an executable or a script")
    try:
        return resolved, sha256_file(resolved)
    except OSError as exc:
        raise BadProgram(f"cannot read the program {text}: {exc.strerror or exc}") from None



def parse_code_hash(text: str) -> bytes:
    """32 bytes from 64 hex digits, with or without ``0x`` (as `sha256sum` prints or the JSON shows)."""
    digits = text.strip()
    digits = digits[2:] if digits[:2].lower() == "0x" else digits
    if len(digits) != 64:
        raise BadCodeHash(f"a code hash is 64 hex digits (a sha256), got {text!r:.80}")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise BadCodeHash(f"a code hash is 64 hex digits (a sha256), got {text!r:.80}") from None


def parse_agent(text: str) -> str:
    """The lower-case address records use; mixed case must be a valid EIP-55 checksum."""
    try:
        return normalize_address(text.strip() if isinstance(text, str) else text)
    except RecordError:
        raise BadAgent(
            f"not an agent address (0x and 40 hex digits, valid checksum if mixed case): {text!r:.80}"
        ) from None


def parse_op(text: str) -> Op:
    try:
        return Op(text.strip().lower() if isinstance(text, str) else text)
    except ValueError:
        raise BadOp(f"unknown op {text!r:.40}: use one of {', '.join(_OPS)}") from None


# ------------------------------------------------------------------ the filter


@dataclass(frozen=True)
class QueryFilter:
    """Conditions on records; all given conditions must hold. Validated and normalized on construction.

    ``location`` and ``under`` take a URI or an absolute path (see the module
    docstring). ``under`` selects a directory and everything below it, never
    its siblings: ``/data/a`` matches ``/data/a`` and ``/data/a/x``, not
    ``/data/ab/x``. ``since_ns`` and ``until_ns`` are inclusive bounds.
    ``agent`` and ``op`` accept text and are normalized.
    """

    user: str | None = None
    location: str | None = None
    under: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    code_hash: bytes | None = None
    agent: str | None = None
    op: Op | str | None = None
    run_id: str | None = None
    limit: int | None = None
    program_sha256: bytes | None = None
    """Records whose code names this file content (as executable or script): one program, one version."""
    program_path: str | None = None
    """Records whose code names a file at this path: every version of the program seen there."""

    def __post_init__(self) -> None:
        if self.agent is not None:
            object.__setattr__(self, "agent", parse_agent(self.agent))
        if self.op is not None:
            object.__setattr__(self, "op", parse_op(self.op))
        if self.code_hash is not None and (not isinstance(self.code_hash, bytes) or len(self.code_hash) != 32):
            raise BadCodeHash(f"a code hash is 32 bytes, got {self.code_hash!r:.80}")
        for name in ("since_ns", "until_ns"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_TIME_NS:
                raise BadTimeRange(f"{name.removesuffix('_ns')} is out of range (1970 to 2554): {value} ns")
        if self.since_ns is not None and self.until_ns is not None and self.since_ns > self.until_ns:
            raise BadTimeRange(
                f"the time window ends before it starts: since {format_time(self.since_ns)} "
                f"> until {format_time(self.until_ns)}"
            )
        if self.limit is not None and self.limit < 1:
            raise BadLimit(f"the limit must be at least 1, got {self.limit}")
        if self.under is not None and "://" not in self.under and len(self.under) > 1:
            object.__setattr__(self, "under", self.under.rstrip("/") or "/")  # a directory may end with '/'
        for name in ("location", "under"):
            value = getattr(self, name)
            if value is not None and "://" not in value:
                if not value.startswith("/"):
                    raise BadLocation(f"{name} must be a URI or an absolute path, got {value!r:.80}")
                encoded_path(value)

    def where(self) -> tuple[str, list[object]]:
        """The SQL condition and its parameters (``1`` when there is no condition)."""
        clauses: list[str] = []
        params: list[object] = []

        def add(clause: str, *values: object) -> None:
            clauses.append(clause)
            params.extend(values)

        for column, value in (("user", self.user), ("agent", self.agent), ("run_id", self.run_id)):
            if value is not None:
                add(f"{column} = ?", value)
        if self.op is not None:
            add("op = ?", Op(self.op).value)
        if self.code_hash is not None:
            add("code_hash = ?", self.code_hash)
        if self.program_sha256 is not None:
            add("id IN (SELECT id FROM code_files WHERE sha256 = ?)", self.program_sha256)
        if self.program_path is not None:
            add("id IN (SELECT id FROM code_files WHERE path = ?)", self.program_path)
        if self.location is not None:
            for clause, values in _location_terms(self.location, exact=True):
                add(clause, *values)
        if self.under is not None:
            for clause, values in _location_terms(self.under, exact=False):
                add(clause, *values)
        if self.since_ns is not None:
            add("time >= ?", min(self.since_ns, _INT64_MAX))
        if self.until_ns is not None:
            add("time <= ?", min(self.until_ns, _INT64_MAX))
        return (" AND ".join(clauses) or "1"), params


def _location_terms(location: str, exact: bool) -> list[tuple[str, tuple[object, ...]]]:
    """Conditions matching a location (``exact``) or everything under it, each served by an index.

    File locations are found through the ``(path, location, time)`` index: a
    plain path by its ``path`` alone (any host), a ``file://`` URI by its path
    and then its full location, both read from the same index entry. Other
    URIs (``run://``, ``s3://``...) have no path and their own index.
    """
    if "://" not in location:
        plain = encoded_path(location)
        return [("path = ?", (plain,)) if exact else _under("path", plain)]
    path = location_path(location)
    if path is None and not exact and location.startswith("file://"):
        path = "/"  # file://HOST: everything on that host
    if path is None:  # run://, s3://... (or a file URI without a path, which no record has)
        return [("path IS NULL", ()), ("location = ?", (location,)) if exact else _under("location", location)]
    if exact:
        return [("path = ?", (path,)), ("location = ?", (location,))]
    return [_under("path", path), _under("location", location)]


def _under(column: str, prefix: str) -> tuple[str, tuple[object, ...]]:
    """``column`` is ``prefix`` or below it: ``/data/a`` and ``/data/a/x``, never ``/data/ab``.

    The rule is ``col = P OR (col >= P/ AND col < P0)`` ('0' is the character
    after '/'). The enclosing range ``[P, P0)`` holds all of it and is what the
    planner uses as one index range; the OR then drops siblings such as
    ``/data/a.csv`` that sort inside it.
    """
    base = prefix.rstrip("/")
    clause = f"{column} >= ? AND {column} < ? AND ({column} = ? OR {column} >= ?)"
    return clause, (base, base + "0", base, base + "/")


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class QueryRow:
    """One matching record, with the checkpoint that anchors it.

    ``user`` and ``location`` are None when the record hides them behind a
    commitment (or has no user).
    """

    record_id: str
    agent: str
    seq: int
    time: int
    user: str | None
    location: str | None
    op: str
    before_sha256: bytes | None
    after_sha256: bytes | None
    after_cid: str | None
    code_hash: bytes | None
    run_id: str | None
    checkpoint: int
    checkpoint_size: int
    tx: bytes

    def to_json(self) -> dict[str, object]:
        """JSON-ready: content and code hashes as plain hex (as `sha256sum` prints), ``tx`` as 0x-hex."""
        return {
            "record_id": self.record_id,
            "agent": self.agent,
            "seq": self.seq,
            "time": format_time(self.time),
            "time_ns": self.time,
            "user": self.user,
            "location": self.location,
            "op": self.op,
            "before_sha256": _hex(self.before_sha256),
            "after_sha256": _hex(self.after_sha256),
            "after_cid": self.after_cid,
            "code_hash": _hex(self.code_hash),
            "run_id": self.run_id,
            "checkpoint": self.checkpoint,
            "checkpoint_size": self.checkpoint_size,
            "tx": "0x" + self.tx.hex(),
        }


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


_COLUMNS = (
    "record_hash, agent, seq, time, user, location, op, before_sha256, after_sha256, after_cid, code_hash,"
    " run_id, checkpoint, checkpoint_size, tx"
)


def run_query(store: IndexStore, query: QueryFilter) -> list[QueryRow]:
    """Matching records ordered by time, then agent, then seq (at most ``limit`` of them).

    With a limit, the page is found in two cheap steps before any full row is
    read: the first ``limit`` (id, time) pairs in time order, which the
    ``(column, time)`` indexes usually answer alone, then every match at the
    page's last time (rows tied on time are ordered by agent and seq, which
    no index holds). Only the rows of the page are then fetched. Sorting whole
    rows instead costs a row read per match: 10x slower for a directory of
    10,000 records.
    """
    where, params = query.where()
    if query.limit is None:
        sql = f"SELECT {_COLUMNS} FROM records WHERE {where} ORDER BY time, agent, seq"
        return [_row(values) for values in store.read(sql, params)]
    page = store.read(f"SELECT id, time FROM records WHERE {where} ORDER BY time LIMIT ?", [*params, query.limit])
    ids = {row[0] for row in page}
    if len(page) == query.limit:
        tied = store.read(f"SELECT id FROM records WHERE {where} AND time = ?", [*params, page[-1][1]])
        ids.update(row[0] for row in tied)
    rows = [_row(values) for values in _rows_by_id(store, sorted(ids))]
    rows.sort(key=lambda row: (row.time, row.agent, row.seq))
    return rows[: query.limit]


def _rows_by_id(store: IndexStore, ids: list[int]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for offset in range(0, len(ids), _CHUNK):
        chunk = ids[offset : offset + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows.extend(store.read(f"SELECT {_COLUMNS} FROM records WHERE id IN ({marks})", chunk))
    return rows


def query_plan(store: IndexStore, query: QueryFilter) -> list[str]:
    """SQLite's plan for the statements that search (``EXPLAIN QUERY PLAN`` details), to check they use indexes.

    Fetching a limited page's rows by id is left out: it is a rowid lookup per row.
    """
    where, params = query.where()
    if query.limit is None:
        statements = [(f"SELECT {_COLUMNS} FROM records WHERE {where} ORDER BY time, agent, seq", params)]
    else:
        statements = [
            (f"SELECT id, time FROM records WHERE {where} ORDER BY time LIMIT ?", [*params, query.limit]),
            (f"SELECT id FROM records WHERE {where} AND time = ?", [*params, 0]),
        ]
    return [str(row[3]) for sql, values in statements for row in store.read("EXPLAIN QUERY PLAN " + sql, values)]


def _row(values: tuple[Any, ...]) -> QueryRow:
    (digest, agent, seq, time, user, location, op, before, after, cid, code_hash, run_id, checkpoint, size, tx) = values
    return QueryRow(
        record_id=record_id(digest),
        agent=agent,
        seq=seq,
        time=time,
        user=user,
        location=location,
        op=op,
        before_sha256=before,
        after_sha256=after,
        after_cid=None if cid is None else CID.from_bytes(cid).encode(),
        code_hash=code_hash,
        run_id=run_id,
        checkpoint=checkpoint,
        checkpoint_size=size,
        tx=tx,
    )
