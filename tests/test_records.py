"""Tests for the record model: round trips, validation naming fields, strict decoding, code identity."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from provanchor.errors import BadInput, DagCborError, RecordError, UsageError
from provanchor.formats.cid import CID, DAG_CBOR, RAW
from provanchor.formats.dagcbor import encode
from provanchor.formats.merkle import leaf_hash
from provanchor.records import (
    COMMITTABLE_FIELDS,
    WIRE_FIELDS,
    Capture,
    CaptureBackend,
    Change,
    CodeFile,
    CodeIdentity,
    Commitment,
    ContentRef,
    Eip712Domain,
    Op,
    Record,
    code_hash,
    commit,
    decode_record,
    encode_record,
    file_location,
    identify_command,
    new_salt,
    open_commitment,
    parse_file_location,
    record_cid,
    record_hash,
    record_leaf_hash,
    sha256_file,
    sign_record_hash,
    signing_digest,
)

AGENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # the EIP-55 test vector
HOST = "3f2a9c0d5e6b4a1f8c7d2e1b0a9f8e7d"
H1 = hashlib.sha256(b"one").digest()
H2 = hashlib.sha256(b"two").digest()
H3 = hashlib.sha256(b"three").digest()


def sample_code() -> CodeIdentity:
    return CodeIdentity(
        exe=CodeFile("/usr/bin/python3.11", H1),
        scripts=(CodeFile("/home/alice/prepare.py", H2),),
        argv=("python3", "prepare.py", "--out", "data/clean.csv"),
        image=None,
    )


def sample_record(**overrides: Any) -> Record:
    """A complete write record; `overrides` replace constructor arguments."""
    content = b"id,value\n1,42\n"
    fields: dict[str, Any] = {
        "agent": AGENT,
        "seq": 7,
        "prev": H3,
        "time": 1_700_000_000_123_456_789,
        "user": "alice",
        "uid": 1000,
        "host": HOST,
        "location": file_location(HOST, "/home/alice/data/clean.csv"),
        "op": Op.WRITE,
        "before": ContentRef(H1, 10),
        "after": ContentRef(hashlib.sha256(content).digest(), len(content), CID.for_block(RAW, content)),
        "code": sample_code(),
        "pid": 4242,
        "run": "run-2024-01",
        "capture": Capture(CaptureBackend.FANOTIFY, True),
        "payload": {"rows": 1, "note": "cleaned", "tags": ["a", "b"], "blob": b"\x00\x01"},
    }
    fields.update(overrides)
    return Record(**fields)


# ------------------------------------------------------------------ round trips and identity


def test_round_trip_through_bytes_and_wire() -> None:
    record = sample_record()
    data = encode_record(record)
    assert decode_record(data) == record
    assert Record.from_wire(record.to_wire()) == record
    assert encode(record.to_wire()) == data


def test_minimal_first_record_round_trips() -> None:
    record = Record(
        agent=AGENT,
        seq=0,
        prev=None,
        time=0,
        host=HOST,
        location="file://h/",
        op="create",  # type: ignore[arg-type]
        capture=Capture("rescan", False, "found by a periodic rescan"),  # type: ignore[arg-type]
    )
    assert record.op is Op.CREATE
    assert record.capture.backend is CaptureBackend.RESCAN
    assert decode_record(encode_record(record)) == record


def test_every_key_is_always_present() -> None:
    record = Record(
        agent=AGENT,
        seq=0,
        prev=None,
        time=1,
        host=HOST,
        location="file://h/x",
        op=Op.DELETE,
        capture=Capture(CaptureBackend.INOTIFY, False, "inotify does not report the writer"),
    )
    wire = record.to_wire()
    assert set(wire) == set(WIRE_FIELDS)
    assert len(WIRE_FIELDS) == 21
    assert wire["user"] is None and wire["payload"] is None
    data = encode_record(record)
    assert data[0] == 0xA0 | 21  # a map of all 21 keys
    assert data.count(b"\xf6") == 13  # absent values are written as CBOR null, never omitted


def test_record_hash_is_the_cid_digest_and_leaf_rule() -> None:
    record = sample_record()
    data = encode_record(record)
    digest = hashlib.sha256(data).digest()
    assert record_hash(record) == record_hash(data) == record.hash == digest
    cid = record_cid(record)
    assert cid == record_cid(data) == record.cid == CID.for_block(DAG_CBOR, data)
    assert cid.version == 1 and cid.codec == DAG_CBOR and cid.digest == digest
    assert CID.parse(cid.encode()) == cid
    assert record_leaf_hash(digest) == hashlib.sha256(b"\x00" + digest).digest() == leaf_hash(digest)
    assert record.leaf_hash == record_leaf_hash(digest)
    with pytest.raises(RecordError):
        record_leaf_hash(data)


def test_agent_is_normalised_to_lower_case() -> None:
    record = sample_record()
    assert record.agent == AGENT.lower()
    assert sample_record(agent=AGENT.upper().replace("0X", "0x")).agent == AGENT.lower()
    bad_checksum = AGENT[:-1] + AGENT[-1].swapcase()
    with pytest.raises(RecordError) as info:
        sample_record(agent=bad_checksum)
    assert info.value.field == "agent"


def test_before_drops_its_cid() -> None:
    cid = CID.for_block(RAW, b"x")
    record = sample_record(before=ContentRef(hashlib.sha256(b"x").digest(), 1, cid))
    assert record.before == ContentRef(hashlib.sha256(b"x").digest(), 1)
    assert decode_record(encode_record(record)) == record


def test_code_hash_is_filled_and_follows_the_documented_rule() -> None:
    record = sample_record()
    expected = hashlib.sha256(encode(sample_code().code_wire())).digest()
    assert record.code_hash == expected == code_hash(sample_code())
    assert sample_code().code_wire() == {"exe": H1, "scripts": [H2], "image": None}  # content only
    # A verifier recomputes it from the decoded bytes alone.
    wire = decode_record(encode_record(record)).to_wire()
    assert hashlib.sha256(encode(wire["code"])).digest() == wire["code_hash"]


def test_from_change_and_replace() -> None:
    change = Change(
        time=5,
        host=HOST,
        location=file_location(HOST, "/tmp/a"),
        op=Op.RENAME,
        from_location=file_location(HOST, "/tmp/b"),
        capture=Capture(CaptureBackend.FANOTIFY, True),
        after=ContentRef(H1, 3),
    )
    first = Record.from_change(change, AGENT, 0, None)
    second = Record.from_change(change, AGENT, 1, first.hash)
    assert second.prev == first.hash and second.seq == 1 and second.from_location == change.from_location
    assert decode_record(encode_record(second)) == second
    moved = dataclasses.replace(second, seq=2)
    assert moved.hash != second.hash
    with pytest.raises(RecordError) as info:
        dataclasses.replace(second, seq=0)
    assert info.value.field == "prev"


def test_records_are_hashable_and_comparable() -> None:
    assert sample_record() == sample_record()
    assert hash(sample_record(payload=None)) == hash(sample_record(payload=None))
    assert sample_record() != sample_record(seq=8)


# ------------------------------------------------------------------ validation names the field


BAD_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("v", {"v": 3}),
    ("v", {"v": True}),
    ("agent", {"agent": "0x1234"}),
    ("agent", {"agent": 5}),
    ("seq", {"seq": -1}),
    ("seq", {"seq": True}),
    ("seq", {"seq": 2**64}),
    ("prev", {"prev": None}),
    ("prev", {"prev": b"short"}),
    ("prev", {"seq": 0}),
    ("time", {"time": -1}),
    ("time", {"time": 1.5}),
    ("user", {"user": ""}),
    ("user", {"user": 7}),
    ("user", {"user": "bad\ud800"}),
    ("uid", {"uid": -1}),
    ("uid", {"uid": "1000"}),
    ("host", {"host": ""}),
    ("host", {"host": None}),
    ("location", {"location": "relative/path"}),
    ("location", {"location": "FILE://h/x"}),
    ("location", {"location": "file://h/a b"}),
    ("location", {"location": "file://h/a//b"}),
    ("location", {"location": "file://h/a/./b"}),
    ("location", {"location": "file://h/a/../b"}),
    ("location", {"location": "file://h/a/"}),
    ("location", {"location": "file://h/a/."}),
    ("location", {"location": "file://h/a%2fb"}),
    ("location", {"location": "file://h/a%2Fb"}),
    ("location", {"location": "file://h/%61"}),
    ("location", {"location": "file://h/a%00b"}),
    ("location", {"location": "file:///no-host"}),
    ("location", {"location": "file://h"}),
    ("location", {"location": ""}),
    ("op", {"op": "explode"}),
    ("op", {"op": None}),
    ("before", {"before": "x"}),
    ("after", {"after": {"sha256": H1, "size": 1}}),
    ("after", {"op": Op.DELETE}),
    ("code", {"code": "python3"}),
    ("code_hash", {"code_hash": H1}),
    ("code_hash", {"code": None, "code_hash": b"short"}),
    ("code_hash", {"code": Commitment(H1)}),
    ("code_hash", {"code": Commitment(H1), "code_hash": b"x"}),
    ("pid", {"pid": -3}),
    ("run", {"run": ""}),
    ("capture", {"capture": {"backend": "fanotify", "attributed": True, "reason": None}}),
    ("from", {"from_location": file_location(HOST, "/old")}),
    ("from", {"op": Op.RENAME}),
    ("from", {"op": Op.RENAME, "from_location": "nonsense"}),
    ("mode", {"mode": 0o644}),
    ("mode", {"op": Op.CHMOD}),
    ("mode", {"op": Op.CHMOD, "mode": -1}),
    ("payload", {"payload": {"loss": 0.5}}),
    ("payload", {"payload": {1: "x"}}),
    ("payload", {"payload": {"t": (1, 2)}}),
    ("payload", {"payload": {"big": 2**64}}),
    ("payload", {"payload": ["not", "a", "map"]}),
    ("payload", {"payload": {"s": "\udcff"}}),
]


@pytest.mark.parametrize(("field", "overrides"), BAD_FIELDS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_FIELDS)])
def test_validation_names_the_field(field: str, overrides: dict[str, Any]) -> None:
    with pytest.raises(RecordError) as info:
        sample_record(**overrides)
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, BadInput) and not isinstance(info.value, UsageError)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ContentRef(b"x", 1), "sha256"),
        (lambda: ContentRef(H1, -1), "size"),
        (lambda: ContentRef(H1, 1, "bafy"), "cid"),  # type: ignore[arg-type]
        (lambda: ContentRef(H1, 1, CID.for_block(RAW, b"other")), "cid"),
        (lambda: Capture("ebpf", True), "backend"),  # type: ignore[arg-type]
        (lambda: Capture(CaptureBackend.RUN, 1), "attributed"),  # type: ignore[arg-type]
        (lambda: Capture(CaptureBackend.RUN, True, ""), "reason"),
        (lambda: Capture(CaptureBackend.INOTIFY, False), "reason"),
        (lambda: CodeFile("", H1), "path"),
        (lambda: CodeFile("/x", b"y"), "sha256"),
        (lambda: CodeIdentity(exe="x"), "exe"),  # type: ignore[arg-type]
        (lambda: CodeIdentity(exe=None, argv=("a", 1)), "argv"),  # type: ignore[arg-type]
        (lambda: CodeIdentity(exe=None, scripts=("x",)), "scripts"),  # type: ignore[arg-type]
        (lambda: CodeIdentity(exe=None, image=""), "image"),
        (lambda: Commitment(b"x"), "commitment"),
    ],
)
def test_nested_values_name_their_field(make: Any, field: str) -> None:
    with pytest.raises(RecordError) as info:
        make()
    assert info.value.field == field


def test_code_with_unencodable_argv_is_refused_as_code() -> None:
    with pytest.raises(RecordError) as info:
        sample_record(code=CodeIdentity(exe=None, argv=("\ud800",)))
    assert info.value.field == "code"


# ------------------------------------------------------------------ strict wire parsing


def _wire(**changes: Any) -> dict[str, Any]:
    wire = sample_record().to_wire()
    wire.update(changes)
    return wire


@pytest.mark.parametrize("missing", WIRE_FIELDS)
def test_missing_field_is_named(missing: str) -> None:
    wire = _wire()
    del wire[missing]
    with pytest.raises(RecordError, match="missing") as info:
        Record.from_wire(wire)
    assert info.value.field == missing
    with pytest.raises(RecordError) as info:
        decode_record(encode(wire))
    assert info.value.field == missing


def test_unknown_field_is_named() -> None:
    wire = _wire(extra=1)
    with pytest.raises(RecordError, match="unknown") as info:
        decode_record(encode(wire))
    assert info.value.field == "extra"


WIRE_MUTATIONS: list[tuple[str, dict[str, Any]]] = [
    ("agent", {"agent": AGENT}),  # checksummed: valid input to the constructor, not canonical on the wire
    ("op", {"op": 3}),
    ("op", {"op": "WRITE"}),
    ("before", {"before": {"sha256": H1, "size": 1, "cid": None}}),
    ("before", {"before": {"sha256": H1}}),
    ("before", {"before": {"sha256": b"x", "size": 1}}),
    ("after", {"after": {"sha256": H1, "size": 1}}),
    ("after", {"after": {"sha256": H1, "size": 1, "cid": "bafy"}}),
    ("after", {"after": [H1, 1, None]}),
    ("code", {"code": {"exe": None, "scripts": [], "argv": []}}),
    ("code", {"code": {"exe": None, "scripts": (), "argv": [], "image": None}}),
    ("code", {"code": {"exe": {"path": "/x"}, "scripts": [], "argv": [], "image": None}}),
    ("code", {"code": {"exe": None, "scripts": [{"path": "/x", "sha256": H1, "x": 1}], "argv": [], "image": None}}),
    ("code_hash", {"code_hash": None}),
    ("capture", {"capture": {"backend": "fanotify", "attributed": True}}),
    ("capture", {"capture": {"backend": "ebpf", "attributed": True, "reason": None}}),
    ("capture", {"capture": None}),
    ("user", {"user": {"name": "alice"}}),
    ("user", {"user": {"commitment": b"short"}}),
    ("host", {"host": {"commitment": H1, "salt": H2}}),
    ("payload", {"payload": "text"}),
    ("v", {"v": 3}),
    ("invocation", {"v": 1}),  # a version 1 record has no invocation field
    ("invocation", {"invocation": None}),
    ("code", {"invocation": {"exe": "/x", "scripts": [], "argv": [], "cwd": None}}),  # scripts do not pair up
    ("code", {"invocation": {"exe": None, "scripts": ["/s"], "argv": [], "cwd": None}}),  # exe set in code only
    ("code", {"invocation": {"exe": "/x", "scripts": ["/s"], "argv": []}}),
    ("invocation", {"code": None, "code_hash": H1}),  # an invocation without code
]


@pytest.mark.parametrize(
    ("field", "changes"), WIRE_MUTATIONS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(WIRE_MUTATIONS)]
)
def test_wire_errors_name_the_top_level_field(field: str, changes: dict[str, Any]) -> None:
    wire = _wire(**changes)
    with pytest.raises(RecordError) as info:
        Record.from_wire(wire)
    assert info.value.field == field
    try:
        data = encode(wire)
    except DagCborError:
        return
    with pytest.raises(RecordError) as info:
        decode_record(data)
    assert info.value.field == field


def _raw_map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A CBOR map from already-encoded key/value pairs, in the given (possibly wrong) order."""
    return bytes([0xA0 | len(pairs)]) + b"".join(k + v for k, v in pairs)


