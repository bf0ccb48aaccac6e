"""The provenance record (schema version 2; version 1 still read): one signed statement about one data change.

A record's canonical DAG-CBOR bytes are its IPFS block *and* the input of its
hash, so everything here serves one goal: a record has exactly one byte
representation, and bytes that are not that representation are refused. Hence
every key is always present (absent values are CBOR null), construction
validates every field (errors name the field), and decoding is stricter still:
it refuses anything the constructor would have silently normalised, and checks
that re-encoding reproduces the input bytes.

See docs/record-format.md for the field-by-field specification.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import TypeVar
from urllib.parse import quote, quote_from_bytes, unquote, unquote_to_bytes

from provanchor.errors import RecordError
from provanchor.formats.cid import CID, CONTENT_LINK, DAG_CBOR, RAW, link_problem
from provanchor.formats.dagcbor import MAX_DEPTH, DagCborError, decode, encode
from provanchor.formats.merkle import leaf_hash
from provanchor.records.codehash import CodeIdentity
from provanchor.records.commitments import Commitment, is_commitment_wire
from provanchor.records.signing import is_checksum_address

__all__ = [
    "COMMITTABLE_FIELDS",
    "SCHEMA_VERSION",
    "SCHEMA_VERSIONS",
    "WIRE_FIELDS",
    "WIRE_FIELDS_V1",
    "Capture",
    "CaptureBackend",
    "Change",
    "ContentRef",
    "Op",
    "Record",
    "decode_record",
    "encode_record",
    "file_location",
    "normalize_address",
    "parse_file_location",
    "record_cid",
    "record_hash",
    "record_leaf_hash",
]

SCHEMA_VERSION = 2
SCHEMA_VERSIONS = (1, 2)
"""Versions this code reads; it writes SCHEMA_VERSION. Version 2 split `code` (what the program is,
hashed into `code_hash`) from `invocation` (paths, argv, working directory)."""

WIRE_FIELDS: tuple[str, ...] = (
    "v", "agent", "seq", "prev", "time", "user", "uid", "host", "location", "op",
    "before", "after", "code", "invocation", "code_hash", "pid", "run", "capture", "from", "mode", "payload",
)  # fmt: skip
"""Every key of a version-2 record, in documentation order (the encoding sorts them)."""

WIRE_FIELDS_V1: tuple[str, ...] = tuple(name for name in WIRE_FIELDS if name != "invocation")
"""Every key of a version-1 record."""

_WIRE_SETS = {1: frozenset(WIRE_FIELDS_V1), 2: frozenset(WIRE_FIELDS)}

COMMITTABLE_FIELDS: frozenset[str] = frozenset({"user", "uid", "host", "location", "from", "code"})
"""Wire fields whose value may be replaced by a salted commitment map."""

_UINT64_MAX = 0xFFFF_FFFF_FFFF_FFFF
_HASH_SIZE = 32
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_URI = re.compile(r"[a-z][a-z0-9+.-]*:[\x21-\x7e]+")
# RFC 3986: what may stay literal in a path (pchar + "/") and in a reg-name host;
# every other byte is percent-encoded with upper-case hex.
_PATH_SAFE = "/!$&'()*+,;=:@"
_HOST_SAFE = "!$&'()*+,;="
_MODE_OPS = frozenset({"chmod", "create"})

_T = TypeVar("_T")


class Op(StrEnum):
    """What happened. File-system ops, then process and ML-lifecycle events."""

    CREATE = "create"
    WRITE = "write"
    TRUNCATE = "truncate"
    RENAME = "rename"
    DELETE = "delete"
    CHMOD = "chmod"
    RUN = "run"
    SNAPSHOT = "snapshot"
    DATASET = "dataset"
    TRAINING = "training"
    MODEL = "model"
    EVALUATION = "evaluation"
    INFERENCE = "inference"
    LINEAGE = "lineage"
    """An OpenLineage event received from an orchestrator, kept as received (docs/interop.md)."""


class CaptureBackend(StrEnum):
    """How a change was seen; says how much the attribution can be trusted."""

    FANOTIFY = "fanotify"
    INOTIFY = "inotify"
    RUN = "run"
    MANUAL = "manual"
    RESCAN = "rescan"
    ML = "ml"
    OPENLINEAGE = "openlineage"


# ------------------------------------------------------------------ field checks


def _fail(field_name: str, message: str) -> RecordError:
    return RecordError(f"{field_name}: {message}", field=field_name)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_uint(value: object, name: str, limit: int = _UINT64_MAX) -> None:
    if not _is_int(value) or not 0 <= value <= limit:  # type: ignore[operator]
        raise _fail(name, f"must be an integer in [0, {limit}], got {value!r:.80}")


def _check_digest(value: object, name: str) -> None:
    if not isinstance(value, bytes) or len(value) != _HASH_SIZE:
        raise _fail(name, f"must be 32 bytes, got {value!r:.80}")


def _check_text(value: object, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise _fail(name, f"must be a non-empty string, got {value!r:.80}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(name, "must be valid Unicode (no lone surrogates)") from None


def normalize_address(value: object, name: str = "agent") -> str:
    """Lower-case ``0x`` address; mixed-case input must carry a valid EIP-55 checksum."""
    if type(value) is str:
        return _normalize_address(value, name)
    raise _fail(name, f"must be a 0x-prefixed 20-byte hex address, got {value!r:.80}")


@lru_cache(maxsize=1024)
def _normalize_address(value: str, name: str) -> str:
    """Cached: an agent signs with few addresses, and checking EIP-55 costs a keccak."""
    if not _ADDRESS.fullmatch(value):
        raise _fail(name, f"must be a 0x-prefixed 20-byte hex address, got {value!r:.80}")
    lower = value.lower()
    digits = value[2:]
    if value != lower and digits != digits.upper() and not is_checksum_address(value):
        raise _fail(name, f"mixed-case address with an invalid EIP-55 checksum: {value}")
    return lower


def _canonical(value: object, name: str, depth: int) -> None:
    """Check a payload value is encodable DAG-CBOR, so construction (not encoding) fails."""
    if value is None or isinstance(value, bool | bytes | CID):
        if isinstance(value, bytes) and type(value) is not bytes:
            raise _fail(name, f"bytes subclasses are not allowed: {type(value).__name__}")
        if isinstance(value, CID) and value.version != 1:  # a link names one block: never a CIDv0 alias
            raise _fail(name, f"links are CIDv1, got the CIDv0 {value.encode()}")
        return
    if isinstance(value, float):
        raise _fail(name, "floats are not allowed; store numbers as integers (scaled) or strings")
    if isinstance(value, int):
        if not -(1 << 64) <= value <= _UINT64_MAX:
            raise _fail(name, f"integer {value} outside [-2**64, 2**64-1]")
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(name, "strings must be valid Unicode (no lone surrogates)") from None
    elif type(value) is list or type(value) is dict:
        if depth >= MAX_DEPTH:
            raise _fail(name, f"nested deeper than {MAX_DEPTH} levels")
        _canonical_items(value, name, depth)
    else:
        raise _fail(name, f"{type(value).__name__} is not a DAG-CBOR value (use list, dict, str, int, bytes...)")


def _canonical_items(value: list[object] | dict[object, object], name: str, depth: int) -> None:
    if isinstance(value, list):
        for item in value:
            _canonical(item, name, depth + 1)
    else:
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(name, f"map keys must be strings, got {key!r:.60}")
            _canonical(key, name, depth + 1)
            _canonical(item, name, depth + 1)


# ------------------------------------------------------------------ locations


def _path_bytes(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> bytes:
    raw = os.fsencode(path)
    if not raw.startswith(b"/"):
        raise _fail("location", f"path must be absolute: {raw!r}")
    if b"\0" in raw:
        raise _fail("location", "path contains a NUL byte")
    if raw != b"/":
        segments = raw.split(b"/")[1:]
        if any(segment in (b"", b".", b"..") for segment in segments):
            raise _fail("location", f"path must be normalized (no //, /./, /../, trailing /): {raw!r}")
    return raw


def file_location(host_id: str, path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """Build the canonical ``file://<host-id><absolute path>`` URI of a file.

    ``path`` must already be absolute and normalized (resolve ``..`` on the file
    system, not textually). Bytes outside RFC 3986 unreserved characters and
    ``/!$&'()*+,;=:@`` (path) or ``!$&'()*+,;=`` (host) are percent-encoded as
    upper-case ``%XX`` of their UTF-8 / raw file-name bytes.
    """
    if not isinstance(host_id, str) or not host_id:
        raise _fail("location", f"host id must be a non-empty string, got {host_id!r:.80}")
    try:
        host = quote(host_id, safe=_HOST_SAFE, errors="strict")
    except UnicodeEncodeError:
        raise _fail("location", "host id must be valid Unicode") from None
    return f"file://{host}{quote_from_bytes(_path_bytes(path), safe=_PATH_SAFE)}"


def parse_file_location(uri: str) -> tuple[str, str]:
    """Split a ``file://`` location into (host id, path); undecodable name bytes come back as surrogates."""
    if not isinstance(uri, str) or not uri.startswith("file://"):
        raise _fail("location", f"not a file:// location: {uri!r:.80}")
    host, slash, path = uri[len("file://") :].partition("/")
    if not slash or not host:
        raise _fail("location", f"a file location is file://<host-id>/<absolute path>, got {uri!r:.80}")
    try:
        host_id = unquote(host, errors="strict")
    except UnicodeDecodeError:
        raise _fail("location", f"host id is not UTF-8: {uri!r:.80}") from None
    return host_id, os.fsdecode(unquote_to_bytes("/" + path))


