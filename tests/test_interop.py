"""The ecosystem's formats (issue 18), on a real anvil and Kubo: OpenLineage out and in, W3C PROV, in-toto/DSSE.

One module-scoped scenario: an agent records a two-step pipeline with
`provanchor run` (prepare writes out.csv, a failing step exits 3), anchored.
The exports are then checked with the ecosystem's own tools, never with
provanchor's: OpenLineage events are rebuilt as the openlineage-python
client's models and their custom facets validated against the committed JSON
Schema; the receiver is driven by the client's HTTP transport; PROV documents
round-trip through the `prov` package in JSON and PROV-N; DSSE signatures are
checked with coincurve over a PAE built here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coincurve
import jsonschema
import pytest
import sha3
from helpers.agent_service import direct_python_env
from openlineage.client.client import OpenLineageClient
from openlineage.client.generated.base import EventType, InputDataset, Job, OutputDataset, Run, RunEvent
from openlineage.client.serde import Serde
from openlineage.client.transport.http import HttpConfig, HttpTransport
from prov.model import ProvDocument

from provanchor.home import Home
from provanchor.hostid import default_host_id
from provanchor.localnet.devagents import enroll_agent
from provanchor.records import file_location

PASSWORD = "interop-test"
CLI = [sys.executable, "-m", "provanchor.cli.main"]
ROOT = Path(__file__).resolve().parent.parent
FACET_SCHEMA = json.loads((ROOT / "docs" / "openlineage" / "ProvanchorFacet.json").read_text())


def env(home: Home) -> dict[str, str]:
    return {**direct_python_env(), "PROVANCHOR_HOME": str(home.root), "PROVANCHOR_PASSWORD": PASSWORD}


def cli(home: Home, *args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env(home), capture_output=True, text=True, timeout=timeout, check=False
    )


def ok_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Pipeline:
    def __init__(self, home: Home, work: Path, prepare: dict[str, Any], failing: dict[str, Any]) -> None:
        self.home, self.work, self.prepare, self.failing = home, work, prepare, failing

    @property
    def out_csv(self) -> Path:
        return self.work / "out.csv"


@pytest.fixture(scope="module")
def pipeline(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    home = enroll_agent(net_home, tmp_path_factory.mktemp("interop-agent"), "interop", PASSWORD)[0]
    work = tmp_path_factory.mktemp("interop-work").resolve()
    (work / "in.csv").write_text("a,b\n1,2\n3,4\n")
    (work / "prepare.py").write_text(
        "import sys\nrows = open(sys.argv[1]).read().splitlines()\n"
        "open(sys.argv[2], 'w').write('\\n'.join(r.upper() for r in rows) + '\\n')\n"
    )
    (work / "broken.py").write_text("import sys\nopen('partial.txt', 'w').write('half')\nsys.exit(3)\n")
    prepare = ok_json(cli(home, "run", "--flush", "--json", "--", sys.executable, "prepare.py", "in.csv", "out.csv",
                          cwd=work))
    failing = cli(home, "run", "--flush", "--json", "--", sys.executable, "broken.py", cwd=work)
    assert failing.returncode == 3, failing.stderr
    return Pipeline(home, work, prepare, json.loads(failing.stdout))


# ------------------------------------------------------------------ OpenLineage out


def as_client_event(data: dict[str, Any]) -> RunEvent:
    """Rebuild an exported event with the openlineage-python client's models (their validators run)."""

    def datasets(kind: type[InputDataset] | type[OutputDataset], entries: list[dict[str, Any]]) -> list[Any]:
        return [kind(namespace=e["namespace"], name=e["name"]) for e in entries]

    event = RunEvent(
        eventType=EventType(data["eventType"]),
        eventTime=data["eventTime"],
        producer=data["producer"],
        run=Run(runId=data["run"]["runId"]),
        job=Job(namespace=data["job"]["namespace"], name=data["job"]["name"]),
        inputs=datasets(InputDataset, data.get("inputs", [])),
        outputs=datasets(OutputDataset, data.get("outputs", [])),
    )
    assert data["schemaURL"] == event.schemaURL  # spec 2-0-2's RunEvent
    return event


