"""Anchored records as a W3C PROV document, built and serialised with the `prov` package.

The mapping (docs/interop.md has it in full):

- **entities** are content versions, named by their sha256
  (``sha256:HEX``), so a version read by one run and written by another is
  one entity; each carries ``pa:sha256``, ``pa:size``, ``pa:cid`` (its IPFS
  CID, where known) and a ``pa:location`` for every place it was seen.
- **activities** are runs (``run:RUN_ID``, with start and end times, argv,
  exit code and run record) and changes (``record:RECORD_CID``, one per
  recorded change, with its op, location and time).
- **agents** are provanchor agents (``agent:ADDRESS``, software agents that
  signed the records), users (``user:NAME``, people) and programs
  (``program:CODE_HASH``, software agents named by their code hash).
- **relations**: a change or run ``used`` its inputs and ``wasGeneratedBy``
  makes its outputs, ``wasDerivedFrom`` links an output to each input (a run)
  or to the version it replaced (a change); every activity
  ``wasAssociatedWith`` its program, its user and the signing agent, and every
  output ``wasAttributedTo`` its user.

Local names are percent-encoded where PROV-N would not take them as they are,
so the PROV-N text parses back with the same package.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from prov.model import PROV, ProvDocument, ProvEntity

from provanchor.errors import BadLimit, UsageError
from provanchor.index.query import QueryFilter, run_query
from provanchor.index.store import IndexStore
from provanchor.interop.runs import Anchored, RunFile, RunView, load_record, load_run, program_name
from provanchor.records import CodeIdentity, ContentRef, Op, Record

__all__ = ["MAX_RECORDS", "ProvSelection", "prov_document", "serialize"]

MAX_RECORDS = 100_000
Format = Literal["json", "provn"]

_NAMESPACES = {
    "pa": "https://github.com/provanchor/provanchor/blob/main/docs/interop.md#",
    "ipfs": "ipfs://",
    "sha256": "urn:sha256:",
    "run": "urn:provanchor:run:",
    "record": "urn:provanchor:record:",
    "agent": "urn:provanchor:agent:",
    "user": "urn:provanchor:user:",
    "program": "urn:provanchor:program:",
}


@dataclass(frozen=True)
class ProvSelection:
    """Exactly one of: a run; a location (with an optional time window); an agent's records."""

    run_id: str | None = None
    location: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    agent: str | None = None

    def __post_init__(self) -> None:
        given = [x for x in (self.run_id, self.location, self.agent) if x is not None]
        if len(given) != 1:
            raise UsageError("give exactly one of --run, --location or --agent")
        if (self.since_ns is not None or self.until_ns is not None) and self.location is None:
            raise UsageError("--since and --until narrow a --location selection")


def prov_document(store: IndexStore, selection: ProvSelection, limit: int = MAX_RECORDS) -> ProvDocument:
    builder = _Builder()
    if selection.run_id is not None:
        builder.add_run(load_run(store, selection.run_id))
        return builder.document
    query = QueryFilter(
        location=selection.location,
        since_ns=selection.since_ns,
        until_ns=selection.until_ns,
        agent=selection.agent,
        limit=limit + 1,
    )
    rows = run_query(store, query)
    if len(rows) > limit:
        raise BadLimit(f"more than {limit:,} records match: narrow the selection (--since, --until)")
    for row in rows:
        found = load_record(store, bytes.fromhex(_digest_hex(row.record_id)))
        if found is None:
            continue
        if found.record.op is Op.RUN and found.record.run is not None:
            builder.add_run(load_run(store, found.record.run))
        else:
            builder.add_change(found)
    return builder.document


def _digest_hex(record_id: str) -> str:
    from provanchor.formats.cid import CID

    return CID.parse(record_id).digest.hex()


def serialize(document: ProvDocument, fmt: Format | str) -> str:
    if fmt == "json":
        return str(document.serialize(format="json", indent=2))
    if fmt == "provn":
        return str(document.get_provn())
    raise UsageError(f"PROV formats are json and provn, got {fmt!r:.20}")


def _local(text: str) -> str:
    """A PROV-N-safe local name: unreserved characters kept, everything else percent-encoded."""
    return quote(text, safe="-_.")


def _time(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)