def _check_location(value: object, name: str) -> None:
    if type(value) is not str:
        raise _fail(name, f"must be a URI string, got {value!r:.80}")
    problem = _location_problem(value)
    if problem is not None:
        raise _fail(name, problem)


@lru_cache(maxsize=4096)
def _location_problem(value: str) -> str | None:
    """Why `value` is not a valid location, or None. Cached: the same files change again and again."""
    if not _URI.fullmatch(value):
        return f"must be a URI (lower-case scheme, printable ASCII, no spaces), got {value!r:.80}"
    if value.startswith("file:"):
        try:
            canonical = file_location(*parse_file_location(value))
        except RecordError as exc:
            return str(exc).removeprefix("location: ")
        if canonical != value:
            return f"file location is not in canonical form (expected {canonical!r:.120})"
    return None


# ------------------------------------------------------------------ nested maps


@dataclass(frozen=True, slots=True)
class ContentRef:
    """Content identified by hash: ``before`` carries sha256+size, ``after`` also the CID.

    ``cid`` is None when the content was not stored (e.g. unreadable). It is
    dropped from ``before``, which identifies content by hash only.
    """

    sha256: bytes
    size: int
    cid: CID | None = None

    def __post_init__(self) -> None:
        _check_digest(self.sha256, "sha256")
        _check_uint(self.size, "size")
        if self.cid is not None:
            if not isinstance(self.cid, CID):
                raise _fail("cid", f"must be a CID or None, got {self.cid!r:.80}")
            problem = link_problem(self.cid, CONTENT_LINK, "the content's CID")
            if problem is not None:
                raise _fail("cid", problem)
            if self.cid.codec == RAW and self.cid.digest != self.sha256:
                raise _fail("cid", "a raw CID's digest must equal the content's sha256")

    def to_wire(self, with_cid: bool) -> dict[str, object]:
        if with_cid:
            return {"sha256": self.sha256, "size": self.size, "cid": self.cid}
        return {"sha256": self.sha256, "size": self.size}

    @classmethod
    def from_wire(cls, wire: object, with_cid: bool) -> ContentRef:
        keys = {"sha256", "size", "cid"} if with_cid else {"sha256", "size"}
        if not isinstance(wire, dict) or wire.keys() != keys:
            raise RecordError(f"must be null or a map with exactly {sorted(keys)}, got {wire!r:.120}")
        return cls(wire["sha256"], wire["size"], wire.get("cid"))