def validate_facet(facet: dict[str, Any], kind: str) -> None:
    assert facet["_schemaURL"].endswith(f"ProvanchorFacet.json#/$defs/{kind}")
    schema = {**FACET_SCHEMA, "$ref": f"#/$defs/{kind}"}
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(facet)


def test_a_run_exports_as_openlineage_events_the_client_accepts(pipeline: Pipeline) -> None:
    run_id = str(pipeline.prepare["run_id"])
    events = ok_json(cli(pipeline.home, "export", "openlineage", run_id, "--json"))
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for data in events:
        event = as_client_event(data)
        assert event.run.runId == str(uuid.UUID(hex=run_id))
        assert data["job"] == {"namespace": default_host_id(), "name": "prepare.py", "facets": {}}
        validate_facet(data["run"]["facets"]["provanchor"], "ProvanchorRunFacet")
        assert data["run"]["facets"]["provanchor"]["recordCid"] == pipeline.prepare["record_id"]
    complete = events[1]
    host = default_host_id()
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        (f"file://{host}", str(pipeline.work / "in.csv"))
    ]
    [output] = complete["outputs"]
    assert (output["namespace"], output["name"]) == (f"file://{host}", str(pipeline.out_csv))
    facet = output["facets"]["provanchor"]
    validate_facet(facet, "ProvanchorDatasetFacet")
    assert facet["sha256"] == hashlib.sha256(pipeline.out_csv.read_bytes()).hexdigest()
    assert facet["recordCid"] != pipeline.prepare["record_id"]  # the output's own write record
    assert facet["anchoringTx"].startswith("0x") and facet["checkpoint"] >= 0
    query = ok_json(cli(pipeline.home, "query", "--location", str(pipeline.out_csv), "--json", "--no-sync"))
    assert facet["recordCid"] in {row["record_id"] for row in query}


def test_a_failed_run_ends_with_fail_and_its_error_message(pipeline: Pipeline) -> None:
    events = ok_json(cli(pipeline.home, "export", "openlineage", str(pipeline.failing["run_id"]), "--json"))
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert events[1]["run"]["facets"]["errorMessage"]["message"] == "exited with code 3"
    as_client_event(events[1])


def test_export_openlineage_refuses_unknown_runs_and_bad_urls(pipeline: Pipeline) -> None:
    assert "no anchored run" in one_line_error(cli(pipeline.home, "export", "openlineage", "nope"))
    run_id = str(pipeline.prepare["run_id"])
    assert "http(s)" in one_line_error(cli(pipeline.home, "export", "openlineage", run_id, "--emit", "ftp://x"))


# ------------------------------------------------------------------ OpenLineage in