class _Builder:
    def __init__(self) -> None:
        self.document = ProvDocument()
        for prefix, uri in _NAMESPACES.items():
            self.document.add_namespace(prefix, uri)
        self._seen: set[str] = set()
        self._entities: dict[str, ProvEntity] = {}
        self._facts: set[tuple[str, str]] = set()

    def _once(self, identifier: str) -> bool:
        if identifier in self._seen:
            return False
        self._seen.add(identifier)
        return True

    # -------------------------------------------------------------- nodes

    def content(self, location: str, sha256: bytes, size: int | None, cid: str | None) -> str:
        """One entity per content (``sha256:HEX``); each location it was seen at is one more ``pa:location``."""
        identifier = f"sha256:{sha256.hex()}"
        entity = self._entities.get(identifier)
        if entity is None:
            attributes: dict[str, Any] = {"pa:sha256": sha256.hex()}
            if size is not None:
                attributes["pa:size"] = size
            entity = self._entities[identifier] = self.document.entity(identifier, attributes)
        if cid and (identifier, "cid") not in self._facts:
            self._facts.add((identifier, "cid"))
            entity.add_attributes({"pa:cid": cid})
        if (identifier, location) not in self._facts:
            self._facts.add((identifier, location))
            entity.add_attributes({"pa:location": location})
        return identifier

    def signer(self, address: str) -> str:
        identifier = f"agent:{address}"
        if self._once(identifier):
            self.document.agent(identifier, {"prov:type": PROV["SoftwareAgent"], "pa:role": "provanchor agent"})
        return identifier

    def user(self, record: Record) -> str | None:
        if not isinstance(record.user, str):
            return None
        identifier = f"user:{_local(record.user)}"
        if self._once(identifier):
            self.document.agent(identifier, {"prov:type": PROV["Person"], "prov:label": record.user})
        return identifier

    def program(self, record: Record, argv: list[str]) -> str | None:
        if record.code_hash is None:
            return None
        identifier = f"program:{record.code_hash.hex()}"
        if self._once(identifier):
            attributes: dict[str, Any] = {
                "prov:type": PROV["SoftwareAgent"],
                "prov:label": program_name(record, argv),
                "pa:codeHash": record.code_hash.hex(),
            }
            if isinstance(record.code, CodeIdentity) and record.code.exe is not None:
                attributes["pa:executable"] = record.code.exe.path
            self.document.agent(identifier, attributes)
        return identifier

    def _associate(self, activity: str, record: Record, argv: list[str]) -> str | None:
        user = self.user(record)
        for agent in (self.program(record, argv), user, self.signer(record.agent)):
            if agent is not None:
                self.document.wasAssociatedWith(activity, agent)
        return user

    # -------------------------------------------------------------- activities

    def add_run(self, view: RunView) -> None:
        activity = f"run:{_local(view.run_id)}"
        if not self._once(activity):
            return
        record = view.run.record
        attributes: dict[str, Any] = {
            "prov:label": " ".join(view.argv) or view.run_id,
            "pa:record": view.run.record_id,
            "pa:host": view.host,
        }
        if view.exit_code is not None:
            attributes["pa:exitCode"] = view.exit_code
        _anchoring(attributes, view.run)
        self.document.activity(activity, _time(view.started_ns), _time(view.finished_ns), attributes)
        user = self._associate(activity, record, view.argv)
        inputs = [self._file(file) for file in view.inputs]
        for entity in inputs:
            self.document.used(activity, entity)
        for file in view.outputs:
            output = self._file(file)
            self.document.wasGeneratedBy(output, activity)
            if user is not None:
                self.document.wasAttributedTo(output, user)
            for entity in inputs:
                self.document.wasDerivedFrom(output, entity, activity)

    def _file(self, file: RunFile) -> str:
        return self.content(file.location, file.sha256, file.size, file.cid)

    def add_change(self, found: Anchored) -> None:
        record = found.record
        activity = f"record:{found.record_id}"
        if not self._once(activity):
            return
        location = record.location if isinstance(record.location, str) else "(committed)"
        attributes: dict[str, Any] = {"prov:label": f"{record.op.value} {location}", "pa:op": record.op.value}
        attributes["pa:location"] = location
        if record.run is not None:
            attributes["pa:run"] = record.run
        _anchoring(attributes, found)
        when = _time(record.time)
        self.document.activity(activity, when, when, attributes)
        user = self._associate(activity, record, [])
        before = self._version(location, record.before)
        after = self._version(location, record.after)
        if before is not None:
            self.document.used(activity, before)
        if after is not None:
            self.document.wasGeneratedBy(after, activity, when)
            if user is not None:
                self.document.wasAttributedTo(after, user)
            if before is not None and before != after:
                self.document.wasDerivedFrom(after, before, activity)

    def _version(self, location: str, ref: ContentRef | None) -> str | None:
        if ref is None:
            return None
        return self.content(location, ref.sha256, ref.size, None if ref.cid is None else ref.cid.encode())


def _anchoring(attributes: dict[str, Any], anchored: Anchored) -> None:
    if anchored.checkpoint is not None:
        attributes["pa:checkpoint"] = anchored.checkpoint
    if anchored.tx is not None:
        attributes["pa:anchoringTx"] = "0x" + anchored.tx.hex()