@dataclass(frozen=True, slots=True)
class Capture:
    """How the change was observed and whether its writer is known (never guessed)."""

    backend: CaptureBackend
    attributed: bool
    reason: str | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "backend", CaptureBackend(self.backend))
        except ValueError:
            choices = ", ".join(b.value for b in CaptureBackend)
            raise _fail("backend", f"must be one of {choices}; got {self.backend!r:.60}") from None
        if not isinstance(self.attributed, bool):
            raise _fail("attributed", f"must be a bool, got {self.attributed!r:.60}")
        # An unattributed change must say why; an attributed one may carry a note
        # (e.g. "read after it settled: written through mmap").
        if not self.attributed or self.reason is not None:
            _check_text(self.reason, "reason")

    def to_wire(self) -> dict[str, object]:
        return {"backend": self.backend.value, "attributed": self.attributed, "reason": self.reason}

    @classmethod
    def from_wire(cls, wire: object) -> Capture:
        if not isinstance(wire, dict) or wire.keys() != {"backend", "attributed", "reason"}:
            raise RecordError(f"must be a map with exactly backend, attributed, reason; got {wire!r:.120}")
        backend = wire["backend"]
        if not isinstance(backend, str) or backend not in _BACKENDS:
            choices = ", ".join(b.value for b in CaptureBackend)
            raise _fail("backend", f"must be one of {choices}; got {backend!r:.60}")
        return cls(CaptureBackend(backend), wire["attributed"], wire["reason"])


