"""Inference receipts: one per prediction, written in batches so a serving loop is not held to the record rate.

Each receipt is two commitments (provanchor.ml.commitments), input and output.
An inference record carries 1 to 1,024 of them: one signature, one IPFS block
and one log leaf for the lot, which is what lets receipts outrun the pipeline's
per-record rate. A receipt in such a record is named ``RECORD_ID#INDEX`` and is
traced and verified alone.

:class:`ReceiptStream` is for serving loops that see one request at a time:
``add()`` returns a future at once and the stream cuts a record when it holds
``per_record`` receipts or its oldest has waited ``max_delay`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType

from provanchor.errors import MlError, UsageError
from provanchor.ml.commitments import CommitMode, DataCommitment, commit_data
from provanchor.ml.events import MAX_RECEIPTS_PER_RECORD, receipt_id
from provanchor.pipeline.recorder import RecordRef

__all__ = ["Receipt", "ReceiptSink", "ReceiptStream", "check_per_record"]

Pair = tuple[DataCommitment, DataCommitment]


@dataclass(frozen=True)
class Receipt:
    """An inference receipt: its record, its place in that record, and the commitments.

    ``salt`` values of salted commitments live only here, never in the record.
    A receipt batched with others is named ``RECORD_ID#INDEX``.
    """

    record_id: str
    seq: int
    index: int
    batched: bool
    model: str
    input: DataCommitment
    output: DataCommitment

    @property
    def id(self) -> str:
        """The receipt's event id, as trace and verify take it."""
        return receipt_id(self.record_id, self.index) if self.batched else self.record_id

    def __str__(self) -> str:
        return self.id


def check_per_record(per_record: object) -> int:
    if (
        not isinstance(per_record, int)
        or isinstance(per_record, bool)
        or not 1 <= per_record <= MAX_RECEIPTS_PER_RECORD
    ):
        raise UsageError(f"per_record must be 1 to {MAX_RECEIPTS_PER_RECORD}, got {per_record!r:.20}")
    return per_record


@dataclass(frozen=True)
class ReceiptSink:
    """Where one model's receipts go: how to commit to data, and how to spool a group as one record."""

    model: str
    mode: CommitMode
    key: bytes | None
    store: bool
    submit_group: Callable[[list[Pair]], Future[RecordRef]]

    def commit(self, given_input: bytes, given_output: bytes) -> Pair:
        return (
            commit_data(given_input, self.mode, key=self.key, store=self.store),
            commit_data(given_output, self.mode, key=self.key, store=self.store),
        )

    def receipts(self, ref: RecordRef, group: list[Pair], batched: bool) -> list[Receipt]:
        return [
            Receipt(ref.record_id, ref.seq, index, batched, self.model, committed_in, committed_out)
            for index, (committed_in, committed_out) in enumerate(group)
        ]


class ReceiptStream:
    """Receipts added one at a time, spooled ``per_record`` to a record or after ``max_delay`` seconds.

    ``add`` never waits for the disk: its future resolves once the receipt's
    record is durably spooled. ``close`` (or leaving the ``with`` block) writes
    what is left and waits for every record.
    """

    def __init__(self, sink: ReceiptSink, per_record: int = MAX_RECEIPTS_PER_RECORD, max_delay: float = 0.2) -> None:
        self.sink = sink
        self.per_record = check_per_record(per_record)
        self.max_delay = max_delay
        self._lock = threading.Condition()
        self._group: list[Pair] = []
        self._waiting: list[Future[Receipt]] = []
        self._oldest = 0.0
        self._records: list[Future[RecordRef]] = []
        self._closed = False
        self._timer = threading.Thread(target=self._run_timer, name="provanchor-receipts", daemon=True)
        self._timer.start()

    def add(self, given_input: bytes, given_output: bytes) -> Future[Receipt]:
        pair = self.sink.commit(given_input, given_output)  # hashing outside the lock
        future: Future[Receipt] = Future()
        with self._lock:
            if self._closed:
                raise MlError("the receipt stream is closed")
            if not self._group:
                self._oldest = time.monotonic()
                self._lock.notify()
            self._group.append(pair)
            self._waiting.append(future)
            if len(self._group) >= self.per_record:
                self._cut()
        return future

    def _cut(self) -> None:
        """Spool the waiting group as one record (the lock is held)."""
        group, waiting = self._group, self._waiting
        self._group, self._waiting = [], []
        record = self.sink.submit_group(group)
        self._records = [r for r in self._records if not r.done()] + [record]

        def resolve(done: Future[RecordRef]) -> None:
            error = done.exception()
            if error is not None:
                for future in waiting:
                    future.set_exception(error)
                return
            for future, receipt in zip(waiting, self.sink.receipts(done.result(), group, True), strict=True):
                future.set_result(receipt)

        record.add_done_callback(resolve)

    def _run_timer(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._group:
                    self._lock.wait()
                    continue
                due = self._oldest + self.max_delay - time.monotonic()
                if due > 0:
                    self._lock.wait(due)
                    continue
                self._cut()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._group:
                self._cut()
            self._closed = True
            self._lock.notify()
            records = list(self._records)
        self._timer.join()
        for record in records:
            record.result()

    def __enter__(self) -> ReceiptStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