def _pairs(record: Record) -> list[tuple[bytes, bytes]]:
    wire = record.to_wire()
    pairs = [(encode(k), encode(v)) for k, v in wire.items()]
    return sorted(pairs, key=lambda kv: (len(kv[0]), kv[0]))


def test_canonical_pairs_helper_reproduces_the_encoding() -> None:
    record = sample_record(payload=None)
    assert _raw_map(_pairs(record)) == encode_record(record)


def _replace_value(pairs: list[tuple[bytes, bytes]], key: str, raw: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, raw if k == encode(key) else v) for k, v in pairs]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda p: list(reversed(p)), id="unsorted-keys"),
        pytest.param(lambda p: [p[1], p[0], *p[2:]], id="two-keys-swapped"),
        pytest.param(lambda p: _replace_value(p, "seq", bytes.fromhex("1807")), id="non-minimal-int"),
        pytest.param(lambda p: _replace_value(p, "seq", bytes.fromhex("1b0000000000000007")), id="non-minimal-int-8"),
        pytest.param(lambda p: _replace_value(p, "time", bytes.fromhex("fb41d954fc4007e6b7")), id="float"),
        pytest.param(lambda p: _replace_value(p, "run", bytes.fromhex("7f6372756eff")), id="indefinite-string"),
        pytest.param(lambda p: _replace_value(p, "run", bytes.fromhex("78037275 6e".replace(" ", ""))), id="long-len"),
        pytest.param(lambda p: _replace_value(p, "pid", bytes.fromhex("f7")), id="undefined"),
        pytest.param(lambda p: _replace_value(p, "pid", bytes.fromhex("c11a6553f100")), id="unknown-tag"),
    ],
)
def test_decode_rejects_non_canonical_bytes(mangle: Any) -> None:
    record = sample_record(payload=None)
    data = _raw_map(mangle(_pairs(record)))
    with pytest.raises(RecordError):
        decode_record(data)