_BACKENDS = frozenset(b.value for b in CaptureBackend)
_OPS = frozenset(o.value for o in Op)


# ------------------------------------------------------------------ the record


@dataclass(frozen=True, kw_only=True)
class Change:
    """A complete change except its place in the agent's log (agent, seq, prev).

    Watchers produce these; the per-agent sequencer turns them into records with
    :meth:`Record.from_change`. Validation happens then, in one place.
    """

    time: int
    host: str | Commitment
    location: str | Commitment
    op: Op | str
    capture: Capture
    user: str | Commitment | None = None
    uid: int | Commitment | None = None
    before: ContentRef | None = None
    after: ContentRef | None = None
    code: CodeIdentity | Commitment | None = None
    code_hash: bytes | None = None
    pid: int | None = None
    run: str | None = None
    from_location: str | Commitment | None = None
    mode: int | None = None
    payload: dict[str, object] | None = field(default=None, hash=False)


@dataclass(frozen=True, kw_only=True)
class Record:
    """A provenance record (version 2 unless ``v=1`` is given), validated on construction.

    Python names equal wire names except ``from_location`` (wire ``"from"``).
    ``code_hash`` is filled in when omitted and ``code`` is plain. ``payload`` is
    not copied: do not mutate it after construction (the encoding is cached).
    """

    agent: str
    seq: int
    prev: bytes | None
    time: int
    host: str | Commitment
    location: str | Commitment
    op: Op
    capture: Capture
    user: str | Commitment | None = None
    uid: int | Commitment | None = None
    before: ContentRef | None = None
    after: ContentRef | None = None
    code: CodeIdentity | Commitment | None = None
    code_hash: bytes | None = None
    pid: int | None = None
    run: str | None = None
    from_location: str | Commitment | None = None
    mode: int | None = None
    payload: dict[str, object] | None = field(default=None, hash=False)
    v: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not _is_int(self.v) or self.v not in SCHEMA_VERSIONS:
            raise _fail("v", f"unsupported schema version {self.v!r:.40} (this code reads 1 and 2)")
        object.__setattr__(self, "agent", normalize_address(self.agent))
        _check_uint(self.seq, "seq")
        if self.seq == 0:
            if self.prev is not None:
                raise _fail("prev", "must be null for the first record (seq 0)")
        else:
            _check_digest(self.prev, "prev")
        _check_uint(self.time, "time")
        self._check_op()
        self._check_subjects()
        for name, ref in (("before", self.before), ("after", self.after)):
            if ref is not None and not isinstance(ref, ContentRef):
                raise _fail(name, f"must be a ContentRef or None, got {ref!r:.80}")
        if self.before is not None and self.before.cid is not None:
            object.__setattr__(self, "before", ContentRef(self.before.sha256, self.before.size))
        if self.op is Op.DELETE and self.after is not None:
            raise _fail("after", "must be null for a delete")
        self._check_code()
        if self.pid is not None:
            _check_uint(self.pid, "pid")
        if self.run is not None:
            _check_text(self.run, "run")
        if not isinstance(self.capture, Capture):
            raise _fail("capture", f"must be a Capture, got {self.capture!r:.80}")
        if self.payload is not None:
            if type(self.payload) is not dict:
                raise _fail("payload", f"must be a dict with string keys or None, got {type(self.payload).__name__}")
            _canonical(self.payload, "payload", 1)

    def _check_op(self) -> None:
        try:
            object.__setattr__(self, "op", Op(self.op))
        except ValueError:
            raise _fail("op", f"must be one of {', '.join(o.value for o in Op)}; got {self.op!r:.60}") from None
        if self.op is Op.RENAME:
            if self.from_location is None:
                raise _fail("from", "a rename must name the old location")
        elif self.from_location is not None:
            raise _fail("from", "only a rename has an old location")
        if self.mode is not None:
            if self.op not in _MODE_OPS:
                raise _fail("mode", "only chmod and create records carry a mode")
            _check_uint(self.mode, "mode", 0xFFFF_FFFF)
        elif self.op is Op.CHMOD:
            raise _fail("mode", "a chmod must carry the new mode")

    def _check_subjects(self) -> None:
        """user, uid, host, location, from: plain values or commitments."""
        if self.user is not None and not isinstance(self.user, Commitment):
            _check_text(self.user, "user")
        if self.uid is not None and not isinstance(self.uid, Commitment):
            _check_uint(self.uid, "uid", 0xFFFF_FFFF)
        if not isinstance(self.host, Commitment):
            _check_text(self.host, "host")
        if not isinstance(self.location, Commitment):
            _check_location(self.location, "location")
        if self.from_location is not None and not isinstance(self.from_location, Commitment):
            _check_location(self.from_location, "from")

    def _check_code(self) -> None:
        code, digest = self.code, self.code_hash
        if code is None:
            # The program's hash may be known without its identity (a hand-made record, or a
            # writer reported by hash only): then it stands alone and cannot be re-derived.
            if digest is not None:
                _check_digest(digest, "code_hash")
            return
        if isinstance(code, Commitment):
            if digest is None:
                raise _fail("code_hash", "is required when code is committed (it hashes the plain code)")
            _check_digest(digest, "code_hash")
            return
        if not isinstance(code, CodeIdentity):
            raise _fail("code", f"must be a CodeIdentity, a Commitment or None, got {code!r:.80}")
        try:
            expected = code.digest_for(self.v)
        except RecordError as exc:
            raise _fail("code", str(exc)) from None
        if digest is None:
            object.__setattr__(self, "code_hash", expected)
        elif digest != expected:
            raise _fail("code_hash", "does not match the code (sha256 of the canonical code map)")
        try:
            encode(code.invocation_wire())
        except DagCborError as exc:
            raise _fail("code", f"the invocation cannot be encoded: {exc}") from None
        if self.v == 1 and code.cwd is not None:
            raise _fail("code", "a version 1 record has no working directory in its code")

    # -------------------------------------------------------------- conversions

    @classmethod
    def from_change(
        cls, change: Change, agent: str, seq: int, prev: bytes | None, version: int = SCHEMA_VERSION
    ) -> Record:
        """Place a change in an agent's log: the only fields a Change lacks (``version`` 1 only to
        reproduce records of the old layout, in tests and tools)."""
        values = {name: getattr(change, name) for name in _CHANGE_FIELDS}
        return cls(agent=agent, seq=seq, prev=prev, v=version, **values)

    def with_commitments(self, salts: Mapping[str, bytes]) -> Record:
        """Replace the named wire fields (see COMMITTABLE_FIELDS) by salted commitments.

        ``code_hash`` keeps hashing the plain code. Do this before hashing and
        signing: the committed record is the one that goes into the log.
        """
        changes: dict[str, object] = {}
        for name, salt in salts.items():
            if name not in COMMITTABLE_FIELDS:
                raise _fail(name, f"cannot be committed (only {', '.join(sorted(COMMITTABLE_FIELDS))})")
            attr = "from_location" if name == "from" else name
            value = getattr(self, attr)
            if isinstance(value, Commitment):
                raise _fail(name, "is already committed")
            plain = value.legacy_wire() if self.v == 1 and isinstance(value, CodeIdentity) else value
            changes[attr] = Commitment.of(plain, salt)
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_wire(self) -> dict[str, object]:
        """The record as a plain map with every wire key (absent values are None)."""
        code = self.code
        wire: dict[str, object] = {
            "v": self.v,
            "agent": self.agent,
            "seq": self.seq,
            "prev": self.prev,
            "time": self.time,
            "user": _plain(self.user),
            "uid": _plain(self.uid),
            "host": _plain(self.host),
            "location": _plain(self.location),
            "op": self.op.value,
            "before": None if self.before is None else self.before.to_wire(False),
            "after": None if self.after is None else self.after.to_wire(True),
            "code": _code_wire(code, self.v),
            "code_hash": self.code_hash,
            "pid": self.pid,
            "run": self.run,
            "capture": self.capture.to_wire(),
            "from": _plain(self.from_location),
            "mode": self.mode,
            "payload": self.payload,
        }
        if self.v == 1:
            return wire
        wire["invocation"] = code.invocation_wire() if isinstance(code, CodeIdentity) else None
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> Record:
        """Strictly parse a wire map: exact key set, no value the constructor would normalise."""
        if not isinstance(wire, Mapping):
            raise RecordError(f"a record is a map, got {type(wire).__name__}")
        if "v" not in wire:
            raise RecordError("missing field 'v'", field="v")
        version = wire["v"]
        if not _is_int(version) or version not in SCHEMA_VERSIONS:
            raise _fail("v", f"unsupported schema version {version!r:.40} (this code reads 1 and 2)")
        expected = _WIRE_SETS[version]
        if wire.keys() != expected:
            for key in wire:
                if key not in expected:
                    raise RecordError(f"unknown field {key!r:.60}", field=str(key))
            missing = [key for key in WIRE_FIELDS if key in expected and key not in wire]
            raise RecordError(f"missing field {missing[0]!r}", field=missing[0])
        agent = wire["agent"]
        if isinstance(agent, str) and agent != agent.lower():
            raise _fail("agent", "must be lower-case on the wire")
        op = wire["op"]
        if not isinstance(op, str) or op not in _OPS:
            raise _fail("op", f"must be one of {', '.join(o.value for o in Op)}; got {op!r:.60}")
        code_wire = wire["code"]
        if code_wire is not None and not is_commitment_wire(code_wire) and wire["code_hash"] is None:
            raise _fail("code_hash", "is required when code is present")
        payload = wire["payload"]
        if payload is not None and not isinstance(payload, dict):
            raise _fail("payload", f"must be a map or null, got {type(payload).__name__}")
        return cls(
            v=wire["v"],  # type: ignore[arg-type]
            agent=agent,  # type: ignore[arg-type]
            seq=wire["seq"],  # type: ignore[arg-type]
            prev=wire["prev"],  # type: ignore[arg-type]
            time=wire["time"],  # type: ignore[arg-type]
            user=_committable(wire, "user"),  # type: ignore[arg-type]
            uid=_committable(wire, "uid"),  # type: ignore[arg-type]
            host=_committable(wire, "host"),  # type: ignore[arg-type]
            location=_committable(wire, "location"),  # type: ignore[arg-type]
            op=Op(op),
            before=_nested(wire, "before", lambda w: ContentRef.from_wire(w, with_cid=False)),
            after=_nested(wire, "after", lambda w: ContentRef.from_wire(w, with_cid=True)),
            code=_code_from_record_wire(wire, version),
            code_hash=wire["code_hash"],  # type: ignore[arg-type]
            pid=wire["pid"],  # type: ignore[arg-type]
            run=wire["run"],  # type: ignore[arg-type]
            capture=_nested(wire, "capture", Capture.from_wire, nullable=False),  # type: ignore[arg-type]
            from_location=_committable(wire, "from"),  # type: ignore[arg-type]
            mode=wire["mode"],  # type: ignore[arg-type]
            payload=payload,
        )

    # -------------------------------------------------------------- identity

    @cached_property
    def canonical(self) -> bytes:
        """The canonical DAG-CBOR bytes: the IPFS block, and what the record hash hashes."""
        try:
            return encode(self.to_wire())
        except DagCborError as exc:  # validation should make this unreachable
            raise RecordError(f"record cannot be encoded: {exc}") from exc

    @cached_property
    def hash(self) -> bytes:
        """The record hash: SHA-256 of the canonical bytes (= the digest of its CID)."""
        return hashlib.sha256(self.canonical).digest()

    @property
    def cid(self) -> CID:
        """CIDv1, dag-cbor, sha2-256: how IPFS names this record's block."""
        return CID(1, DAG_CBOR, self.hash)

    @property
    def leaf_hash(self) -> bytes:
        """The RFC 9162 leaf of this record in its agent's Merkle log."""
        return leaf_hash(self.hash)


