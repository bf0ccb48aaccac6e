"""The provenance agent service: capture → record → spool → anchor, until SIGTERM.

`provanchor agent start --config FILE` runs this in the foreground (the
service manager supervises it). On start it unlocks the agent key, opens the
spool, picks the capture backend, and rescans the watched trees against its
last known state, so changes made while it was down are recorded (marked as
found by rescan) and `seq` resumes without a gap. On SIGTERM it stops
capturing, records what is still pending, and flushes the spool to the chain
when it can.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provanchor.agent.capture import open_watcher
from provanchor.agent.config import AgentConfig
from provanchor.agent.metrics import MetricsServer
from provanchor.agent.proctable import ProcessTable, ProcessTableUnavailable
from provanchor.agent.tracker import ChangeTracker, FileState
from provanchor.errors import ConfigError, ProvanchorError
from provanchor.formats.cid import CID
from provanchor.home import Home
from provanchor.hostid import default_host_id
from provanchor.identity import AgentIdentity, load_identity, read_password, unlock
from provanchor.network import load_network
from provanchor.pipeline.recorder import RecordRef
from provanchor.pipeline.session import AgentSession, service_locks
from provanchor.records import Change, parse_file_location

_RECENT_LIMIT = 64 * 1024 * 1024


@dataclass
class ServiceState:
    started_ns: int = field(default_factory=time.time_ns)
    backend: str = ""
    warning: str | None = None
    last_error: str | None = None
    stopping: bool = False


def status_path(home: Home, address: str) -> Path:
    return home.root / "agents" / address.lower() / "status.json"


class AgentService:
    def __init__(self, config: AgentConfig, log: Any = None) -> None:
        self.config = config
        self.home = Home(config.home)
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.state = ServiceState()
        self._stop = threading.Event()
        identity = self._identity()
        # Refuse a second service before the slow key unlock; held until this process ends.
        self._locks = service_locks(self.home, identity.keystore_path)
        try:
            password = read_password(str(config.password_file) if config.password_file else None)
            account = unlock(identity.keystore_path, password)
            network = load_network(self.home)
            self.session = AgentSession(
                self.home, network, identity, account, batch_size=config.batch_size, interval=config.batch_interval
            )
        except BaseException:
            self._release_locks()
            raise
        self.host_id = config.host_id or default_host_id()
        self.metrics: MetricsServer | None = None
        self._pending: deque[Future[RecordRef]] = deque()
        self._snapshotter: threading.Thread | None = None
        self._lineage: threading.Thread | None = None
        self.lineage_events_sent = 0
        # Contents just recorded, by CID: telling a truncate from a rewrite needs the old content,
        # which is usually not on IPFS yet (waiting for it would stall capture for seconds).
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self._recent_bytes = 0
        self.snapshots_taken = 0
        self.snapshot_errors = 0

    def _identity(self) -> AgentIdentity:
        if self.config.keystore is None:
            return load_identity(self.home)
        try:
            address = _keystore_address(self.config.keystore)
        except FileNotFoundError as exc:
            raise ConfigError(f"keystore {self.config.keystore} does not exist") from exc
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"keystore {self.config.keystore} is unreadable: {exc}") from exc
        return AgentIdentity(name=self.config.name, address=address, keystore=str(self.config.keystore))

    # ------------------------------------------------------------ lifecycle

    def check_registered(self) -> None:
        """Refuse to run as a key the ledger never approved (it could never anchor)."""
        info = self.session.anchorer.ledger.agent_info(self.session.address)
        if not info.registered:
            raise ConfigError(
                f"agent {self.session.address} is not registered on the ledger: "
                f"approve it with `provanchor gov propose add-agent {self.session.address} --name {self.config.name}`"
            )
        if not info.active:
            raise ConfigError(f"agent {self.session.address} was revoked: it can no longer anchor")

    def run(self) -> int:
        self._install_signals()  # a SIGTERM during start-up still ends in a clean stop
        self.check_registered()
        watcher, warning = open_watcher(
            list(self.config.capture.paths),
            backend=self.config.capture.backend,  # type: ignore[arg-type]
            exclude_pids=(os.getpid(),),
        )
        self.state.backend = watcher.backend
        self.state.warning = warning
        if warning:
            self.log(f"warning: {warning}")
        self.log(f"capture backend: {watcher.backend}; watching {', '.join(self.config.capture.paths)}")
        self.processes = None
        if watcher.attributed:
            table = ProcessTable()
            try:
                table.start()
                self.processes = table
            except ProcessTableUnavailable as exc:
                self.log(f"warning: {exc}; writers that exit before their events are read stay unknown")
        tracker = ChangeTracker(
            self.config,
            self.host_id,
            watcher.backend,
            self._submit,
            known=self._known_state(),
            old_content=self._old_content,
            resolve_process=self.processes.resolve if self.processes is not None else None,
            store_large=self._store_large,
        )
        self.tracker = tracker
        tracker.on_error = lambda event, exc: self.log(f"error: could not record {event.kind} {event.path}: {exc}")
        self.session.start(on_error=self._anchor_error)
        if self.config.metrics_listen:
            self.metrics = MetricsServer(self.config.metrics_listen, self.metrics_snapshot)
            self.metrics.start()
            self.log(f"metrics on http://{self.metrics.address}/metrics")
        found = tracker.rescan("changes made while the agent was not running")
        if found:
            self.log(f"rescan: recorded {found} change(s) made while the agent was down")
        if self.config.snapshot.interval > 0:
            self._snapshotter = threading.Thread(target=self._snapshot_loop, name="provanchor-snapshots", daemon=True)
            self._snapshotter.start()
        if self.config.openlineage_url:
            self._lineage = threading.Thread(target=self._lineage_loop, name="provanchor-openlineage", daemon=True)
            self._lineage.start()
        self._write_status()
        last_rescan = time.monotonic()
        last_status = 0.0
        try:
            while not self._stop.is_set():
                tracker.handle_batch(watcher.read(0.2))
                tracker.sweep()
                self._reap()
                now = time.monotonic()
                if watcher.backend == "inotify" and now - last_rescan >= self.config.capture.rescan_interval:
                    tracker.rescan("periodic rescan (inotify can miss changes)")
                    last_rescan = now
                if now - last_status >= 1.0:
                    self._write_status()
                    last_status = now
        finally:
            self.state.stopping = True
            # Drain what the kernel still holds: a change made just before SIGTERM is recorded too.
            for _ in range(1000):
                events = watcher.read(0.1)
                if not events:
                    break
                tracker.handle_batch(events)
            tracker.sweep(time.time_ns() + 10**12)  # record whatever is still pending
            self._reap(wait=True)
            watcher.close()
            if self.processes is not None:
                self.processes.close()
            self._shutdown()
        return 0

    def stop(self) -> None:
        self._stop.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())

    def _lineage_loop(self) -> None:
        """Send anchored runs as OpenLineage events (see provanchor.agent.lineage_emitter), every 2 s."""
        from provanchor.agent.lineage_emitter import SpoolLineageEmitter

        assert self.config.openlineage_url is not None
        emitter = SpoolLineageEmitter(self.home, self.session.spool, self.config.openlineage_url, self.log)
        while not self._stop.is_set():
            try:
                emitter.tick()
            except Exception as exc:  # capture goes on whatever the lineage server does
                self.log(f"error: OpenLineage emission: {exc}")
            self._stop.wait(2.0)
        self.lineage_events_sent = emitter.sent

    def _snapshot_loop(self) -> None:
        """Snapshot every configured tree at start and then every interval, beside capture.

        It runs in its own thread so that reading a large tree never delays
        capture; snapshots are incremental, so a quiet tree costs a stat per
        file. A failure is logged and retried at the next interval.
        """
        from provanchor.snapshot.service import take_snapshot

        interval = self.config.snapshot.interval
        while not self._stop.is_set():
            for path in self.config.snapshot.paths:
                if self._stop.is_set():
                    return
                try:
                    taken = take_snapshot(self.session, path, self.host_id)
                except Exception as exc:  # the agent keeps capturing whatever a snapshot does
                    self.snapshot_errors += 1
                    self.log(f"error: snapshot of {path} failed: {exc}")
                    continue
                self.snapshots_taken += 1
                self.log(f"snapshot of {path}: {taken.snapshot_id} ({taken.files} files, {taken.files_read} read)")
            self._stop.wait(interval)

    def _shutdown(self) -> None:
        if self._snapshotter is not None:
            self._snapshotter.join(timeout=120)
        if self._lineage is not None:
            self._lineage.join(timeout=30)
        self.session.stop()
        try:
            status = self.session.flush(timeout=30)
            if status is not None:
                self.log(f"flushed: log size {status.size}, checkpoint {status.checkpoint}")
        except Exception as exc:  # whatever failed, the spool keeps every record for next time
            self.log(f"warning: could not anchor on stop ({exc}); records stay in the spool")
        self._write_status()
        if self.metrics is not None:
            self.metrics.stop()
        self.session.close()
        self._release_locks()

    def _release_locks(self) -> None:
        for lock in self._locks:
            lock.release()

    # ------------------------------------------------------------ plumbing

    def _remember(self, change: Change, content: bytes | None) -> None:
        after = change.after
        if content is None or after is None or after.cid is None or len(content) > _RECENT_LIMIT // 4:
            return
        key = after.cid.encode()
        if key in self._recent:
            self._recent.move_to_end(key)
            return
        self._recent[key] = content
        self._recent_bytes += len(content)
        while self._recent_bytes > _RECENT_LIMIT:
            _, dropped = self._recent.popitem(last=False)
            self._recent_bytes -= len(dropped)

    def _submit(self, change: Change, content: bytes | None) -> None:
        self._remember(change, content)
        # Queued for the recorder, which commits whole groups per fsync: a burst of changes
        # costs one fsync per group, not per record. Failures are reported as they complete.
        self._pending.append(self.session.recorder.submit(change, content, fill_before=False))

    def _reap(self, wait: bool = False) -> None:
        while self._pending and (wait or self._pending[0].done()):
            future = self._pending.popleft()
            error = future.exception()
            if error is not None:
                self.log(f"error: a change could not be recorded: {error}")

    def _known_state(self) -> dict[str, FileState]:
        known: dict[str, FileState] = {}
        rows = self.session.spool._db.execute("SELECT location, sha256, size, cid FROM locations").fetchall()
        for location, sha256, size, cid in rows:
            try:
                host, path = parse_file_location(location)
            except ProvanchorError:
                continue
            if host != self.host_id:
                continue
            known[path] = FileState(
                None if sha256 is None else bytes(sha256), size, CID.parse(cid) if cid else None, None
            )
        return known

    def _store_large(self, path: str) -> CID | None:
        try:
            return self.session.anchorer.ipfs.add_file(path)
        except ProvanchorError as exc:
            self.log(f"warning: could not store {path} on IPFS ({exc}); recording its hash only")
            return None

    def _old_content(self, cid: CID) -> bytes | None:
        recent = self._recent.get(cid.encode())
        if recent is not None:
            return recent
        with contextlib.suppress(ProvanchorError):
            return self.session.anchorer.ipfs.cat(cid)
        return None

    def _anchor_error(self, exc: Exception) -> None:
        message = str(exc)
        if message != self.state.last_error:
            self.log(f"anchoring delayed: {message}")
        self.state.last_error = message

    def metrics_snapshot(self) -> dict[str, float | str]:
        stats = self.session.spool.stats()
        tracker = getattr(self, "tracker", None)
        oldest = self.session.spool.oldest_unbatched_ns()
        lag = (time.time_ns() - oldest) / 1e9 if oldest else 0.0
        return {
            "records_captured": tracker.stats.captured if tracker else 0,
            "records_spooled": stats["records"],
            "records_anchored": stats["anchored_size"],
            "anchoring_lag_seconds": lag,
            "overflows": tracker.stats.overflows if tracker else 0,
            "rescans": tracker.stats.rescans if tracker else 0,
            "found_by_rescan": tracker.stats.found_by_rescan if tracker else 0,
            "unreadable_files": tracker.stats.unreadable if tracker else 0,
            "capture_errors": tracker.stats.errors if tracker else 0,
            # Changes seen but not yet durable: files waiting to settle, records waiting for the spool.
            "changes_pending": (len(tracker.dirty) if tracker else 0) + sum(not f.done() for f in list(self._pending)),
            "snapshots_taken": self.snapshots_taken,
            "snapshot_errors": self.snapshot_errors,
            "backend": self.state.backend,
        }

    def _write_status(self) -> None:
        data = {
            "pid": os.getpid(),
            "address": self.session.address,
            "name": self.config.name,
            "config": str(self.config.source),
            "backend": self.state.backend,
            "warning": self.state.warning,
            "started": self.state.started_ns // 10**9,
            "updated": time.time(),
            "stopping": self.state.stopping,
            "last_error": self.state.last_error,
            "metrics": self.metrics.address if self.metrics else None,
            **{k: v for k, v in self.metrics_snapshot().items() if k != "backend"},
        }
        path = status_path(self.home, self.session.address)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, path)


def _keystore_address(path: Path) -> str:
    from eth_utils.address import to_checksum_address

    data = json.loads(path.read_text(encoding="utf-8"))
    return str(to_checksum_address("0x" + str(data["address"]).removeprefix("0x")))
