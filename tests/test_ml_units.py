"""The ML building blocks without a network: row fingerprints, proofs, commitments, numbers, the wire format."""

from __future__ import annotations

import hashlib
import os
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from provanchor.errors import (
    DatasetNotFound,
    InvalidHyperparameter,
    InvalidMetric,
    NotAMember,
    RecordError,
    UnknownEvent,
    UnsupportedCommitment,
    UnsupportedDataset,
)
from provanchor.formats import merkle
from provanchor.formats.cid import CID, DAG_CBOR, RAW
from provanchor.ml import dataset as ds_module
from provanchor.ml.commitments import CommitMode, DataCommitment, commit_data, hmac_key_id
from provanchor.ml.dataset import (
    LeafArray,
    fingerprint_file,
    fingerprint_samples,
    prove_membership,
    row_leaf,
)
from provanchor.ml.events import (
    decimal_text,
    event_location,
    hyperparameters_wire,
    metrics_wire,
    parse_event,
    parse_event_id,
)
from provanchor.records import Capture, CaptureBackend, Op, Record


def reference(rows: list[bytes]) -> bytes:
    """The documented digest, computed the slow, obvious way."""
    return merkle.root([hashlib.sha256(b"\x00" + hashlib.sha256(r).digest()).digest() for r in rows])


# ------------------------------------------------------------------ rows of a file


@pytest.mark.parametrize(
    ("content", "rows"),
    [
        (b"", []),
        (b"a", [b"a"]),
        (b"a\n", [b"a"]),
        (b"a\nb", [b"a", b"b"]),
        (b"a\n\nb\n", [b"a", b"", b"b"]),
        (b"\n", [b""]),
        (b"x\r\ny\r\n", [b"x\r", b"y\r"]),
    ],
)
def test_rows_of_a_text_file_are_its_lines(tmp_path: Path, content: bytes, rows: list[bytes]) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(content)
    fp = fingerprint_file(path)
    assert fp.rows == len(rows) and fp.digest == reference(rows) and fp.row_format == "lines"
    assert fp.sha256 == hashlib.sha256(content).digest() and fp.size == len(content)


def test_chunk_boundaries_do_not_change_the_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    rows = [b"r" * int(n) for n in rng.integers(0, 40, 3000)]
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\n".join(rows))
    whole = fingerprint_file(path)
    monkeypatch.setattr(ds_module, "CHUNK_BYTES", 7)  # rows straddle every chunk boundary
    small = fingerprint_file(path)
    assert whole.digest == small.digest == reference(rows) and small.rows == 3000
    assert small.sha256 == hashlib.sha256(path.read_bytes()).digest()


def test_a_csv_header_is_the_schema_not_a_row(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n1,2\n3,4\n")
    fp = fingerprint_file(path)
    assert fp.header and fp.rows == 2 and fp.digest == reference([b"1,2", b"3,4"])
    assert fp.schema_digest == hashlib.sha256(b"a,b").digest()
    assert fingerprint_file(path, header=False).digest == reference([b"a,b", b"1,2", b"3,4"])


def test_npy_rows_are_the_array_rows_as_stored(tmp_path: Path) -> None:
    for array in (
        np.arange(24, dtype="<f4").reshape(6, 4),
        np.arange(5, dtype=">i8"),
        np.zeros((3,), dtype=[("id", "<i4"), ("v", "<f8", (2,))]),
        np.array([b"ab", b"cd"], dtype="S2"),
        np.array(["é", "xy"], dtype="<U2"),
    ):
        path = tmp_path / "a.npy"
        np.save(path, array)
        fp = fingerprint_file(path, keep_leaves=True)
        assert fp.rows == len(array) and fp.digest == reference([array[i : i + 1].tobytes() for i in range(len(array))])
        assert fp.sha256 == hashlib.sha256(path.read_bytes()).digest() and fp.row_format == "npy"
        assert fp.leaves is not None and len(fp.leaves) == len(array)
    path = tmp_path / "f.npy"
    np.save(path, np.asfortranarray(np.arange(6.0).reshape(2, 3)))
    with pytest.raises(UnsupportedDataset, match="Fortran"):
        fingerprint_file(path)
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsupportedDataset, match="object"):
        fingerprint_file(path)
    path.write_bytes(b"not numpy at all")
    with pytest.raises(UnsupportedDataset, match="magic"):
        fingerprint_file(path)