def test_decode_rejects_trailing_bytes_and_duplicates_and_non_maps() -> None:
    data = encode_record(sample_record())
    with pytest.raises(RecordError, match="trailing"):
        decode_record(data + b"\x00")
    pairs = _pairs(sample_record(payload=None))
    duplicated = [*pairs[:1], pairs[0], *pairs[1:]]
    with pytest.raises(RecordError, match="duplicate"):
        decode_record(_raw_map(duplicated))
    with pytest.raises(RecordError, match="map"):
        decode_record(encode([1, 2]))
    with pytest.raises(RecordError):
        decode_record(data[:-1])


def test_decoded_record_keeps_exact_bytes() -> None:
    data = encode_record(sample_record())
    assert encode_record(decode_record(data)) == data


# ------------------------------------------------------------------ locations


@pytest.mark.parametrize(
    ("host", "path", "uri"),
    [
        ("h1", "/", "file://h1/"),
        ("h1", "/home/alice/data.csv", "file://h1/home/alice/data.csv"),
        ("h1", "/a b/c%d#e?f", "file://h1/a%20b/c%25d%23e%3Ff"),
        ("h1", "/x/ü.txt", "file://h1/x/%C3%BC.txt"),
        ("h1", "/keep/-._~!$&'()*+,;=:@", "file://h1/keep/-._~!$&'()*+,;=:@"),
        ("my host:1", "/x", "file://my%20host%3A1/x"),
        ("h1", b"/raw/\xff", "file://h1/raw/%FF"),
        ("h1", "/.hidden/..x/...", "file://h1/.hidden/..x/..."),
    ],
)
def test_file_locations(host: str, path: str | bytes, uri: str) -> None:
    assert file_location(host, path) == uri
    parsed_host, parsed_path = parse_file_location(uri)
    assert parsed_host == host
    assert os.fsencode(parsed_path) == os.fsencode(path)
    sample_record(location=uri)  # valid in a record


