"""What the explorer shows, as plain data: one function per page, each answering from the index.

The explorer is read-only: these functions read the index (a verified cache
of the chain and IPFS, synced by a background follower), fetch content from
IPFS hashing every byte against its CID, verify with the verify library, and
replay into a scratch directory of their own. None of them writes the ledger.

Every user-supplied value goes through the same parsers as the command line
(`QueryFilter`, `location_arg`, `parse_time`, `parse_record_id`), so a bad
value is the same typed error, which the web layer turns into a 400.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provanchor.errors import BadLimit, NotInIndex, RecordError, UsageError
from provanchor.formats.cid import CID
from provanchor.home import Home
from provanchor.index.lineage import Graph, lineage
from provanchor.index.query import QueryFilter, parse_agent, parse_code_hash, program_arg, run_query
from provanchor.index.store import IndexStore, Problem
from provanchor.index.timeparse import format_time, parse_time
from provanchor.interop.runs import RunFile, RunView, load_record, load_run, program_name
from provanchor.network import NetworkDescriptor
from provanchor.records import CodeIdentity, Record
from provanchor.records.locations import location_arg
from provanchor.verify.api import VerifyContext, parse_record_id, verify_record
from provanchor.verify.report import Report

__all__ = [
    "MAX_DEPTH",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "MAX_PREVIEW",
    "Explorer",
    "SearchPage",
]

MAX_PAGE_SIZE = 200
MAX_PAGE = 50
MAX_DEPTH = 20
MAX_PREVIEW = 64 * 1024
MAX_CONTENT = 64 * 1024 * 1024
MAX_STATE_FILES = 20_000


@dataclass(frozen=True)
class SearchPage:
    rows: list[dict[str, Any]]
    page: int
    page_size: int
    more: bool
    criteria: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.rows,
            "page": self.page,
            "page_size": self.page_size,
            "next_page": self.page + 1 if self.more else None,
            "criteria": self.criteria,
        }


def checked_location(text: str) -> str:
    """A location parameter under replay's path rules: an absolute path or a URI whose path has no empty,
    ``.`` or ``..`` component, NUL or backslash (refused with the reason, never normalised away)."""
    from provanchor.formats.snapshot_manifest import relative_path_problem
    from provanchor.records.model import parse_file_location

    text = text.strip()
    if not text:
        raise UsageError("a location is required: an absolute path or a location URI")
    if "://" in text:
        if not text.startswith("file://"):
            return text
        try:
            path = parse_file_location(text)[1]
        except RecordError as exc:
            raise UsageError(f"not a file location: {exc}") from None
    elif text.startswith("/"):
        path = text
    else:
        raise UsageError(f"a location is an absolute path or a URI, got {text!r:.80}")
    if path != "/":
        problem = relative_path_problem(path[1:].rstrip("/") if len(path) > 1 and path.endswith("/") else path[1:])
        if problem is not None:
            raise UsageError(f"refusing the location {text!r:.80}: path {problem}")
    return text if "://" in text else location_arg(path, None)


def _int_in(value: str | int | None, name: str, low: int, high: int, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadLimit(f"{name} must be an integer, got {str(value)!r:.40}") from None
    if not low <= number <= high:
        raise BadLimit(f"{name} must be between {low} and {high}, got {number}")
    return number


class Explorer:
    """The explorer's reads over one network: its index, its chain and its IPFS API."""

    def __init__(self, home: Home, network: NetworkDescriptor, index_path: Path, ipfs_api: str | None = None) -> None:
        self.home = home
        self.network = network
        self.index_path = index_path
        self.ipfs_api = ipfs_api or network.ipfs_api
        self.scratch = Path(tempfile.mkdtemp(prefix="provanchor-explorer-"))

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def store(self) -> IndexStore:
        return IndexStore.open(self.index_path, must_exist=True)

    # -------------------------------------------------------------- search

    def search(self, params: dict[str, str]) -> SearchPage:
        """Records matching every given criterion, oldest first, one page at a time."""
        page = _int_in(params.get("page"), "page", 1, MAX_PAGE, 1)
        size = _int_in(params.get("page_size"), "page_size", 1, MAX_PAGE_SIZE, 50)
        criteria = {k: v.strip() for k, v in params.items() if k not in ("page", "page_size") and v and v.strip()}
        unknown = set(criteria) - {"location", "user", "since", "until", "code_hash", "program", "agent", "run", "op"}
        if unknown:
            raise UsageError(f"unknown search criteria: {', '.join(sorted(unknown))}")
        location = checked_location(criteria["location"]) if "location" in criteria else None
        program_path = None
        if "program" in criteria:
            program_path = program_arg(criteria["program"], all_versions=True)[0]
        query = QueryFilter(
            under=location_arg(location, None) if location and "://" not in location else None,
            location=location if location and "://" in location else None,
            user=criteria.get("user"),
            since_ns=parse_time(criteria["since"]) if "since" in criteria else None,
            until_ns=parse_time(criteria["until"]) if "until" in criteria else None,
            code_hash=parse_code_hash(criteria["code_hash"]) if "code_hash" in criteria else None,
            agent=criteria.get("agent"),
            op=criteria.get("op"),
            run_id=criteria.get("run"),
            program_path=program_path,
            limit=page * size + 1,
        )
        with self.store() as store:
            rows = run_query(store, query)
        window = rows[(page - 1) * size : page * size]
        return SearchPage([row.to_json() for row in window], page, size, len(rows) > page * size, criteria)

    # -------------------------------------------------------------- records

    def record(self, record_id: str) -> dict[str, Any]:
        """Every field of a record and where it is anchored (from the index, hashed again)."""
        cid = parse_record_id(record_id)
        with self.store() as store:
            found = load_record(store, cid.digest)
        if found is None:
            raise NotInIndex(f"no record {cid} in the index (is it anchored, and the index synced?)")
        record = found.record
        data = {"record_id": found.record_id, **_record_fields(record)}
        data["anchoring"] = {
            "checkpoint": found.checkpoint,
            "checkpoint_size": found.checkpoint_size,
            "tx": None if found.tx is None else "0x" + found.tx.hex(),
        }
        return data

    def verify(self, record_id: str) -> Report:
        """The live verification of one record: chain and IPFS, nothing taken from the index."""
        parse_record_id(record_id)
        with VerifyContext(self.network.rpc_url, self.network.contract, ipfs_api=self.ipfs_api) as ctx:
            return verify_record(ctx, record_id)

    def content(self, cid_text: str, limit: int = MAX_CONTENT) -> bytes:
        """The bytes of a content CID from IPFS, hashed against it (a lying node is an error, not a page)."""
        from provanchor.ipfs.sources import IpfsSource, content_bytes

        try:
            cid = CID.parse(cid_text.strip())
        except Exception:
            raise UsageError(f"not a content CID: {cid_text!r:.80}") from None
        if cid.codec == 0x71:
            raise UsageError(f"{cid} names a record, not content")
        source = IpfsSource(self.ipfs_api)
        try:
            data = content_bytes(source, cid)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        if len(data) > limit:
            raise UsageError(f"content of {len(data):,} bytes is over the explorer's {limit:,}-byte limit")
        return data

    # -------------------------------------------------------------- lineage, agents, runs

    def lineage(self, location: str, depth: int | str | None, direction: str = "both") -> Graph:
        steps = _int_in(depth, "depth", 0, MAX_DEPTH, 3)
        if direction not in ("upstream", "downstream", "both"):
            raise UsageError(f"direction is upstream, downstream or both, got {direction!r:.20}")
        target = checked_location(location)
        with self.store() as store:
            if direction != "both":
                return lineage(store, target, direction, steps, max_nodes=2_000)
            up = lineage(store, target, "upstream", steps, max_nodes=1_000)
            down = lineage(store, target, "downstream", steps, max_nodes=1_000)
        return _merge(up, down)

    def agent(self, address: str) -> dict[str, Any]:
        agent = parse_agent(address)
        with self.store() as store:
            checkpoints = store.checkpoints(agent)
            problems: list[Problem] = [p for p in store.problems() if p.agent == agent]
            lags = store.read(
                "SELECT checkpoint, MIN(time), MAX(time) FROM records WHERE agent = ? GROUP BY checkpoint", (agent,)
            )
            records = store.read("SELECT COUNT(*) FROM records WHERE agent = ?", (agent,))[0][0]
        first_record = {int(c): (int(lo), int(hi)) for c, lo, hi in lags}
        timeline: list[dict[str, Any]] = []
        for checkpoint in checkpoints:
            span = first_record.get(checkpoint.idx)
            lag = None if span is None else max(0, checkpoint.time - span[0]) / 1e9
            timeline.append(
                {
                    "index": checkpoint.idx,
                    "size": checkpoint.size,
                    "block": checkpoint.block,
                    "time": format_time(checkpoint.time),
                    "tx": "0x" + checkpoint.tx.hex(),
                    "manifest": checkpoint.manifest_cid,
                    "lag_seconds": lag,
                }
            )
        if not checkpoints and not records:
            raise NotInIndex(f"agent {agent} has anchored nothing the index knows of")
        lags_known = [t["lag_seconds"] for t in timeline if t["lag_seconds"] is not None]
        return {
            "agent": agent,
            "records": int(records),
            "checkpoints": timeline,
            "max_lag_seconds": max(lags_known, default=None),
            "problems": [
                {"seq": p.seq, "record_id": p.record_id, "checkpoint": p.checkpoint, "reason": p.reason}
                for p in problems
            ],
        }

    def run(self, run_id: str) -> dict[str, Any]:
        with self.store() as store:
            view = load_run(store, run_id)
        return _run_json(view, self._last_replay(view.run_id))

    def _last_replay(self, run_id: str) -> dict[str, Any] | None:
        """The result `replay run --json` left for this run, if the data directory keeps one."""
        import json

        path = self.home.root / "replays" / f"{run_id}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # -------------------------------------------------------------- state at a time

    def state(self, location: str, at: str) -> dict[str, Any]:
        replayed, out = self._replay(location, at)
        data = replayed.to_json()
        shutil.rmtree(out, ignore_errors=True)
        return {key: data[key] for key in ("ok", "location", "at", "files", "breaks", "snapshot", "applied")}

    def state_tar(self, location: str, at: str) -> tuple[str, bytes]:
        replayed, out = self._replay(location, at)
        buffer = io.BytesIO()
        try:
            with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
                archive.add(out, arcname="state")
        finally:
            shutil.rmtree(out, ignore_errors=True)
        name = os.path.basename(replayed.location.rstrip("/")) or "state"
        return f"{name}-at-{replayed.at}.tar.gz", buffer.getvalue()

    def _replay(self, location: str, at: str) -> tuple[Any, Path]:
        from provanchor.chain.client import LedgerClient
        from provanchor.ipfs.client import IpfsClient
        from provanchor.replay.source import LedgerRecords
        from provanchor.replay.state import replay_state

        at_ns = parse_time(at)
        location = checked_location(location)
        target = location if "://" in location else _any_host_location(self, location)
        out = Path(tempfile.mkdtemp(prefix="state-", dir=self.scratch)) / "tree"
        ipfs = IpfsClient(self.ipfs_api)
        try:
            with self.store() as store:
                replayed = replay_state(
                    LedgerRecords(store),
                    ipfs,
                    LedgerClient(self.network.rpc_url, self.network.contract),
                    target,
                    at_ns,
                    out,
                    cache_dir=self.home.root / "cache" / "content",
                )
        except BaseException:
            shutil.rmtree(out.parent, ignore_errors=True)
            raise
        finally:
            ipfs.close()
        if len(replayed.files) > MAX_STATE_FILES:
            shutil.rmtree(out.parent, ignore_errors=True)
            shown = f"{MAX_STATE_FILES:,}"
            raise BadLimit(f"the tree has {len(replayed.files):,} files; the explorer shows at most {shown}")
        return replayed, out


