"""ML lifecycle provenance on a real local network: a real (tiny) training run, traced and verified.

One module-scoped scenario: generated data, NumPy logistic regression, then
dataset, training, model, evaluation and many inference events recorded by a
Tracker, anchored on anvil and stored on Kubo. The tests then trace a
receipt back to the data, verify the whole chain, alter the data file, the
model file and a hyperparameter record one at a time (restoring each), prove
dataset membership and open HMAC commitments.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from provanchor.errors import (
    DatasetNotFound,
    InvalidMetric,
    MlError,
    NotAMember,
    UnknownParent,
    UnsupportedCommitment,
    UsageError,
    WrongParentKind,
)
from provanchor.formats import dagcbor
from provanchor.formats.cid import CID, DAG_CBOR, RAW
from provanchor.home import Home
from provanchor.localnet.devagents import enroll_agent
from provanchor.ml import DataCommitment, Event, MembershipProof, Receipt, Tracker
from provanchor.records import Op

PASSWORD = "ml-test-password"
CLI = [sys.executable, "-m", "provanchor.cli.main"]
HMAC_KEY = bytes(range(32))
INFERENCES = 300
Alter = Callable[[Path, bytes, bytes], None]


def make_data(path: Path, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs as CSV (header x0,x1,label); returns the features and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    features = rng.normal(0.0, 1.0, (rows, 2)) + np.where(labels[:, None] == 1, 1.5, -1.5)
    lines = ["x0,x1,label"] + [f"{a:.6f},{b:.6f},{y}" for (a, b), y in zip(features, labels, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return features, labels


def load_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    return data[:, :2], data[:, 2]


def train(features: np.ndarray, labels: np.ndarray, lr: float, epochs: int) -> np.ndarray:
    """Logistic regression by full-batch gradient descent: weights w0, w1 and a bias."""
    x = np.hstack([features, np.ones((len(features), 1))])
    w = np.zeros(3)
    for _ in range(epochs):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        w -= lr * x.T @ (p - labels) / len(labels)
    return w


def predict(w: np.ndarray, features: np.ndarray) -> np.ndarray:
    return (np.hstack([features, np.ones((len(features), 1))]) @ w > 0).astype(int)


@dataclass
class Scenario:
    home: Home
    tracker: Tracker
    work: Path
    train_csv: Path
    val_csv: Path
    model_file: Path
    params_file: Path
    ds: Event
    ds_val: Event
    training: Event
    model: Event
    evaluation: Event
    receipts: list[Receipt]
    inputs: list[bytes]
    outputs: list[bytes]
    accuracy: float


@pytest.fixture(scope="module")
def scenario(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp("ml")
    home, _ = enroll_agent(net_home, root / "home", "trainer", PASSWORD)
    work = root / "work"
    work.mkdir()
    train_csv, val_csv = work / "train.csv", work / "val.csv"
    make_data(train_csv, 400, seed=1)
    make_data(val_csv, 100, seed=2)
    code = work / "train.py"
    code.write_text("# the training code (its hash is what the record keeps)\nLR = 0.5\n")
    params_file = work / "hparams.json"
    params_file.write_text(json.dumps({"lr": 0.5, "epochs": 200, "optimizer": "gd"}))
    tracker = Tracker.open(home, password=PASSWORD, hmac_key=HMAC_KEY, batch_size=512, interval=0.2)
    try:
        ds = tracker.dataset("blobs", "2024-03", path=train_csv, split="train")
        ds_val = tracker.dataset("blobs", "2024-03", path=val_csv, split="validation")
        run = tracker.training(
            model="logreg",
            version="1.0.0",
            datasets=[ds],
            code=[code],
            hyperparameters_file=params_file,  # the recorded hyperparameters are read from it
        )
        features, labels = load_csv(train_csv)
        weights = train(features, labels, lr=0.5, epochs=200)
        model_file = work / "model.npy"
        np.save(model_file, weights)
        training = run.finish(metrics={"final_loss": 0.21})
        model = tracker.model(run, path=model_file, architecture={"type": "logistic", "inputs": 2})
        val_x, val_y = load_csv(val_csv)
        accuracy = float((predict(weights, val_x) == val_y).mean())
        evaluation = tracker.evaluation(model, dataset=ds_val, metrics={"accuracy": accuracy})
        inputs = [f"{a:.6f},{b:.6f}".encode() for a, b in val_x[: INFERENCES // 3]] * 3
        outputs = [str(int(y)).encode() for y in predict(weights, val_x[: INFERENCES // 3])] * 3
        receipts = tracker.inferences(model, list(zip(inputs, outputs, strict=True)), commitment="hmac")
        tracker.flush()
        yield Scenario(
            home,
            tracker,
            work,
            train_csv,
            val_csv,
            model_file,
            params_file,
            ds,
            ds_val,
            training,
            model,
            evaluation,
            receipts,
            inputs,
            outputs,
            accuracy,
        )
    finally:
        tracker.close()


def cli(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROVANCHOR_HOME": str(home.root)}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def failed_names(report: object) -> set[str]:
    return {c.name for c in report.failures()}  # type: ignore[attr-defined]


# ------------------------------------------------------------------ recording and tracing


def test_training_really_learned_and_every_event_is_recorded(scenario: Scenario) -> None:
    assert scenario.accuracy > 0.9
    assert len(scenario.receipts) == INFERENCES
    assert [e.kind for e in (scenario.ds, scenario.training, scenario.model, scenario.evaluation)] == [
        Op.DATASET,
        Op.TRAINING,
        Op.MODEL,
        Op.EVALUATION,
    ]
    payload = scenario.training.payload
    assert payload["hyperparameters"] == {"lr": "0.5", "epochs": 200, "optimizer": "gd"}
    assert payload["metrics"] == {"final_loss": "0.21"}
    env = payload["environment"]
    assert isinstance(env, dict) and env["python"]["version"] and "numpy" in env["packages"]  # type: ignore[index]
    assert payload["started_ns"] <= payload["ended_ns"]  # type: ignore[operator]
    ds = scenario.ds.payload
    assert ds["rows"] == 400 and ds["row_format"] == "lines" and ds["header"] is True
    assert scenario.ds.record.after is not None
    assert scenario.ds.record.after.sha256 == hashlib.sha256(scenario.train_csv.read_bytes()).digest()
    assert scenario.evaluation.payload["metrics"] == {"accuracy": repr(scenario.accuracy)}


def test_trace_from_a_receipt_back_to_the_data(scenario: Scenario) -> None:
    trace = scenario.tracker.trace(scenario.receipts[-1].record_id)
    assert not trace.problems
    assert [n.kind for n in trace.nodes] == [Op.INFERENCE, Op.MODEL, Op.TRAINING, Op.DATASET]
    assert [n.record_id for n in trace.nodes[1:]] == [
        scenario.model.record_id,
        scenario.training.record_id,
        scenario.ds.record_id,
    ]
    evaluation = scenario.tracker.trace(scenario.evaluation)
    assert {n.record_id for n in evaluation.nodes} == {
        scenario.evaluation.record_id,
        scenario.model.record_id,
        scenario.training.record_id,
        scenario.ds.record_id,
        scenario.ds_val.record_id,
    }
    # The CLI gives the same chain, leaf first.
    done = cli(scenario.home, "ml", "trace", scenario.receipts[0].record_id, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] and data["event"] == scenario.receipts[0].record_id
    assert [e["kind"] for e in data["events"]] == ["inference", "model", "training", "dataset"]
    assert data["events"][3]["summary"]["digest"] == scenario.ds.payload["digest"].hex()  # type: ignore[union-attr]
    assert set(data["events"][0]) >= {"record_id", "kind", "agent", "seq", "checkpoint", "time", "parents", "summary"}


def test_verify_passes_on_the_untouched_chain(scenario: Scenario) -> None:
    report = scenario.tracker.verify(scenario.receipts[0].record_id)
    assert report.ok, report.render()
    names = {c.name for c in report.checks}
    assert {
        "dataset: file",
        "dataset: digest",
        "model: file",
        "training: code files",
        "training: hyperparameters file",
        "training: hyperparameters",
        "model: authentic and anchored",
    } <= names
    done = cli(scenario.home, "ml", "verify", scenario.evaluation.record_id, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is True and all(set(c) == {"name", "ok", "detail", "status"} for c in data["checks"])


@pytest.fixture
def alter() -> Iterator[Callable[[Path, bytes, bytes], None]]:
    """Edit a file in place (first occurrence of old -> new); every edited file is put back afterwards."""
    originals: dict[Path, bytes] = {}

    def edit(path: Path, old: bytes, new: bytes) -> None:
        data = originals.setdefault(path, path.read_bytes())
        assert old in data
        path.write_bytes(data.replace(old, new, 1))

    yield edit
    for path, data in originals.items():
        path.write_bytes(data)


def test_verify_fails_when_the_data_file_changes(scenario: Scenario, alter: Alter) -> None:
    row = scenario.train_csv.read_bytes().split(b"\n")[5]
    alter(scenario.train_csv, row, row.replace(b",0", b",1") if b",0" in row else row.replace(b",1", b",0"))
    report = scenario.tracker.verify(scenario.receipts[0].record_id)
    assert not report.ok and failed_names(report) == {"dataset: file"}, report.render()


def test_verify_fails_when_the_model_file_changes(scenario: Scenario, alter: Alter) -> None:
    weights = scenario.model_file.read_bytes()[-8:]
    alter(scenario.model_file, weights, bytes(8))
    report = scenario.tracker.verify(scenario.receipts[0].record_id)
    assert failed_names(report) == {"model: file"}, report.render()
    done = cli(scenario.home, "ml", "verify", scenario.receipts[0].record_id)
    assert done.returncode == 1 and "FAIL  model: file" in done.stdout


def test_verify_fails_when_the_hyperparameters_file_changes(scenario: Scenario, alter: Alter) -> None:
    alter(scenario.params_file, b"0.5", b"0.05")
    report = scenario.tracker.verify(scenario.model.record_id)
    assert failed_names(report) == {"training: hyperparameters file", "training: hyperparameters"}, report.render()
    assert "lr: recorded '0.5', file now '0.05'" in report.failures()[1].detail


def test_verify_fails_when_a_hyperparameter_record_is_altered(scenario: Scenario) -> None:
    """Someone edits the training record (lr 0.5 -> 0.05) in the index the trace reads: the link no longer holds."""
    index = scenario.home.root / "index.sqlite"
    scenario.tracker.trace(scenario.model)  # synced
    digest = scenario.training.record.hash
    with sqlite3.connect(index) as db:
        ((row_id, original),) = db.execute(
            "SELECT b.id, b.canonical FROM records r JOIN record_bytes b ON b.id = r.id WHERE r.record_hash = ?",
            (digest,),
        ).fetchall()
        wire = dagcbor.decode(bytes(original))
        assert isinstance(wire, dict)
        wire["payload"]["hyperparameters"]["lr"] = "0.05"  # type: ignore[index]
        db.execute("UPDATE record_bytes SET canonical = ? WHERE id = ?", (dagcbor.encode(wire), row_id))
    try:
        report = scenario.tracker.verify(scenario.receipts[0].record_id)
        assert failed_names(report) == {"training: record"}, report.render()
        assert "altered" in report.failures()[0].detail
        # Verifying the altered record itself: a failed check, not a crash.
        direct = scenario.tracker.verify(scenario.training.record_id)
        assert failed_names(direct) == {"training: record"}, direct.render()
    finally:
        with sqlite3.connect(index) as db:
            db.execute("UPDATE record_bytes SET canonical = ? WHERE id = ?", (original, row_id))
    assert scenario.tracker.verify(scenario.receipts[0].record_id).ok


# ------------------------------------------------------------------ proofs and commitments


def test_a_sample_membership_proof_verifies_and_a_non_member_is_refused(scenario: Scenario) -> None:
    rows = scenario.train_csv.read_bytes().split(b"\n")
    sample = rows[17]  # row 16 (the header is not a row)
    proof = scenario.tracker.prove_sample(scenario.ds, sample)
    assert proof.index == 16 and proof.rows == 400 and proof.verify(sample)
    assert proof.digest == scenario.ds.payload["digest"]
    assert not proof.verify(rows[18]) and not proof.verify(sample + b"0")
    # An auditor gets the proof as JSON and needs only the sample (or its hash).
    again = MembershipProof.from_json(json.loads(json.dumps(proof.to_json())))
    assert again.verify(sample) and again.verify(sample_sha256=hashlib.sha256(sample).digest())
    tampered = MembershipProof.from_json({**proof.to_json(), "index": 15})
    assert not tampered.verify(sample)
    with pytest.raises(NotAMember):
        scenario.tracker.prove_sample(scenario.ds, b"9.999999,9.999999,1")
    with pytest.raises(NotAMember):
        scenario.tracker.prove_sample(scenario.ds, rows[0])  # the header is the schema, not a row


def test_hmac_commitments_open_only_with_the_right_key(scenario: Scenario) -> None:
    receipt = scenario.receipts[4]
    trace = scenario.tracker.trace(receipt.record_id)
    anchored = trace.nodes[0].event
    assert anchored is not None
    committed = DataCommitment.from_wire(anchored.receipts[0]["input"])
    assert committed.mode.value == "hmac" and committed.data is None  # the raw input is not in the record
    assert committed.verify(scenario.inputs[4], key=HMAC_KEY)
    assert not committed.verify(scenario.inputs[4], key=bytes(32))
    assert not committed.verify(scenario.inputs[4])  # no key, no answer
    assert not committed.verify(scenario.inputs[5], key=HMAC_KEY)
    output = DataCommitment.from_wire(anchored.receipts[0]["output"])
    assert output.verify(scenario.outputs[4], key=HMAC_KEY) and not output.verify(scenario.outputs[4], key=b"k" * 32)
    assert receipt.input.digest == committed.digest


def test_plain_and_salted_commitments(scenario: Scenario) -> None:
    plain = scenario.tracker.inference(scenario.model, b"in", b"out", commitment="sha256", store=True)
    salted = scenario.tracker.inference(scenario.model, b"secret in", b"secret out", commitment="salted")
    assert plain.input.verify(b"in") and plain.input.data == b"in"
    assert salted.input.salt is not None and salted.input.verify(b"secret in")
    assert not salted.input.verify(b"secret in", salt=bytes(32))
    assert not salted.output.verify(b"secret in")


# ------------------------------------------------------------------ bad input


def test_bad_input_is_a_typed_error_naming_the_problem(scenario: Scenario, tmp_path: Path) -> None:
    t = scenario.tracker
    stranger = CID(1, DAG_CBOR, hashlib.sha256(b"never recorded").digest()).encode()
    with pytest.raises(UnknownParent, match="unknown parent event"):
        t.training(model="m", version="1", datasets=[stranger])
    with pytest.raises(WrongParentKind, match="must be a dataset event"):
        t.training(model="m", version="1", datasets=[scenario.model])
    with pytest.raises(DatasetNotFound, match="does not exist"):
        t.dataset("x", "1", path=tmp_path / "missing.csv")
    with pytest.raises(InvalidMetric, match="'accuracy' must be a number"):
        t.evaluation(scenario.model, dataset=scenario.ds_val, metrics={"accuracy": "high"})
    with pytest.raises(InvalidMetric, match="finite"):
        t.evaluation(scenario.model, dataset=scenario.ds_val, metrics={"loss": float("nan")})
    with pytest.raises(UnsupportedCommitment, match="md5"):
        t.inference(scenario.model, b"a", b"b", commitment="md5")
    # At the CLI: one line, non-zero exit.
    raw = CID(1, RAW, hashlib.sha256(b"content").digest()).encode()
    for args in (["ml", "trace", "not-a-cid"], ["ml", "verify", stranger], ["ml", "trace", raw]):
        done = cli(scenario.home, *args)
        assert done.returncode != 0 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done


def test_models_lists_the_model_with_its_evaluation(scenario: Scenario) -> None:
    done = cli(scenario.home, "ml", "models", "--json")
    assert done.returncode == 0, done.stderr
    models = json.loads(done.stdout)
    mine = next(m for m in models if m["record_id"] == scenario.model.record_id)
    assert mine["name"] == "logreg" and mine["version"] == "1.0.0"
    assert mine["training"] == scenario.training.record_id
    assert mine["sha256"] == hashlib.sha256(scenario.model_file.read_bytes()).hexdigest()
    assert mine["evaluations"][0]["metrics"] == {"accuracy": repr(scenario.accuracy)}


# ------------------------------------------------------------------ provanchor run


def test_a_training_script_under_provanchor_run_links_to_the_run_record(
    net_home: Home, scenario: Scenario, tmp_path: Path
) -> None:
    # Its own agent: the scenario's tracker keeps anchoring in the background, and two processes
    # must not send anchors with one key at once (their nonces would collide).
    home, _ = enroll_agent(net_home, tmp_path / "home", "job-runner", PASSWORD)
    work = tmp_path / "job"
    work.mkdir()
    make_data(work / "data.csv", 50, seed=3)
    (work / "job.py").write_text(
        "from provanchor.ml import Tracker\n"
        "with Tracker.from_network() as t:\n"
        "    ds = t.dataset('job-data', '1', path='data.csv')\n"
        "    run = t.training(model='job-model', version='1', datasets=[ds], hyperparameters={'lr': '0.1'},\n"
        "                     code=['job.py'])\n"
        "    open('model.bin', 'wb').write(b'weights')\n"
        "    model = t.model(run, path='model.bin')\n"
        "    print(model.record_id)\n"
    )
    env = {**os.environ, "PROVANCHOR_HOME": str(home.root), "PROVANCHOR_PASSWORD": PASSWORD}
    done = subprocess.run(
        [*CLI, "run", "--json", "--flush", "--", sys.executable, "job.py"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # with --json, the script's own output goes to stderr
    model_id = done.stderr.splitlines()[0]
    assert any(o["path"].endswith("model.bin") for o in result["outputs"])
    trace = scenario.tracker.trace(model_id)
    training = trace.by_kind(Op.TRAINING)[0]
    assert training.event is not None and training.event.record.run == result["run_id"]
    assert training.run_record == result["record_id"]
    assert scenario.tracker.verify(model_id).ok


def test_batched_receipts_are_named_traced_and_verified_one_by_one(scenario: Scenario) -> None:
    pairs = [(f"in {i}".encode(), f"out {i}".encode()) for i in range(250)]
    receipts = scenario.tracker.inferences(scenario.model, pairs, commitment="hmac", per_record=100)
    assert len(receipts) == 250 and len({r.record_id for r in receipts}) == 3
    last = receipts[-1]
    assert last.id == f"{last.record_id}#49" and last.index == 49
    trace = scenario.tracker.trace(last.id)
    assert trace.root == last.id and [n.kind for n in trace.nodes][:2] == [Op.INFERENCE, Op.MODEL]
    anchored = trace.nodes[0].event
    assert anchored is not None and len(anchored.receipts) == 50
    assert DataCommitment.from_wire(anchored.receipts[49]["output"]).verify(b"out 249", key=HMAC_KEY)
    assert scenario.tracker.verify(last.id).ok
    done = cli(scenario.home, "ml", "trace", receipts[7].id, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["receipt"]["index"] == 7
    beyond = cli(scenario.home, "ml", "trace", f"{last.record_id}#50")
    assert beyond.returncode != 0 and "no receipt #50" in beyond.stderr
    with pytest.raises(UsageError, match="per_record"):
        scenario.tracker.inferences(scenario.model, pairs, per_record=5000)


def test_a_training_run_that_raises_is_recorded_as_failed(scenario: Scenario) -> None:
    with (
        pytest.raises(RuntimeError, match="diverged"),
        scenario.tracker.training(model="logreg", version="2.0.0", datasets=[scenario.ds]) as run,
    ):
        raise RuntimeError("diverged")
    assert run.event is not None and run.event.payload["status"] == "failed"
    report = scenario.tracker.verify(run.event.record_id, check_files=False)
    assert report.ok, report.render()
    assert not any(c.name in ("dataset: file", "dataset: digest") for c in report.checks)


def test_an_auditor_checks_a_proof_against_the_anchored_dataset(scenario: Scenario, tmp_path: Path) -> None:
    sample = scenario.train_csv.read_bytes().split(b"\n")[40]
    proof = scenario.tracker.prove_sample(scenario.ds, sample)
    (tmp_path / "proof.json").write_text(json.dumps(proof.to_json()))
    (tmp_path / "sample.txt").write_bytes(sample)
    (tmp_path / "other.txt").write_bytes(sample + b"1")
    done = cli(scenario.home, "ml", "check-proof", str(tmp_path / "proof.json"), str(tmp_path / "sample.txt"), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    names = {c["name"] for c in json.loads(done.stdout)["checks"]}
    assert names == {"membership: inclusion proof", "membership: dataset record", "dataset: authentic and anchored"}
    by_hash = cli(scenario.home, "ml", "check-proof", str(tmp_path / "proof.json"), "--sample-sha256",
                  hashlib.sha256(sample).hexdigest())  # fmt: skip
    assert by_hash.returncode == 0, by_hash.stdout
    wrong = cli(scenario.home, "ml", "check-proof", str(tmp_path / "proof.json"), str(tmp_path / "other.txt"))
    assert wrong.returncode == 1 and "FAIL  membership: inclusion proof" in wrong.stdout
    # A proof against another digest (say, of a doctored copy of the data) does not match the anchored record.
    doctored = {**proof.to_json(), "digest": "00" * 32}
    (tmp_path / "doctored.json").write_text(json.dumps(doctored))
    report = cli(scenario.home, "ml", "check-proof", str(tmp_path / "doctored.json"), str(tmp_path / "sample.txt"))
    assert report.returncode == 1 and "FAIL  membership: dataset record" in report.stdout


def test_a_serving_loop_streams_receipts_into_batched_records(scenario: Scenario) -> None:
    with scenario.tracker.receipts(scenario.model, commitment="sha256", per_record=50, max_delay=0.1) as stream:
        early = stream.add(b"first", b"answer")
        first = early.result(timeout=10)  # cut by max_delay, long before 50 receipts arrive
        futures = [stream.add(f"q{i}".encode(), f"a{i}".encode()) for i in range(120)]
    receipts = [f.result() for f in futures]
    assert first.index == 0 and first.id.endswith("#0") and first.input.verify(b"first")
    assert len({r.record_id for r in receipts}) >= 3 and all(r.batched for r in receipts)
    trace = scenario.tracker.trace(receipts[-1].id)
    node = trace.nodes[0].event
    assert node is not None and DataCommitment.from_wire(node.receipts[receipts[-1].index]["output"]).verify(b"a119")
    with pytest.raises(MlError, match="closed"):
        stream.add(b"late", b"x")