@pytest.mark.parametrize(
    ("host", "path"),
    [("h", "relative"), ("h", "/a/"), ("h", "//a"), ("h", "/a/./b"), ("h", "/a/.."), ("h", "/a\0b"), ("", "/a")],
)
def test_file_location_refuses_unnormalised_paths(host: str, path: str) -> None:
    with pytest.raises(RecordError) as info:
        file_location(host, path)
    assert info.value.field == "location"


def test_non_file_locations_are_uris() -> None:
    sample_record(location="model://registry/resnet50/7")
    with pytest.raises(RecordError):
        parse_file_location("model://registry/x")


# ------------------------------------------------------------------ commitments


@pytest.mark.parametrize("field", sorted(COMMITTABLE_FIELDS))
def test_committed_fields_round_trip_and_open(field: str) -> None:
    base = sample_record(op=Op.RENAME, from_location=file_location(HOST, "/home/alice/old.csv"))
    salt = new_salt()
    committed = base.with_commitments({field: salt})
    attr = "from_location" if field == "from" else field
    commitment = getattr(committed, attr)
    assert isinstance(commitment, Commitment)
    plain = getattr(base, attr)
    assert open_commitment(commitment, plain, salt)
    assert open_commitment(commitment.to_wire(), plain, salt)
    assert not open_commitment(commitment, plain, new_salt())
    assert decode_record(encode_record(committed)) == committed
    assert committed.hash != base.hash
    assert committed.code_hash == base.code_hash  # code_hash always hashes the plain code
    assert committed.to_wire()[field] == commit(plain, salt)