def _any_host_location(explorer: Explorer, path: str) -> str:
    """A plain path names a file on whichever host recorded it: the first location the index has for it."""
    from provanchor.records.locations import encoded_path

    encoded = encoded_path(location_arg(path, None))
    with explorer.store() as store:
        rows = store.read(
            "SELECT location FROM records WHERE path = ? OR path LIKE ? ESCAPE '\\' LIMIT 1",
            (encoded, encoded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").rstrip("/") + "/%"),
        )
    if not rows:
        raise NotInIndex(f"no record of {path!r:.80} in the index")
    location = str(rows[0][0])
    host = location[len("file://") :].split("/", 1)[0]
    return f"file://{host}{encoded}"


def _merge(up: Graph, down: Graph) -> Graph:
    merged = Graph(truncated=up.truncated or down.truncated)
    seen_nodes: set[str] = set()
    seen_edges: set[tuple[str, str, str]] = set()
    for graph in (up, down):
        for node in graph.nodes:
            if node["id"] not in seen_nodes:
                seen_nodes.add(node["id"])
                merged.nodes.append(node)
        for edge in graph.edges:
            key = (edge["from"], edge["to"], edge["kind"])
            if key not in seen_edges:
                seen_edges.add(key)
                merged.edges.append(edge)
    return merged


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _record_fields(record: Record) -> dict[str, Any]:
    def plain(value: object) -> object:
        return value if value is None or isinstance(value, str | int) else "(committed)"

    code = record.code
    fields: dict[str, Any] = {
        "agent": record.agent,
        "seq": record.seq,
        "prev": _hex(record.prev),
        "time": format_time(record.time),
        "time_ns": record.time,
        "user": plain(record.user),
        "uid": plain(record.uid),
        "host": plain(record.host),
        "location": plain(record.location),
        "from": plain(record.from_location),
        "op": record.op.value,
        "before": None if record.before is None else {"sha256": record.before.sha256.hex(), "size": record.before.size},
        "after": None
        if record.after is None
        else {
            "sha256": record.after.sha256.hex(),
            "size": record.after.size,
            "cid": None if record.after.cid is None else record.after.cid.encode(),
        },
        "code_hash": _hex(record.code_hash),
        "program": program_name(record, []) if isinstance(code, CodeIdentity) else None,
        "code": None
        if not isinstance(code, CodeIdentity)
        else {
            "exe": None if code.exe is None else {"path": code.exe.path, "sha256": code.exe.sha256.hex()},
            "scripts": [{"path": s.path, "sha256": s.sha256.hex()} for s in code.scripts],
        },
        "pid": record.pid,
        "run": record.run,
        "mode": record.mode,
        "capture": {
            "backend": record.capture.backend.value,
            "attributed": record.capture.attributed,
            "reason": record.capture.reason,
        },
    }
    return fields


def _run_json(view: RunView, last_replay: dict[str, Any] | None) -> dict[str, Any]:
    record = view.run.record

    def files(entries: tuple[RunFile, ...]) -> list[dict[str, Any]]:
        return [
            {
                "location": f.location,
                "sha256": f.sha256.hex(),
                "size": f.size,
                "cid": f.cid,
                "record_id": None if f.written_by is None else f.written_by.record_id,
            }
            for f in entries
        ]

    fields = _record_fields(record)
    return {
        "run_id": view.run_id,
        "record_id": view.run.record_id,
        "program": program_name(record, view.argv),
        "argv": view.argv,
        "cwd": view.payload.get("cwd"),
        "exit_code": view.exit_code,
        "started": format_time(view.started_ns),
        "finished": format_time(view.finished_ns),
        "host": view.host,
        "user": fields.get("user"),
        "agent": record.agent,
        "code_hash": _hex(record.code_hash),
        "code": fields.get("code"),
        "inputs": files(view.inputs),
        "outputs": files(view.outputs),
        "anchoring": {
            "checkpoint": view.run.checkpoint,
            "tx": None if view.run.tx is None else "0x" + view.run.tx.hex(),
        },
        "last_replay": last_replay,
    }
