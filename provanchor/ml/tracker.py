"""`Tracker`: the few calls an ML engineer adds to a training script.

    from provanchor.ml import Tracker

    with Tracker.from_network() as t:                  # the configured agent and network
        ds = t.dataset("wiki-en", version="2024-03", path="data/train.csv", split="train")
        run = t.training(model="tiny-mlp", version="1.0.0", datasets=[ds],
                         hyperparameters={"lr": "3e-4"}, code=["train.py"])
        ...                                            # train
        model = t.model(run, path="model.npz")         # ends the run: its record says start and end
        t.evaluation(model, dataset=ds_val, metrics={"accuracy": 0.91})
        receipt = t.inference(model, input=b"...", output=b"...", commitment="hmac")

Every call returns once its signed record is durably spooled; the session's
background anchorer stores and anchors them in batches, and leaving the
``with`` block anchors whatever is left. Under ``provanchor run`` the run id
comes from ``PROVANCHOR_RUN_ID`` and every record carries it, so the file-level
capture and the ML events name the same run.
"""

from __future__ import annotations

import getpass
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from provanchor.errors import (
    DatasetNotFound,
    MlError,
    UnknownEvent,
    UnknownParent,
    UnsupportedCommitment,
    WrongParentKind,
)
from provanchor.formats.cid import CID
from provanchor.formats.unixfs import cid_for_bytes
from provanchor.home import Home
from provanchor.hostid import default_host_id
from provanchor.index.store import IndexStore
from provanchor.index.sync import Indexer
from provanchor.ml.commitments import CommitMode, parse_mode
from provanchor.ml.dataset import (
    LeafArray,
    MembershipProof,
    fingerprint_file,
    fingerprint_samples,
    prove_membership,
    schema_digest_of,
)
from provanchor.ml.environment import code_files, environment, git_state, hash_regular_file, read_hyperparameters
from provanchor.ml.events import (
    MAX_RECEIPTS_PER_RECORD,
    WIRE_VERSION,
    Event,
    ParentLink,
    event_location,
    hyperparameters_wire,
    metrics_wire,
    parse_event,
    parse_event_id,
)
from provanchor.ml.receipts import Pair, Receipt, ReceiptSink, ReceiptStream, check_per_record
from provanchor.ml.trace import Trace, find_event, trace_event
from provanchor.pipeline.recorder import RecordRef
from provanchor.pipeline.session import AgentSession
from provanchor.records import (
    Capture,
    CaptureBackend,
    Change,
    CodeIdentity,
    ContentRef,
    Op,
    decode_record,
    file_location,
    identify_command,
    parse_file_location,
)
from provanchor.verify.report import Report

__all__ = ["HMAC_KEY_ENV", "RUN_ID_ENV", "Receipt", "Tracker", "TrainingRun"]

RUN_ID_ENV = "PROVANCHOR_RUN_ID"
"""Set by `provanchor run` for its child: the run every ML record of that process belongs to."""
HMAC_KEY_ENV = "PROVANCHOR_ML_HMAC_KEY"
"""Hex of the operator's HMAC key for inference commitments (else keys/ml-hmac.key in the data directory)."""
PASSWORD_FILE_ENV = "PROVANCHOR_PASSWORD_FILE"

_ML_CAPTURE = Capture(backend=CaptureBackend.ML, attributed=True, reason=None)

EventRef = Event | str
"""A parent as callers give it: an Event a tracker returned, or a record id (CID string)."""


@dataclass
class TrainingRun:
    """A training run being timed; recorded when it finishes (``finish``, its ``with`` block, or use as a parent)."""

    tracker: Tracker
    name: str
    version: str
    datasets: tuple[ParentLink, ...]
    hyperparameters: dict[str, object]
    hyperparameters_file: dict[str, object] | None
    code: list[dict[str, object]]
    git: dict[str, object] | None
    started_ns: int
    event: Event | None = None
    metrics: dict[str, object] = field(default_factory=dict)

    def finish(self, metrics: Mapping[str, object] | None = None, status: str = "completed") -> Event:
        """Record the run now (idempotent: a finished run returns its event)."""
        if self.event is None:
            if metrics:
                self.metrics = metrics_wire(metrics)
            self.event = self.tracker._record_training(self, status)
        return self.event

    @property
    def record_id(self) -> str:
        return self.finish().record_id

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.finish(status="failed" if kind is not None else "completed")