def test_commitment_rule() -> None:
    salt = bytes(range(32))
    assert commit("alice", salt) == {"commitment": hashlib.sha256(salt + encode("alice")).digest()}
    assert commit(sample_code(), salt) == commit(sample_code().to_wire(), salt)
    assert not open_commitment(commit("alice", salt), "bob", salt)
    assert not open_commitment({"commitment": b"x"}, "alice", salt)
    assert not open_commitment(commit("alice", salt), "alice", b"short")
    assert not open_commitment(commit("alice", salt), 1.5, salt)
    with pytest.raises(RecordError):
        commit("alice", b"short")


def test_commitments_cannot_be_applied_twice_or_to_other_fields() -> None:
    salt = new_salt()
    committed = sample_record().with_commitments({"user": salt})
    with pytest.raises(RecordError) as info:
        committed.with_commitments({"user": salt})
    assert info.value.field == "user"
    with pytest.raises(RecordError) as info:
        sample_record().with_commitments({"seq": salt})
    assert info.value.field == "seq"


# ------------------------------------------------------------------ code identity


def test_sha256_file(tmp_path: Path) -> None:
    target = tmp_path / "big"
    data = os.urandom(3 << 20)
    target.write_bytes(data)
    assert sha256_file(target) == hashlib.sha256(data).digest()