def test_missing_dataset_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound, match=r"nope\.csv does not exist"):
        fingerprint_file(tmp_path / "nope.csv")
    with pytest.raises(DatasetNotFound, match="not a regular file"):
        fingerprint_file(tmp_path)


# ------------------------------------------------------------------ membership proofs


def test_membership_proofs_for_every_row_and_refusals() -> None:
    samples = [f"sample {i}".encode() for i in range(37)]
    fp = fingerprint_samples(samples, keep_leaves=True)
    assert fp.leaves is not None and fp.digest == reference(samples)
    for i, sample in enumerate(samples):
        proof = prove_membership("ds", fp.leaves, fp.digest, sample)
        assert proof.index == i and proof.verify(sample)
        assert not proof.verify(samples[(i + 1) % 37])
    with pytest.raises(NotAMember):
        prove_membership("ds", fp.leaves, fp.digest, b"sample 37")
    with pytest.raises(UnsupportedDataset):
        fingerprint_samples(["text, not bytes"])  # type: ignore[list-item]


def test_leaf_array_is_a_sequence_of_32_byte_hashes() -> None:
    leaves = [row_leaf(bytes([i])) for i in range(10)]
    packed = LeafArray(b"".join(leaves))
    assert len(packed) == 10 and packed[3] == leaves[3] and packed[-1] == leaves[-1]
    assert packed[2:5] == leaves[2:5] and packed[::3] == leaves[::3]
    assert merkle.inclusion_proof(packed, 7) == merkle.inclusion_proof(leaves, 7)
    # find() only matches whole leaves, never 32 bytes straddling two of them.
    straddle = leaves[0][16:] + leaves[1][:16]
    assert packed.find(straddle) is None and packed.find(leaves[9]) == 9


# ------------------------------------------------------------------ commitments


def test_commitment_modes() -> None:
    data = b"the prompt"
    plain = commit_data(data, "sha256")
    assert plain.digest == hashlib.sha256(data).digest() and plain.verify(data) and not plain.verify(b"x")
    salted = commit_data(data, CommitMode.SALTED)
    assert salted.salt is not None and salted.verify(data) and salted.digest != plain.digest
    wire_only = DataCommitment.from_wire(salted.to_wire())
    assert wire_only.salt is None and not wire_only.verify(data) and wire_only.verify(data, salt=salted.salt)
    key = b"k" * 32
    keyed = commit_data(data, "hmac", key=key)
    assert keyed.key_id == hmac_key_id(key) and keyed.verify(data, key=key)
    assert not keyed.verify(data, key=b"j" * 32) and not keyed.verify(data)
    stored = commit_data(data, "sha256", store=True)
    assert DataCommitment.from_wire(stored.to_wire()).data == data


def test_unsupported_commitments_are_refused() -> None:
    with pytest.raises(UnsupportedCommitment, match="unsupported commitment mode 'md5'"):
        commit_data(b"x", "md5")
    with pytest.raises(UnsupportedCommitment, match="key"):
        commit_data(b"x", "hmac")
    with pytest.raises(UnsupportedCommitment, match="at least"):
        commit_data(b"x", "hmac", key=b"short")
    with pytest.raises(UnsupportedCommitment, match="bytes"):
        commit_data("text", "sha256")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedCommitment, match="store"):
        commit_data(b"x" * 70_000, "sha256", store=True)
    bad = commit_data(b"x", "sha256").to_wire()
    with pytest.raises(UnsupportedCommitment):
        DataCommitment.from_wire({**bad, "key_id": b"12345678"})


# ------------------------------------------------------------------ numbers


def test_numbers_become_decimal_strings() -> None:
    assert decimal_text(0.91, "m") == "0.91" and decimal_text(3, "m") == "3"
    assert decimal_text(Decimal("1e-4"), "m") == "0.0001" and decimal_text(" 3e-4 ", "m") == "3e-4"
    assert decimal_text(np.float32(0.5), "m") == "0.5"
    for bad in (float("inf"), float("nan"), "high", True, None, [1]):
        with pytest.raises(InvalidMetric):
            decimal_text(bad, "m")
    assert metrics_wire({"accuracy": 0.5, "n": 10}) == {"accuracy": "0.5", "n": "10"}
    with pytest.raises(InvalidMetric, match="'f1' must be a number"):
        metrics_wire({"f1": "n/a"})
    assert hyperparameters_wire({"lr": 3e-4, "layers": [64, 0.5], "opt": "adam", "seed": None}) == {
        "lr": "0.0003",
        "layers": [64, "0.5"],
        "opt": "adam",
        "seed": None,
    }
    with pytest.raises(InvalidHyperparameter, match="'lr'"):
        hyperparameters_wire({"lr": float("nan")})
    with pytest.raises(InvalidHyperparameter):
        hyperparameters_wire({"fn": object()})


