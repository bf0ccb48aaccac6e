"""OpenLineage out, live: the runs this agent records are sent to a lineage server once they are anchored.

Used by the capture service when its config has ``[openlineage] url`` and by
``provanchor run --openlineage URL``. The service walks its spool from a
cursor (spool meta ``openlineage.next_seq``) up to the anchored size, so every
event it sends carries the checkpoint and transaction that anchor the run; the
events go into the outbox first (provanchor.interop.outbox), then the cursor
moves, then delivery is attempted: a server that is down delays events,
never drops them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from provanchor.errors import EmitFailed, RecordError
from provanchor.home import Home
from provanchor.interop.openlineage import run_events_json
from provanchor.interop.outbox import Delivery, Outbox
from provanchor.interop.runs import Anchored, RunView
from provanchor.pipeline.spool import Batch, Spool
from provanchor.records import Op, Record, decode_record

__all__ = ["SpoolLineageEmitter", "anchored_in_spool", "events_for_run"]

_CURSOR = "openlineage.next_seq"


def events_for_run(run: Anchored, writes: Sequence[Anchored]) -> list[dict[str, Any]]:
    return run_events_json(RunView.of(run, writes))


class SpoolLineageEmitter:
    """Sends the anchored run records of one spool, each once, in order."""

    def __init__(self, home: Home, spool: Spool, url: str, log: Callable[[str], None] | None = None) -> None:
        self.outbox = Outbox(home)
        self.spool = spool
        self.url = url
        self.log = log or (lambda message: None)
        self._writes: dict[str, list[Anchored]] = {}
        self.sent = 0

    def tick(self) -> Delivery | None:
        """Queue the events of runs anchored since the last tick, then deliver what waits."""
        start = int(self.spool.get_meta(_CURSOR) or 0)
        end = self.spool.anchored_size()
        if end > start:
            batches = self.spool.batches(["anchored"])
            events: list[dict[str, Any]] = []
            for seq in range(start, end):
                spooled = self.spool.record_by_seq(seq)
                if spooled is None:
                    continue
                try:
                    record = decode_record(spooled.data)
                except RecordError:
                    continue
                events += self._consider(_anchored(record, batches))
            self.outbox.keep(self.url, events)
            self.spool.set_meta(_CURSOR, str(end))
        try:
            delivery = self.outbox.emit(self.url, [])
        except EmitFailed as exc:
            self.log(f"warning: {exc}")
            return None
        self.sent += delivery.sent
        return delivery

    def _consider(self, anchored: Anchored) -> list[dict[str, Any]]:
        record = anchored.record
        if record.run is None:
            return []
        if record.op in (Op.CREATE, Op.WRITE):
            self._writes.setdefault(record.run, []).append(anchored)
            return []
        if record.op is not Op.RUN:
            return []
        return events_for_run(anchored, self._writes.pop(record.run, []))


def _anchored(record: Record, batches: Sequence[Batch]) -> Anchored:
    for batch in batches:
        if batch.start_seq <= record.seq < batch.end_seq:
            tx = bytes.fromhex(batch.tx_hash.removeprefix("0x")) if batch.tx_hash else None
            return Anchored(record, batch.checkpoint_index, batch.end_seq, tx)
    return Anchored(record)


def anchored_in_spool(spool: Spool, seq: int) -> Anchored:
    """The spooled record at `seq`, with its checkpoint when its batch is anchored."""
    spooled = spool.record_by_seq(seq)
    if spooled is None:
        raise RecordError(f"seq {seq} is not in the spool")
    return _anchored(decode_record(spooled.data), spool.batches(["anchored"]))