def test_identify_cp() -> None:
    cp = shutil.which("cp")
    assert cp is not None
    identity = identify_command(cp, ["cp", "a", "b"], "/")
    resolved = os.path.realpath(cp)
    assert identity.exe == CodeFile(resolved, hashlib.sha256(Path(resolved).read_bytes()).digest())
    assert identity.scripts == ()
    assert identity.argv == ("cp", "a", "b")
    assert identity.image is None


def _python3() -> str:
    return shutil.which("python3") or sys.executable


def test_identify_python_script(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    identity = identify_command(
        _python3(), ["python3", "-u", "train.py", "--epochs", "3"], tmp_path, image="img@sha256:00"
    )
    assert identity.exe is not None
    assert identity.exe.sha256 == sha256_file(os.path.realpath(_python3()))
    assert identity.scripts == (CodeFile(str(script.resolve()), hashlib.sha256(script.read_bytes()).digest()),)
    assert identity.argv == ("python3", "-u", "train.py", "--epochs", "3")
    assert identity.image == "img@sha256:00"
    record = sample_record(code=identity)
    assert record.code_hash == code_hash(identity)


@pytest.mark.parametrize(
    "argv",
    [
        ["python3", "-m", "nosuchmodule"],
        ["python3", "-c", "import x", "train.py"],
        ["python3", "-", "train.py"],
        ["python3", "missing.py"],
        ["python3"],
    ],
)
def test_python_without_script_file(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "train.py").write_text("")
    identity = identify_command(_python3(), argv, tmp_path)
    assert identity.scripts == ()
    assert identity.argv == tuple(argv)


def test_script_after_double_dash_and_shell(tmp_path: Path) -> None:
    (tmp_path / "-odd.sh").write_text("echo\n")
    bash = shutil.which("bash")
    assert bash is not None
    identity = identify_command(bash, ["bash", "--", "-odd.sh"], tmp_path)
    assert [s.path for s in identity.scripts] == [str(tmp_path.resolve() / "-odd.sh")]
    identity = identify_command(bash, ["bash", "-c", "echo hi"], tmp_path)
    assert identity.scripts == ()


def test_non_interpreters_have_no_scripts(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    cp = shutil.which("cp")
    assert cp is not None
    assert identify_command(cp, ["cp", "a", "b"], tmp_path).scripts == ()


def test_unreadable_executable_is_none_not_guessed(tmp_path: Path) -> None:
    identity = identify_command(tmp_path / "gone", ["gone", b"\xffarg"], tmp_path)
    assert identity.exe is None
    assert identity.argv == ("gone", "\\xffarg")
    sample_record(code=identity)  # still a valid record


def docs_example_record(version: int = 2) -> Record:
    """The worked example of docs/record-format.md (version 1: the same record in the old layout)."""
    return Record(
        v=version,
        agent="0x00000000000000000000000000000000000000aa",
        seq=0,
        prev=None,
        time=1_700_000_000_000_000_000,
        host="vm1",
        location=file_location("vm1", "/data/a.csv"),
        op=Op.CREATE,
        after=ContentRef(hashlib.sha256(b"hi\n").digest(), 3, CID.for_block(RAW, b"hi\n")),
        capture=Capture(CaptureBackend.INOTIFY, False, "inotify does not report the writer"),
        mode=0o100644,
    )


def test_docs_worked_example_is_current() -> None:
    """docs/record-format.md shows the bytes and CID of this exact record."""
    record = docs_example_record()
    doc = (Path(__file__).resolve().parent.parent / "docs" / "record-format.md").read_text()
    data = encode_record(record).hex()
    flat = "".join(doc.split())
    assert data in flat
    assert record.cid.encode() in doc
    assert record.hash.hex() in doc
    assert record.leaf_hash.hex() in doc
    assert record.after is not None and record.after.cid is not None and record.after.cid.encode() in doc
    domain = Eip712Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    assert domain.separator.hex() in doc
    assert signing_digest(domain, record.hash).hex() in doc
    key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    assert key in doc
    assert sign_record_hash(key, domain, record.hash).hex() in doc


def test_records_pickle_for_worker_processes() -> None:
    import pickle

    record = sample_record().with_commitments({"user": new_salt()})
    clone = pickle.loads(pickle.dumps(record))
    assert clone == record
    assert clone.hash == record.hash


def test_code_hash_may_stand_alone_without_code() -> None:
    """A hand-made record knows the writer only by hash: kept as given, round-trips."""
    record = sample_record(code=None, code_hash=H1)
    assert record.code is None and record.code_hash == H1
    assert decode_record(encode_record(record)) == record


def test_an_attributed_change_may_carry_a_note() -> None:
    note = Capture(CaptureBackend.FANOTIFY, True, "read after it settled")
    record = sample_record(capture=note)
    assert decode_record(encode_record(record)).capture == note


# ------------------------------------------------------------------ code identity (record version 2, issue 15)


def test_docs_code_hash_worked_example_is_current() -> None:
    """docs/record-format.md section 5.2: the code map, its hash and the invocation, byte for byte."""
    identity = CodeIdentity(
        exe=CodeFile("/usr/bin/python3.11", hashlib.sha256(b"python").digest()),
        scripts=(CodeFile("/home/alice/prep.py", hashlib.sha256(b"print('prep')\n").digest()),),
        argv=("python3", "prep.py", "--out", "a.csv"),
        cwd="/home/alice",
    )
    flat = "".join((Path(__file__).resolve().parent.parent / "docs" / "record-format.md").read_text().split())
    assert encode(identity.code_wire()).hex() in flat
    assert identity.digest.hex() in flat
    assert encode(identity.invocation_wire()).hex() in flat
    other_call = dataclasses.replace(identity, argv=("python3", "prep.py", "--out", "b.csv"), cwd="/tmp")
    assert other_call.digest == identity.digest
    assert other_call.invocation_wire() != identity.invocation_wire()


def test_version_1_records_still_decode_with_their_own_code_hash_rule() -> None:
    """The version 1 worked example of the earlier docs: same bytes, same hash, still valid."""
    record = docs_example_record(version=1)
    assert record.hash.hex() == "3d126855ea647f95a7a87df6f1ddd155f90c296b102c53209771e1f9de6bd983"
    assert len(record.canonical) == 377 and "invocation" not in record.to_wire()
    assert decode_record(record.canonical) == record
    old_code = dataclasses.replace(sample_code(), cwd=None)
    v1 = sample_record(v=1, code=old_code)
    wire = decode_record(v1.canonical).to_wire()
    assert set(wire["code"]) == {"exe", "scripts", "argv", "image"}  # type: ignore[arg-type]
    assert wire["code_hash"] == hashlib.sha256(encode(old_code.legacy_wire())).digest() == old_code.legacy_digest
    assert decode_record(v1.canonical).code == old_code
    with pytest.raises(RecordError) as info:
        sample_record(v=1, code=sample_code(), code_hash=sample_code().digest)  # a v2 hash in a v1 record
    assert info.value.field == "code_hash"


def test_version_2_code_and_invocation_round_trip() -> None:
    record = sample_record()
    wire = record.to_wire()
    assert wire["code"] == {"exe": H1, "scripts": [H2], "image": None}
    assert wire["invocation"] == {
        "exe": "/usr/bin/python3.11",
        "scripts": ["/home/alice/prepare.py"],
        "argv": ["python3", "prepare.py", "--out", "data/clean.csv"],
        "cwd": None,
    }
    assert decode_record(record.canonical) == record


def test_a_commitment_hides_code_and_invocation_together() -> None:
    salt = new_salt()
    committed = sample_record().with_commitments({"code": salt})
    wire = committed.to_wire()
    assert wire["invocation"] is None and committed.code_hash == sample_code().digest
    assert open_commitment(wire["code"], sample_code().to_wire(), salt)  # type: ignore[arg-type]
    assert decode_record(committed.canonical) == committed


def _cp() -> str:
    found = shutil.which("cp")
    assert found is not None
    return found


def test_two_cp_calls_share_a_code_hash_and_differ_from_python(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    one = identify_command(_cp(), ["cp", "a.txt", "b.txt"], tmp_path)
    two = identify_command(_cp(), ["cp", "-p", "a.txt", "c.txt"], "/")
    assert one.digest == two.digest and one.argv != two.argv
    assert identify_command(_python3(), ["python3", "-c", "pass"], tmp_path).digest != one.digest


def test_one_script_under_two_argvs_shares_a_hash_and_an_edit_changes_it(tmp_path: Path) -> None:
    script = tmp_path / "prep.py"
    script.write_text("print('v1')\n")
    first = identify_command(_python3(), ["python3", "prep.py", "--in", "a"], tmp_path)
    second = identify_command(_python3(), ["python3", "-u", str(script), "--in", "b"], "/")
    assert first.digest == second.digest
    script.write_text("print('v2')\n")
    assert identify_command(_python3(), ["python3", "prep.py", "--in", "a"], tmp_path).digest != first.digest


def test_python_dash_m_hashes_the_module_it_resolves(tmp_path: Path) -> None:
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("print('mod')\n")
    (package / "__main__.py").write_text("print('main')\n")
    env = {"PYTHONPATH": "src"}
    identity = identify_command(_python3(), ["python3", "-m", "pkg.mod", "x"], tmp_path, environ=env)
    assert [s.path for s in identity.scripts] == [str((package / "mod.py").resolve())]
    assert identity.scripts[0].sha256 == hashlib.sha256(b"print('mod')\n").digest()
    as_package = identify_command(_python3(), ["python3", "-mpkg"], tmp_path, environ=env)
    assert [s.path for s in as_package.scripts] == [str((package / "__main__.py").resolve())]
    # The working directory comes first, as the interpreter puts it first on sys.path.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("print('shadow')\n")
    shadowed = identify_command(_python3(), ["python3", "-m", "pkg.mod"], tmp_path, environ=env)
    assert shadowed.scripts[0].path == str((tmp_path / "pkg" / "mod.py").resolve())
    assert identify_command(_python3(), ["python3", "-m", "pkg.mod"], tmp_path, environ={}).scripts[0].path == (
        shadowed.scripts[0].path
    )
    stdlib = identify_command(os.path.realpath(sys.executable), ["python3", "-m", "json.tool"], tmp_path, environ={})
    assert stdlib.scripts and stdlib.scripts[0].path.endswith("/json/tool.py")