class Tracker:
    """Records ML lifecycle events as one agent; traces and verifies them through the local index."""

    def __init__(
        self,
        session: AgentSession,
        *,
        host: str | None = None,
        run_id: str | None = None,
        hmac_key: bytes | None = None,
        index_path: str | os.PathLike[str] | None = None,
        owns_session: bool = False,
    ) -> None:
        self.session = session
        self.home = session.home
        self.host = host or default_host_id()
        self.run_id = run_id if run_id is not None else (os.environ.get(RUN_ID_ENV) or None)
        self.index_path = Path(index_path) if index_path else self.home.root / "index.sqlite"
        self._hmac_key = hmac_key
        self._owns_session = owns_session
        self._known: dict[str, Event] = {}
        self._user = _user()
        self._uid = os.getuid()
        self._pid = os.getpid()

    # ------------------------------------------------------------ construction

    @classmethod
    def open(
        cls,
        home: Home,
        *,
        password: str | None = None,
        password_file: str | None = None,
        background: bool = True,
        batch_size: int = 1024,
        interval: float = 1.0,
        **options: Any,
    ) -> Tracker:
        """A tracker with its own session on ``home``; ``background`` anchors as it goes."""
        session = AgentSession.open(
            home, password=password, password_file=password_file, batch_size=batch_size, interval=interval
        )
        try:
            tracker = cls(session, owns_session=True, **options)
        except BaseException:
            session.close()
            raise
        if background:
            session.start()
        return tracker

    @classmethod
    def from_network(
        cls,
        home: str | os.PathLike[str] | Home | None = None,
        *,
        password: str | None = None,
        password_file: str | None = None,
        **options: Any,
    ) -> Tracker:
        """The configured agent on the configured network: ``$PROVANCHOR_HOME`` (else ``~/.provanchor``),
        the keystore password from ``password``, ``password_file``, ``$PROVANCHOR_PASSWORD_FILE`` or
        ``$PROVANCHOR_PASSWORD``."""
        resolved = home if isinstance(home, Home) else Home.resolve(home)
        if password is None and password_file is None:
            password_file = os.environ.get(PASSWORD_FILE_ENV) or None
        return cls.open(resolved, password=password, password_file=password_file, **options)

    def close(self, flush: bool = True) -> None:
        """Anchor what is pending (unless ``flush`` is False), then release the session if it is ours."""
        try:
            if flush and self._pending():
                self.session.flush()
        finally:
            if self._owns_session:
                self.session.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close(flush=True)

    def flush(self, timeout: float = 120.0) -> None:
        """Store and anchor every event recorded so far (trace and verify read anchored events only)."""
        self.session.flush(timeout=timeout)

    # ------------------------------------------------------------ events

    def dataset(
        self,
        name: str,
        version: str,
        path: str | os.PathLike[str] | None = None,
        *,
        samples: Iterable[bytes] | None = None,
        split: str | None = None,
        header: bool | None = None,
        schema: object = None,
        keep_leaves: bool = True,
    ) -> Event:
        """Fingerprint a dataset (a file, or ``samples`` in memory) and record it.

        ``keep_leaves`` saves the rows' leaf hashes under the data directory so
        that ``prove_sample`` works without re-reading the data (32 bytes a row).
        """
        _check_label(name, "dataset name")
        _check_label(version, "dataset version")
        if (path is None) == (samples is None):
            raise DatasetNotFound("a dataset is either a path or samples: give exactly one")
        with self._leaves_file(keep_leaves) as sink:
            if path is not None:
                fp = fingerprint_file(path, header=header, leaves_to=sink.handle)
                location = file_location(self.host, Path(path).expanduser().resolve())
                after = ContentRef(sha256=fp.sha256, size=fp.size) if fp.sha256 and fp.size is not None else None
            else:
                assert samples is not None
                fp = fingerprint_samples(samples, leaves_to=sink.handle)
                location = event_location(self.host, Op.DATASET, name, version)
                after = None
            sink.keep_as(fp.digest)
        schema_digest = schema_digest_of(schema) if schema is not None else fp.schema_digest
        payload = self._payload(
            Op.DATASET,
            (),
            name=name,
            version=version,
            split=split,
            rows=fp.rows,
            digest=fp.digest,
            row_format=fp.row_format,
            header=fp.header,
            schema_digest=schema_digest,
        )
        return self._record(self._change(Op.DATASET, location, payload, after=after))

    def training(
        self,
        model: str,
        version: str,
        datasets: Sequence[EventRef],
        hyperparameters: Mapping[str, object] | None = None,
        code: Sequence[str | os.PathLike[str]] = (),
        *,
        hyperparameters_file: str | os.PathLike[str] | None = None,
    ) -> TrainingRun:
        """Start timing a training run of ``model`` on ``datasets``; it is recorded when it finishes.

        ``hyperparameters_file`` (a config file) is hashed, so verify notices if it is edited later;
        without ``hyperparameters``, a ``.json`` or ``.toml`` file's mapping is recorded as the
        hyperparameters, and verify also checks that the file still says the same values.
        """
        _check_label(model, "model name")
        _check_label(version, "model version")
        if not datasets:
            raise UnknownParent("a training run needs at least one dataset event")
        links = tuple(self._parent(ref, Op.DATASET, "a training run's dataset") for ref in datasets)
        params_file: dict[str, object] | None = None
        if hyperparameters_file is not None:
            real, digest, _ = hash_regular_file(hyperparameters_file, "hyperparameters")
            loaded = read_hyperparameters(real) if hyperparameters is None else None
            hyperparameters = loaded if loaded is not None else hyperparameters
            params_file = {"path": str(real), "sha256": digest, "loaded": loaded is not None}
        params = hyperparameters_wire(hyperparameters or {})
        return TrainingRun(
            self, model, version, links, params, params_file, code_files(code), git_state(code), time.time_ns()
        )

    def _record_training(self, run: TrainingRun, status: str) -> Event:
        payload = self._payload(
            Op.TRAINING,
            run.datasets,
            name=run.name,
            version=run.version,
            hyperparameters=run.hyperparameters,
            hyperparameters_file=run.hyperparameters_file,
            code=run.code,
            git=run.git,
            environment=environment(),
            started_ns=run.started_ns,
            ended_ns=time.time_ns(),
            status=status,
            metrics=run.metrics,
        )
        location = event_location(self.host, Op.TRAINING, run.name, run.version)
        return self._record(self._change(Op.TRAINING, location, payload, time_ns=run.started_ns, code=_process_code()))

    def model(
        self,
        run: TrainingRun | EventRef,
        path: str | os.PathLike[str],
        *,
        architecture: object = None,
        name: str | None = None,
        version: str | None = None,
        store: bool = False,
    ) -> Event:
        """Record the trained parameters file, linked to its run (finishing the run if it still runs).

        ``architecture`` (a description: text, bytes or a map) is stored as its digest.
        ``store`` also puts the file on IPFS with the record's batch.
        """
        if isinstance(run, TrainingRun):
            run = run.finish()
        link = self._parent(run, Op.TRAINING, "a model's training run")
        training = self._known.get(link.record_id)
        name = name or (training.name if training else None)
        version = version or (training.version if training else None)
        if name is None or version is None:
            raise UnknownParent(f"training run {link.record_id} does not say the model's name and version")
        real, digest, size = hash_regular_file(path, "model")
        content = real.read_bytes() if store else None
        after = ContentRef(sha256=digest, size=size, cid=CID.parse(cid_for_bytes(content)) if content else None)
        payload = self._payload(
            Op.MODEL,
            (link,),
            name=name,
            version=version,
            architecture_digest=None if architecture is None else schema_digest_of(architecture, "architecture"),
            format=real.suffix.lstrip(".") or None,
        )
        return self._record(self._change(Op.MODEL, file_location(self.host, real), payload, after=after), content)

    def evaluation(
        self, model: EventRef, dataset: EventRef, metrics: Mapping[str, object], *, split: str | None = None
    ) -> Event:
        """Record metrics of ``model`` on ``dataset`` (numbers only; stored as decimal strings)."""
        model_link = self._parent(model, Op.MODEL, "an evaluation's model")
        data_link = self._parent(dataset, Op.DATASET, "an evaluation's dataset")
        values = metrics_wire(metrics)
        model_event = self._known[model_link.record_id]
        dataset_event = self._known[data_link.record_id]
        split = split if split is not None else _text_or_none(dataset_event.payload.get("split"))
        name, version = model_event.name or "model", model_event.version or "unknown"
        payload = self._payload(
            Op.EVALUATION, (model_link, data_link), name=name, version=version, split=split, metrics=values
        )
        location = event_location(self.host, Op.EVALUATION, name, version)
        return self._record(self._change(Op.EVALUATION, location, payload))

    def inference(
        self,
        model: EventRef,
        input: bytes,
        output: bytes,
        *,
        commitment: CommitMode | str = CommitMode.SHA256,
        store: bool = False,
    ) -> Receipt:
        """Record one inference receipt; input and output are kept only as commitments unless ``store``."""
        return self.inferences(model, [(input, output)], commitment=commitment, store=store)[0]

    def inferences(
        self,
        model: EventRef,
        pairs: Iterable[tuple[bytes, bytes]],
        *,
        commitment: CommitMode | str = CommitMode.SHA256,
        store: bool = False,
        per_record: int = 1,
    ) -> list[Receipt]:
        """Record many receipts at once; they share the spool's group commits.

        ``per_record`` > 1 puts that many receipts (at most 1,024) in each
        record: one signature, one IPFS block and one Merkle leaf for all of
        them, which is what lets receipts outrun the per-record pipeline. Each
        receipt is still named (``RECORD_ID#INDEX``), traced and verified alone.
        """
        check_per_record(per_record)
        sink = self._receipt_sink(model, commitment, store)
        pending: list[tuple[Future[RecordRef], list[Pair]]] = []
        group: list[Pair] = []
        for given_input, given_output in pairs:
            group.append(sink.commit(given_input, given_output))
            if len(group) == per_record:
                pending.append((sink.submit_group(group), group))
                group = []
        if group:
            pending.append((sink.submit_group(group), group))
        return [
            receipt
            for future, members in pending
            for receipt in sink.receipts(future.result(), members, per_record > 1)
        ]

    def receipts(
        self,
        model: EventRef,
        *,
        commitment: CommitMode | str = CommitMode.SHA256,
        store: bool = False,
        per_record: int = MAX_RECEIPTS_PER_RECORD,
        max_delay: float = 0.2,
    ) -> ReceiptStream:
        """A stream for a serving loop: ``add(input, output)`` returns a future Receipt at once.

        Receipts are spooled ``per_record`` to a record, or when the oldest has
        waited ``max_delay`` seconds; close the stream (``with``) to write the rest.
        """
        return ReceiptStream(self._receipt_sink(model, commitment, store), per_record, max_delay)

    def _receipt_sink(self, model: EventRef, commitment: CommitMode | str, store: bool) -> ReceiptSink:
        mode = parse_mode(commitment)
        key = self.hmac_key() if mode is CommitMode.HMAC else None
        link = self._parent(model, Op.MODEL, "an inference's model")
        model_event = self._known[link.record_id]
        name, version = model_event.name or "model", model_event.version or "unknown"
        location = event_location(self.host, Op.INFERENCE, name, version)

        def submit_group(group: list[Pair]) -> Future[RecordRef]:
            receipts = [{"input": i.to_wire(), "output": o.to_wire()} for i, o in group]
            payload = self._payload(Op.INFERENCE, (link,), name=name, version=version, receipts=receipts)
            change = self._change(Op.INFERENCE, location, payload)
            return self.session.recorder.submit(change, None, fill_before=False)

        return ReceiptSink(link.record_id, mode, key, store, submit_group)

    # ------------------------------------------------------------ proofs, trace, verify

    def prove_sample(self, dataset: EventRef, sample: bytes) -> MembershipProof:
        """A membership proof of ``sample`` in ``dataset`` that any auditor can check (NotAMember if absent)."""
        link = self._parent(dataset, Op.DATASET, "a membership proof's dataset")
        event = self._known[link.record_id]
        digest = event.payload.get("digest")
        if not isinstance(digest, bytes):
            raise MlError(f"dataset {link.record_id} carries no digest")
        rows = event.payload.get("rows")
        saved = self._leaves_path(digest)
        if saved.exists() and isinstance(rows, int) and saved.stat().st_size == rows * 32:
            proof = prove_membership(link.record_id, LeafArray.open(saved), digest, sample)
            if proof.verify(sample):  # a damaged leaves file gives proofs that fail: then re-read the data
                return proof
        return prove_membership(link.record_id, self._leaves_from_file(event, digest), digest, sample)

    def trace(self, event: EventRef) -> Trace:
        """The chain of parents from ``event`` back to its datasets, leaf first (anchors pending events first)."""
        with self._synced_index() as store:
            return trace_event(store, event if isinstance(event, str) else event.record_id)

    def verify(self, event: EventRef, *, check_files: bool = True) -> Report:
        """Verify every event on ``event``'s trace and the files still on disk (see provanchor.ml.verify)."""
        from provanchor.ml.verify import verify_event

        with self._synced_index() as store:
            return verify_event(
                store,
                self.session.network,
                event if isinstance(event, str) else event.record_id,
                check_files=check_files,
            )

    def hmac_key(self) -> bytes:
        """The operator's HMAC key: given, else ``$PROVANCHOR_ML_HMAC_KEY`` (hex), else keys/ml-hmac.key (made once)."""
        if self._hmac_key is not None:
            return self._hmac_key
        env = os.environ.get(HMAC_KEY_ENV)
        if env:
            try:
                self._hmac_key = bytes.fromhex(env.strip())
            except ValueError:
                raise UnsupportedCommitment(f"${HMAC_KEY_ENV} must be hex") from None
            return self._hmac_key
        path = self.home.keys_dir / "ml-hmac.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(os.urandom(32).hex() + "\n")
        self._hmac_key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        return self._hmac_key

    # ------------------------------------------------------------ internals

    def _payload(self, kind: Op, parents: Iterable[ParentLink], **fields: object) -> dict[str, object]:
        return {"ml": WIRE_VERSION, "kind": kind.value, "parents": [p.to_wire() for p in parents], **fields}

    def _change(
        self,
        kind: Op,
        location: str,
        payload: dict[str, object],
        *,
        after: ContentRef | None = None,
        time_ns: int | None = None,
        code: CodeIdentity | None = None,
    ) -> Change:
        return Change(
            time=time_ns if time_ns is not None else time.time_ns(),
            host=self.host,
            location=location,
            op=kind,
            capture=_ML_CAPTURE,
            user=self._user,
            uid=self._uid,
            after=after,
            code=code,
            pid=self._pid,
            run=self.run_id,
            payload=payload,
        )

    def _record(self, change: Change, content: bytes | None = None) -> Event:
        """Spool one event's change and read back the signed record (the tracker's Event)."""
        ref = self.session.recorder.record(change, content, fill_before=False)
        spooled = self.session.spool.record_by_seq(ref.seq)
        if spooled is None or spooled.hash != ref.hash:  # another process shares the spool: find ours by seq
            raise MlError(f"recorded {change.op} event {ref.record_id} is not in the spool")
        event = parse_event(decode_record(spooled.data))
        self._known[event.record_id] = event
        return event

    def _parent(self, ref: object, kind: Op, role: str) -> ParentLink:
        """A parent link, checked: the event exists (here or in the index) and is of ``kind``."""
        if isinstance(ref, TrainingRun):
            ref = ref.finish()
        if isinstance(ref, Receipt):
            ref = ref.record_id  # a receipt as a parent stands for its record
        if not isinstance(ref, Event | str):
            raise UnknownParent(f"{role} must be an event or an event id, got {type(ref).__name__}")
        if isinstance(ref, Event):
            event = ref
            self._known.setdefault(event.record_id, event)
        else:
            try:
                cid = parse_event_id(ref)
            except UnknownEvent as exc:
                raise UnknownParent(f"{role}: {exc}") from None
            event = self._known.get(cid.encode()) or self._lookup(cid, role)
        if event.kind is not kind:
            raise WrongParentKind(f"{role} must be a {kind.value} event; {event.record_id} is a {event.kind.value}")
        return ParentLink(kind, event.record.cid)

    def _lookup(self, cid: CID, role: str) -> Event:
        """An event recorded elsewhere (another process or agent): it must be anchored and indexed."""
        with self._synced_index() as store:
            found, problem = find_event(store, cid)
        if found is None:
            reason = problem or "not recorded by this tracker and not in the index (anchored and synced?)"
            raise UnknownParent(f"{role}: unknown parent event {cid.encode()}: {reason}")
        self._known[found.event.record_id] = found.event
        return found.event

    def _pending(self) -> bool:
        """Whether anything recorded is not anchored yet (spooled, or in a batch on its way)."""
        spool = self.session.spool
        return bool(spool.count_unbatched() or spool.batches(("cut", "stored", "sent")))

    def _synced_index(self) -> IndexStore:
        """The index, brought up to date: pending events anchored first, then the chain followed."""
        if self._pending():
            self.session.flush()
        store = IndexStore.open(self.index_path, must_exist=False)
        try:
            Indexer(store, self.session.network).sync()
        except BaseException:
            store.close()
            raise
        return store

    # ------------------------------------------------------------ leaves for proofs

    def _leaves_path(self, digest: bytes) -> Path:
        return self.home.root / "ml" / "leaves" / f"{digest.hex()}.leaves"

    def _leaves_file(self, keep: bool) -> _LeavesFile:
        return _LeavesFile(self._leaves_path(b"").parent if keep else None)

    def _leaves_from_file(self, event: Event, digest: bytes) -> LeafArray:
        """The dataset's leaves from its file, which must still give the recorded digest (saved for next time)."""
        location = event.record.location
        if not isinstance(location, str) or not location.startswith("file://"):
            raise MlError(f"dataset {event.record_id}: its rows are not available here (no saved leaves, no file)")
        _, file_path = parse_file_location(location)
        with self._leaves_file(True) as sink:
            try:
                fp = fingerprint_file(
                    file_path,
                    header=bool(event.payload.get("header")),
                    leaves_to=sink.handle,
                    row_format=_text_or_none(event.payload.get("row_format")),
                )
            except DatasetNotFound as exc:
                raise MlError(f"dataset {event.record_id}: rows unavailable for a proof ({exc})") from None
            if fp.digest != digest:
                raise MlError(f"dataset {event.record_id}: {file_path} changed since it was recorded; cannot prove")
            sink.keep_as(digest)
        return LeafArray.open(self._leaves_path(digest))


class _LeavesFile:
    """A leaves file being written next to its final place, renamed to DIGEST.leaves only when complete."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.handle: BinaryIO | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> _LeavesFile:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.directory, suffix=".partial")
            self._tmp = Path(name)
            self.handle = os.fdopen(fd, "wb")
        return self

    def keep_as(self, digest: bytes) -> None:
        if self.handle is None or self._tmp is None or self.directory is None:
            return
        self.handle.close()
        os.replace(self._tmp, self.directory / f"{digest.hex()}.leaves")
        self._tmp = None

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def _user() -> str | None:
    try:
        return getpass.getuser() or None
    except (KeyError, OSError):
        return None


def _process_code() -> CodeIdentity | None:
    """This process's code identity (interpreter and script), as `provanchor run` would record it."""
    try:
        return identify_command(sys.executable, [sys.executable, *sys.argv], os.getcwd())
    except Exception:  # an identity is a bonus; a training record must not fail for it
        return None


def _check_label(value: object, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise MlError(f"{what} must be a non-empty string, got {value!r:.40}")


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