_CHANGE_FIELDS = tuple(f.name for f in fields(Change))


def _plain(value: object) -> object:
    return value.to_wire() if isinstance(value, Commitment) else value


def _committable(wire: Mapping[str, object], name: str) -> object:
    value = wire[name]
    if isinstance(value, dict):
        if not is_commitment_wire(value):
            raise _fail(name, f"a map here must be a commitment {{'commitment': bytes32}}, got {value!r:.80}")
        return _nested(wire, name, Commitment.from_wire)
    return value


def _code_wire(code: CodeIdentity | Commitment | None, version: int) -> object:
    if code is None or isinstance(code, Commitment):
        return _plain(code)
    return code.legacy_wire() if version == 1 else code.code_wire()


def _code_from_record_wire(wire: Mapping[str, object], version: int) -> CodeIdentity | Commitment | None:
    """`code` (and in version 2 `invocation`): a plain identity, a commitment hiding both, or null."""
    code = wire["code"]
    invocation = wire.get("invocation")
    if version == 2 and (code is None or is_commitment_wire(code)) and invocation is not None:
        raise _fail("invocation", "must be null when code is null or committed (a commitment hides both)")
    if code is None:
        return None
    if is_commitment_wire(code):
        return _nested(wire, "code", Commitment.from_wire)
    if version == 1:
        return _nested(wire, "code", CodeIdentity.from_legacy_wire)
    if invocation is None:
        raise _fail("invocation", "is required when code is present")
    return _nested(wire, "code", lambda value: CodeIdentity.from_wire(value, invocation))