# ------------------------------------------------------------------ the wire format


def ml_record(payload: dict[str, object], op: Op = Op.TRAINING) -> Record:
    return Record(
        agent="0x" + "ab" * 20, seq=0, prev=None, time=1, host="h", location=event_location("h", op, "m", "1"),
        op=op, capture=Capture(backend=CaptureBackend.ML, attributed=True, reason=None), payload=payload,
    )  # fmt: skip


def test_events_parse_strictly() -> None:
    link = CID(1, DAG_CBOR, bytes(32))
    ok = ml_record({"ml": 1, "kind": "training", "parents": [{"kind": "dataset", "id": link}]})
    event = parse_event(ok)
    assert event.kind is Op.TRAINING and event.parents[0].id == link and event.record_id == ok.cid.encode()
    with pytest.raises(RecordError, match="needs a dataset parent"):
        parse_event(ml_record({"ml": 1, "kind": "training", "parents": []}))
    with pytest.raises(RecordError, match="cannot link"):
        parse_event(ml_record({"ml": 1, "kind": "training", "parents": [{"kind": "model", "id": link}]}))
    with pytest.raises(RecordError, match="not an ML event"):
        parse_event(ml_record({"ml": 1, "kind": "model", "parents": []}))
    assert event_location("vm 1", Op.MODEL, "tiny/mlp", "1.0") == "ml://vm%201/model/tiny%2Fmlp/1.0"


def test_event_ids_are_record_cids() -> None:
    cid = CID(1, DAG_CBOR, bytes(32))
    assert parse_event_id(cid.encode()) == cid
    with pytest.raises(UnknownEvent, match="raw content"):
        parse_event_id(CID(1, RAW, bytes(32)).encode())
    with pytest.raises(UnknownEvent, match="not an event id"):
        parse_event_id("hello")


def test_git_state_names_the_commit_and_whether_the_tree_is_dirty(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from provanchor.ml.environment import code_files, git_state

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    code = tmp_path / "train.py"
    code.write_text("print('train')\n")
    assert git_state([code]) is None  # not a repository
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for args in (["init", "-q"], ["add", "train.py"], ["commit", "-q", "-m", "code"]):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, env={**os.environ, **env})
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert git_state([code]) == {"commit": head.strip(), "dirty": False}
    code.write_text("print('changed')\n")
    assert git_state([code]) == {"commit": head.strip(), "dirty": True}
    assert code_files([code]) == [{"path": str(code.resolve()), "sha256": hashlib.sha256(code.read_bytes()).digest()}]
    with pytest.raises(DatasetNotFound, match="code path"):
        code_files([tmp_path / "missing.py"])


def test_the_row_format_follows_the_name_given_or_the_one_recorded(tmp_path: Path) -> None:
    blob = tmp_path / "blob"  # no suffix: a content-addressed store, say
    np.save(tmp_path / "tmp.npy", np.arange(6, dtype="<i2").reshape(3, 2))
    (tmp_path / "tmp.npy").rename(blob)
    (tmp_path / "link.npy").symlink_to(blob)
    by_name = fingerprint_file(tmp_path / "link.npy")
    assert by_name.row_format == "npy" and by_name.rows == 3
    assert fingerprint_file(blob, row_format="npy").digest == by_name.digest
    assert fingerprint_file(blob).row_format == "lines"
    with pytest.raises(UnsupportedDataset, match="unknown row format"):
        fingerprint_file(blob, row_format="parquet")


def test_schemas_and_architectures_are_digested_canonically() -> None:
    from provanchor.ml.dataset import schema_digest_of

    assert schema_digest_of({"b": 1, "a": "x"}) == schema_digest_of({"a": "x", "b": 1})
    assert schema_digest_of(b"raw") == hashlib.sha256(b"raw").digest()
    with pytest.raises(UnsupportedDataset, match="architecture cannot be digested"):
        schema_digest_of({"dropout": 0.5}, "architecture")