class Receiver:
    def __init__(self, home: Home, port: int) -> None:
        self.home, self.port = home, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*CLI, "openlineage", "serve", "--listen", f"127.0.0.1:{self.port}"],
            env=env(self.home), stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                assert self.process.poll() is None, self.process.stderr.read() if self.process.stderr else ""
                time.sleep(0.1)
        raise AssertionError("the receiver did not come up")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.url + "/api/v1/lineage", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def receiver(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    home = enroll_agent(net_home, tmp_path_factory.mktemp("receiver-agent"), "orchestrator", PASSWORD)[0]
    receiver = Receiver(home, free_port())
    try:
        yield receiver
    finally:
        receiver.kill()


def spooled(home: Home) -> int:
    """Records in the agent's spool, read directly (read-only): what the receiver committed."""
    from provanchor.identity import load_identity
    from provanchor.pipeline.session import open_spool_readonly

    spool = open_spool_readonly(home, load_identity(home).address)
    if spool is None:
        return 0
    try:
        return spool.count_records()
    finally:
        spool.close()


def airflow_event(run_id: str, reads: Path, event_type: EventType) -> RunEvent:
    return RunEvent(
        eventType=event_type,
        eventTime="2026-12-03T10:00:00.000Z",
        producer="https://github.com/apache/airflow/tree/providers-openlineage/2.0.0",
        run=Run(runId=run_id),
        job=Job(namespace="airflow-prod", name="daily_report.load"),
        inputs=[InputDataset(namespace=f"file://{default_host_id()}", name=str(reads))],
        outputs=[OutputDataset(namespace="postgres://warehouse:5432", name="analytics.public.daily")],
    )


def test_events_sent_by_the_openlineage_client_are_recorded_before_200_and_survive_sigkill(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    receiver.start()
    client = OpenLineageClient(transport=HttpTransport(HttpConfig(url=receiver.url, timeout=10)))
    task_run = str(uuid.uuid4())
    for event_type in (EventType.START, EventType.COMPLETE):
        client.emit(airflow_event(task_run, pipeline.out_csv, event_type))  # raises unless 2xx
    receiver.kill()  # right after the 200s: no clean stop, nothing flushed by the receiver
    assert spooled(receiver.home) == 2
    flushed = ok_json(cli(receiver.home, "anchor", "--flush", "--json"))
    assert flushed["pending"] == 0
    records = ok_json(cli(receiver.home, "query", "--op", "lineage", "--json"))
    assert len(records) == 2 and {r["run_id"] for r in records} == {task_run}
    assert all(r["location"] == "openlineage://airflow-prod/job/daily_report.load" for r in records)
    # The Airflow task's input is the file the recorded run wrote: lineage walks from one into the other.
    graph = ok_json(cli(pipeline.home, "lineage", str(pipeline.out_csv), "--downstream", "--json"))
    node_ids = {n["id"] for n in graph["nodes"]}
    location = file_location(default_host_id(), str(pipeline.out_csv))
    assert {location, f"run:{task_run}", "postgres://warehouse:5432/analytics.public.daily"} <= node_ids
    assert {"from": location, "to": f"run:{task_run}", "kind": "input"} in graph["edges"]
    upstream = ok_json(cli(pipeline.home, "lineage", "postgres://warehouse:5432/analytics.public.daily",
                           "--upstream", "--depth", "2", "--json"))
    assert f"run:{pipeline.prepare['run_id']}" in {n["id"] for n in upstream["nodes"]}
    # What was received is kept byte for byte: the record's payload hashes to what the client sent.
    record = ok_json(cli(receiver.home, "verify", "record", records[0]["record_id"], "--json"))
    assert record["ok"], record


def test_the_receiver_refuses_bad_events_with_the_reason_and_records_nothing(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    receiver.start()
    try:
        before = spooled(receiver.home)
        status, answer = receiver.post(b"{not json")
        assert status == 400 and "not JSON" in answer["error"]
        status, answer = receiver.post(b'{"eventTime": "2026-01-01T00:00:00Z"}')
        assert status == 400 and "run and job missing" in answer["error"]
        body = json.loads(Serde.to_json(airflow_event(str(uuid.uuid4()), pipeline.out_csv, EventType.START)))
        body["run"]["runId"] = "not-a-uuid"
        status, answer = receiver.post(json.dumps(body).encode())
        assert status == 400 and "runId must be a UUID" in answer["error"]
        status, answer = receiver.post(b" " * (1024 * 1024 + 1))
        assert status == 413 and "over the limit" in answer["error"]
        assert spooled(receiver.home) == before
    finally:
        receiver.kill()


def test_emit_to_an_unreachable_endpoint_keeps_the_events_and_delivers_them_later(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    run_id = str(pipeline.prepare["run_id"])
    down = cli(pipeline.home, "export", "openlineage", run_id, "--emit", receiver.url)
    assert "2 event(s) kept" in one_line_error(down)
    outbox = pipeline.home.root / "openlineage" / "outbox"
    assert len(list(outbox.glob("*.json"))) == 2
    receiver.start()
    try:
        before = spooled(receiver.home)
        delivered = ok_json(cli(pipeline.home, "openlineage", "deliver", "--json"))
        assert delivered == [{"url": receiver.url, "sent": 2, "waiting": 0, "error": None}]
        assert not list(outbox.glob("*.json"))
        assert spooled(receiver.home) == before + 2  # provanchor's own events, received as lineage records
    finally:
        receiver.kill()


# ------------------------------------------------------------------ W3C PROV


def test_a_run_as_prov_round_trips_in_json_and_provn(pipeline: Pipeline, tmp_path: Path) -> None:
    run_id = str(pipeline.prepare["run_id"])
    done = cli(pipeline.home, "export", "prov", "--run", run_id, "--format", "json")
    assert done.returncode == 0, done.stderr
    document = ProvDocument.deserialize(content=done.stdout, format="json")
    assert ProvDocument.deserialize(content=document.serialize(format="json"), format="json") == document
    provn = cli(pipeline.home, "export", "prov", "--run", run_id, "--format", "provn", "--no-sync")
    assert provn.returncode == 0, provn.stderr
    assert ProvDocument.deserialize(content=provn.stdout, format="provn") == document
    text = provn.stdout
    output = hashlib.sha256(pipeline.out_csv.read_bytes()).hexdigest()
    source = hashlib.sha256((pipeline.work / "in.csv").read_bytes()).hexdigest()
    for relation in ("used(", "wasGeneratedBy(", "wasAssociatedWith(", "wasAttributedTo(", "wasDerivedFrom("):
        assert relation in text, relation
    assert f"wasGeneratedBy(sha256:{output}, run:{run_id}" in text
    assert f"used(run:{run_id}, sha256:{source}" in text
    assert f"wasDerivedFrom(sha256:{output}, sha256:{source}, run:{run_id}" in text
    assert "prov:type='prov:Person'" in text and "prov:SoftwareAgent" in text
    assert f"pa:record=\"{pipeline.prepare['record_id']}\"" in text


def test_prov_of_a_location_and_of_an_agent(pipeline: Pipeline) -> None:
    done = cli(pipeline.home, "export", "prov", "--location", str(pipeline.out_csv), "--format", "provn", "--no-sync")
    assert done.returncode == 0, done.stderr
    document = ProvDocument.deserialize(content=done.stdout, format="provn")
    activities = [r for r in document.get_records() if r.get_type().localpart == "Activity"]
    assert len(activities) == 1 and "record:" in str(activities[0].identifier)
    address = json.loads((pipeline.home.root / "agent.json").read_text())["address"]
    whole = cli(pipeline.home, "export", "prov", "--agent", address, "--no-sync")
    assert whole.returncode == 0, whole.stderr
    records = ProvDocument.deserialize(content=whole.stdout, format="json").get_records()
    assert sum(1 for r in records if r.get_type().localpart == "Activity") >= 3  # two runs and their writes
    assert "exactly one of" in one_line_error(cli(pipeline.home, "export", "prov", "--no-sync"))
    assert "narrow a --location" in one_line_error(
        cli(pipeline.home, "export", "prov", "--agent", address, "--since", "2026-01-01", "--no-sync")
    )


# ------------------------------------------------------------------ in-toto / DSSE


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 " + str(len(kind)).encode() + b" " + kind + b" " + str(len(payload)).encode() + b" " + payload


def recover_address(payload_type: str, payload: bytes, signature: bytes) -> str:
    """Independent of provanchor: coincurve recovers the key, Keccak-256 of it gives the address."""
    public = coincurve.PublicKey.from_signature_and_message(
        signature, pae(payload_type, payload), hasher=lambda m: hashlib.sha256(m).digest()
    )
    return "0x" + sha3.keccak_256(public.format(compressed=False)[1:]).digest()[-20:].hex()


def resign(envelope: dict[str, Any], home: Home, payload_type: str, payload: bytes) -> dict[str, Any]:
    """Sign changed contents with the agent's real key, so only the named check can fail."""
    from provanchor.identity import load_identity, unlock_key

    key = bytes(unlock_key(load_identity(home).keystore_path, PASSWORD).key)
    digest = hashlib.sha256(pae(payload_type, payload)).digest()
    signature = coincurve.PrivateKey(key).sign_recoverable(digest, hasher=None)
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": envelope["signatures"][0]["keyid"], "sig": base64.b64encode(signature).decode()}],
    }


def verify_attestation(home: Home, path: Path) -> dict[str, Any]:
    done = cli(home, "verify", "attestation", str(path), "--json")
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 0) == report["ok"]
    return report


def failed_checks(report: dict[str, Any]) -> set[str]:
    return {c["name"] for c in report["checks"] if not c["ok"]}


def test_an_attestation_verifies_independently_and_against_the_chain(pipeline: Pipeline, tmp_path: Path) -> None:
    run_id = str(pipeline.prepare["run_id"])
    path = tmp_path / "prepare.intoto.json"
    summary = ok_json(cli(pipeline.home, "export", "intoto", run_id, "-o", str(path), "--json"))
    envelope = json.loads(path.read_text())
    payload = base64.b64decode(envelope["payload"])
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    address = json.loads((pipeline.home.root / "agent.json").read_text())["address"].lower()
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert recover_address(envelope["payloadType"], payload, signature) == address == summary["keyid"]
    statement = json.loads(payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    location = file_location(default_host_id(), str(pipeline.out_csv))
    assert statement["subject"] == [
        {"name": location, "digest": {"sha256": hashlib.sha256(pipeline.out_csv.read_bytes()).hexdigest()}}
    ]
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"]["argv"][1:] == ["prepare.py", "in.csv", "out.csv"]
    names = {d["name"] for d in build["resolvedDependencies"]}
    assert {"executable", "script", "code hash", "input"} <= names
    details = statement["predicate"]["runDetails"]
    assert details["builder"]["id"] == f"urn:provanchor:agent:{address}"
    assert details["metadata"]["invocationId"] == run_id
    report = verify_attestation(pipeline.home, path)
    assert report["ok"], report
    assert {"payload type", "envelope signature", "statement", "signer", "subjects", "inclusion proof"} <= {
        c["name"] for c in report["checks"]
    }


def test_a_changed_subject_payload_type_or_signature_fails_the_named_check(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    path = tmp_path / "a.json"
    ok_json(cli(pipeline.home, "export", "intoto", str(pipeline.prepare["run_id"]), "-o", str(path), "--json"))
    envelope = json.loads(path.read_text())
    payload = base64.b64decode(envelope["payload"])
    statement = json.loads(payload)
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    changed = json.dumps(statement).encode()
    cases = {
        "subjects": resign(envelope, pipeline.home, envelope["payloadType"], changed),
        "payload type": resign(envelope, pipeline.home, "application/json", payload),
        "envelope signature": {**envelope, "payload": base64.b64encode(changed).decode()},
    }
    for check, tampered in cases.items():
        target = tmp_path / f"{check.replace(' ', '-')}.json"
        target.write_text(json.dumps(tampered))
        report = verify_attestation(pipeline.home, target)
        assert not report["ok"] and check in failed_checks(report), (check, report)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{]")
    assert "not a DSSE envelope" in one_line_error(cli(pipeline.home, "verify", "attestation", str(garbage)))


def test_a_revoked_signer_fails_the_signer_check(
    net_home: Home, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    home, identity = enroll_agent(net_home, tmp_path_factory.mktemp("revoked-agent"), "revoked", PASSWORD)
    work = tmp_path.resolve()
    (work / "make.py").write_text("open('made.txt', 'w').write('made')\n")
    run = ok_json(cli(home, "run", "--flush", "--json", "--", sys.executable, "make.py", cwd=work))
    path = tmp_path / "made.intoto.json"
    ok_json(cli(home, "export", "intoto", str(run["run_id"]), "-o", str(path), "--json"))
    assert verify_attestation(home, path)["ok"]
    revoke = cli(net_home, "gov", "propose", "revoke-agent", identity.address, "--json")
    assert revoke.returncode == 0, revoke.stderr
    report = verify_attestation(home, path)
    assert failed_checks(report) == {"signer"}, report


def test_export_intoto_refuses_unknown_runs_and_runs_without_outputs(pipeline: Pipeline, tmp_path: Path) -> None:
    out = str(tmp_path / "x.json")
    assert "no anchored run" in one_line_error(cli(pipeline.home, "export", "intoto", "nope", "-o", out))
    assert not os.path.exists(out)


# ------------------------------------------------------------------ live emission and ML models


def test_run_with_openlineage_sends_its_events_at_once(pipeline: Pipeline, receiver: Receiver) -> None:
    receiver.start()
    try:
        before = spooled(receiver.home)
        done = cli(pipeline.home, "run", "--json", "--openlineage", receiver.url, "--",
                   sys.executable, "prepare.py", "in.csv", "again.csv", cwd=pipeline.work)
        recorded = ok_json(done)
        assert recorded["openlineage"] == {"url": receiver.url, "sent": 2, "waiting": 0, "error": None}
        assert spooled(receiver.home) == before + 2
    finally:
        receiver.kill()


def test_the_service_emitter_sends_each_anchored_run_once_with_its_anchoring(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    """What the capture service runs every 2 s with `[openlineage] url`, over the agent's own spool."""
    from provanchor.agent.lineage_emitter import SpoolLineageEmitter
    from provanchor.identity import load_identity
    from provanchor.pipeline.session import open_spool_readonly

    spool = open_spool_readonly(pipeline.home, load_identity(pipeline.home).address)
    assert spool is not None
    writable = type(spool)(spool.path)  # the emitter keeps its cursor in the spool's meta table
    spool.close()
    receiver.start()
    try:
        address = load_identity(pipeline.home).address
        anchored_runs = len(ok_json(cli(pipeline.home, "query", "--op", "run", "--agent", address, "--json")))
        emitter = SpoolLineageEmitter(pipeline.home, writable, receiver.url)
        delivery = emitter.tick()
        assert delivery is not None and delivery.sent == 2 * anchored_runs and delivery.waiting == 0
        again = emitter.tick()
        assert again is not None and again.sent == 0  # each run once: the cursor moved
        events = ok_json(cli(receiver.home, "anchor", "--flush", "--json"))
        assert events["pending"] == 0
    finally:
        receiver.kill()
        writable.close()


def test_a_model_exports_as_an_attestation_that_verifies(pipeline: Pipeline, tmp_path: Path) -> None:
    from provanchor.ml import Tracker

    work = tmp_path.resolve()
    (work / "train.csv").write_text("x,y\n1,0\n2,1\n")
    (work / "train.py").write_text("LR = 0.1\n")
    (work / "model.bin").write_bytes(b"\x01\x02weights")
    tracker = Tracker.open(pipeline.home, password=PASSWORD, interval=0.2)
    try:
        dataset = tracker.dataset("toy", "1", path=work / "train.csv", split="train")
        training = tracker.training("toy-model", "1.0", datasets=[dataset], code=[work / "train.py"],
                                    hyperparameters={"lr": "0.1"})
        model = tracker.model(training, path=work / "model.bin")
        tracker.flush()
    finally:
        tracker.close()
    path = tmp_path / "model.intoto.json"
    ok_json(cli(pipeline.home, "ml", "export", "intoto", model.record_id, "-o", str(path), "--json"))
    statement = json.loads(base64.b64decode(json.loads(path.read_text())["payload"]))
    assert statement["subject"][0]["digest"]["sha256"] == hashlib.sha256(b"\x01\x02weights").hexdigest()
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"]["hyperparameters"] == {"lr": "0.1"}
    assert any(d["name"].startswith("dataset toy") for d in build["resolvedDependencies"])
    report = verify_attestation(pipeline.home, path)
    assert report["ok"], report
    assert "is a dataset event" in one_line_error(
        cli(pipeline.home, "ml", "export", "intoto", dataset.record_id, "-o", str(tmp_path / "d.json"))
    )