def _nested(wire: Mapping[str, object], name: str, parse: Callable[[object], _T], nullable: bool = True) -> _T | None:
    """Parse a nested map, reporting any error against the top-level field `name`."""
    value = wire[name]
    if value is None and nullable:
        return None
    try:
        return parse(value)
    except RecordError as exc:
        raise _fail(name, str(exc)) from None


# ------------------------------------------------------------------ functions


def encode_record(record: Record) -> bytes:
    """Canonical DAG-CBOR bytes of a record (cached on the record)."""
    return record.canonical


def decode_record(data: bytes) -> Record:
    """Parse canonical record bytes; refuse anything that is not exactly what encode_record makes."""
    try:
        wire = decode(data)
    except DagCborError as exc:
        raise RecordError(f"not canonical DAG-CBOR: {exc}") from exc
    if not isinstance(wire, dict):
        raise RecordError(f"a record is a map, got {type(wire).__name__}")
    record = Record.from_wire(wire)
    if record.canonical != data:  # defence in depth: from_wire must not have normalised anything
        raise RecordError("record bytes are not in canonical form")
    return record


def record_hash(record: Record | bytes) -> bytes:
    """SHA-256 of the canonical bytes (pass a Record, or bytes already known to be canonical)."""
    if isinstance(record, Record):
        return record.hash
    return hashlib.sha256(record).digest()


def record_cid(record: Record | bytes) -> CID:
    """CIDv1 (dag-cbor, sha2-256) of a record; its digest is the record hash."""
    return CID(1, DAG_CBOR, record_hash(record))


def record_leaf_hash(record_hash: bytes) -> bytes:
    """Merkle leaf for a record: RFC 9162 leaf hash SHA-256(0x00 || 32-byte record hash)."""
    if not isinstance(record_hash, bytes) or len(record_hash) != _HASH_SIZE:
        raise RecordError(f"a record hash is 32 bytes, got {record_hash!r:.80}")
    return leaf_hash(record_hash)
