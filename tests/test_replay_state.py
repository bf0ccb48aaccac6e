"""`replay state` on a real network: snapshots, every op, user filters, breaks, safety and bad input.

Changes here are recorded through the library (the agent's own capture is
exercised in test_replay_agent.py): each step changes a real directory and
records exactly what changed, and the test keeps a copy of the directory
after every step. A replay at each step's time must equal that copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provanchor.errors import NothingRecorded, OutputDirError, UnsafePath
from provanchor.formats import dagcbor
from provanchor.formats.cid import CID
from provanchor.formats.snapshot_manifest import ManifestError, SnapshotManifest, decode_snapshot_manifest
from provanchor.formats.unixfs import cid_for_bytes
from provanchor.home import Home
from provanchor.hostid import default_host_id
from provanchor.localnet.devagents import enroll_agent
from provanchor.pipeline.session import AgentSession
from provanchor.records import Capture, CaptureBackend, Change, ContentRef, Op, file_location
from provanchor.replay import open_sources, replay_state
from provanchor.replay.paths import symlink_escapes
from provanchor.replay.state import restore_tree
from provanchor.replay.tree import Node, ReplayTree
from provanchor.snapshot.service import take_snapshot
from provanchor.snapshot.tree import FileEntry

PASSWORD = "replay-test"
CLI = [sys.executable, "-m", "provanchor.cli.main"]
HOST = default_host_id()


CHAIN_ENGINES = ("anvil", "geth")  # real block times too (see conftest)
GETH_TESTS = {
    "test_replay_at_every_instant_equals_the_copy",
    "test_a_user_filtered_replay_diverges_and_says_where",
}

def tree_of(root: Path) -> dict[str, tuple[str, bytes | str, int]]:
    """Every file and symlink under ``root``: kind, content (or link target), permission bits."""
    found: dict[str, tuple[str, bytes | str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = Path(dirpath) / name
            relative = str(full.relative_to(root))
            if full.is_symlink():
                found[relative] = ("symlink", os.readlink(full), 0)
            else:
                found[relative] = ("file", full.read_bytes(), full.stat().st_mode & 0o7777)
    return found


class Recorder:
    """Change a real directory and record exactly that change, as the agent would."""

    def __init__(self, session: AgentSession, root: Path, user: str = "alice") -> None:
        self.session, self.root, self.user = session, root, user

    def _ref(self, data: bytes, with_cid: bool = True) -> ContentRef:
        cid = CID.parse(cid_for_bytes(data)) if with_cid else None
        return ContentRef(sha256=hashlib.sha256(data).digest(), size=len(data), cid=cid)

    def _record(
        self, op: Op, path: Path, *, user: str | None = None, content: bytes | None = None, **kw: object
    ) -> None:
        change = Change(
            time=time.time_ns(),
            host=HOST,
            location=file_location(HOST, str(path)),
            op=op,
            user=user or self.user,
            capture=Capture(backend=CaptureBackend.MANUAL, attributed=True),
            **kw,  # type: ignore[arg-type]
        )
        self.session.record(change, content)

    def write(self, name: str, data: bytes, user: str | None = None) -> None:
        path = self.root / name
        existed = path.exists()
        before = self._ref(path.read_bytes(), with_cid=False) if existed else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        op = Op.WRITE if existed else Op.CREATE
        mode = path.stat().st_mode if op == Op.CREATE else None
        self._record(op, path, user=user, content=data, before=before, after=self._ref(data), mode=mode)

    def truncate(self, name: str, size: int) -> None:
        path = self.root / name
        old = path.read_bytes()
        os.truncate(path, size)
        self._record(Op.TRUNCATE, path, content=old[:size], before=self._ref(old, False), after=self._ref(old[:size]))

    def rename(self, old: str, new: str) -> None:
        source, target = self.root / old, self.root / new
        data = source.read_bytes()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)
        self._record(
            Op.RENAME, target, before=self._ref(data, False), after=self._ref(data),
            from_location=file_location(HOST, str(source)),
        )  # fmt: skip

    def delete(self, name: str) -> None:
        path = self.root / name
        data = path.read_bytes()
        path.unlink()
        self._record(Op.DELETE, path, before=self._ref(data, False))

    def chmod(self, name: str, mode: int) -> None:
        path = self.root / name
        data = path.read_bytes()
        os.chmod(path, mode)
        self._record(Op.CHMOD, path, before=self._ref(data, False), after=self._ref(data), mode=path.stat().st_mode)


@pytest.fixture(scope="module")
def agent_home(net_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    return enroll_agent(net_home, tmp_path_factory.mktemp("replay-agent"), "replayer", PASSWORD)[0]


@pytest.fixture(scope="module")
def history(agent_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A directory with a snapshot, then every kind of change by two users, and its copy after each step."""
    root = tmp_path_factory.mktemp("data").resolve() / "project"
    root.mkdir()
    (root / "keep.txt").write_bytes(b"kept as it was\n")
    (root / "sub").mkdir()
    (root / "sub" / "b.txt").write_bytes(b"b" * 300_000)  # several IPFS blocks
    (root / "empty").mkdir()
    os.symlink("keep.txt", root / "link")
    instants: list[tuple[int, dict[str, tuple[str, bytes | str, int]]]] = []

    def mark() -> None:
        time.sleep(0.002)
        instants.append((time.time_ns(), tree_of(root)))
        time.sleep(0.002)

    with AgentSession.open(agent_home, password=PASSWORD, batch_size=64) as session:
        early = Recorder(session, root)
        early.write("before-snapshot.txt", b"recorded before the snapshot\n")
        take_snapshot(session, str(root), HOST)
        mark()
        alice, bob = Recorder(session, root, "alice"), Recorder(session, root, "bob")
        alice.write("a.txt", b"version 1\n")
        mark()
        bob.write("a.txt", b"version 2 by bob\n")
        mark()
        alice.write("sub/b.txt", b"B" * 10 + b"b" * 299_990)
        mark()
        alice.truncate("sub/b.txt", 1000)
        mark()
        alice.rename("sub/b.txt", "moved/b.txt")
        mark()
        bob.chmod("keep.txt", 0o600)
        mark()
        alice.write("gone.txt", b"short-lived\n")
        mark()
        alice.delete("gone.txt")
        mark()
        bob.write("a.txt", b"version 3 by bob\n")
        alice.write("a.txt", b"version 4 by alice\n")
        mark()
        assert session.flush() is not None
    yield {"root": root, "instants": instants, "home": agent_home}


def replay(home: Home, location: Path | str, at: int, out: Path, user: str | None = None) -> dict[str, object]:
    with open_sources(home) as sources:
        result = replay_state(
            sources.records, sources.ipfs, sources.ledger, file_location(HOST, str(location)), at, out,
            user=user, cache_dir=sources.cache_dir,
        )  # fmt: skip
    return result.to_json()


def test_replay_at_every_instant_equals_the_copy(history: dict[str, object], tmp_path: Path) -> None:
    root, home = history["root"], history["home"]
    assert isinstance(root, Path) and isinstance(home, Home)
    instants = history["instants"]
    assert isinstance(instants, list)
    for number, (at, expected) in enumerate(instants):
        out = tmp_path / f"at-{number}"
        result = replay(home, root, at, out)
        assert result["ok"], result["breaks"]
        assert tree_of(out) == expected, f"instant {number}"
        assert result["snapshot"] is not None
        listed = {f["path"]: f["sha256"] for f in result["files"]}  # type: ignore[index, union-attr]
        for path, (kind, content, _) in expected.items():
            if kind == "file":
                assert listed[path] == hashlib.sha256(content).hexdigest()  # type: ignore[arg-type]
    # the records after the snapshot were applied, not re-read from disk
    last = replay(home, root, instants[-1][0], tmp_path / "last-again")
    assert last["applied"] == 10
    assert (tmp_path / "last-again" / "empty").is_dir()  # empty directories of the snapshot come back too


def test_a_single_file_and_a_subdirectory(history: dict[str, object], tmp_path: Path) -> None:
    root, home, instants = history["root"], history["home"], history["instants"]
    assert isinstance(root, Path) and isinstance(home, Home) and isinstance(instants, list)
    at, expected = instants[2]
    result = replay(home, root / "a.txt", at, tmp_path / "one")
    assert result["ok"]
    assert tree_of(tmp_path / "one") == {"a.txt": expected["a.txt"]}
    at, expected = instants[3]
    result = replay(home, root / "sub", at, tmp_path / "sub")
    assert tree_of(tmp_path / "sub") == {k.removeprefix("sub/"): v for k, v in expected.items() if k.startswith("sub/")}


def test_a_user_filtered_replay_diverges_and_says_where(history: dict[str, object], tmp_path: Path) -> None:
    root, home, instants = history["root"], history["home"], history["instants"]
    assert isinstance(root, Path) and isinstance(home, Home) and isinstance(instants, list)
    result = replay(home, root, instants[-1][0], tmp_path / "alice", user="alice")
    assert not result["ok"]
    breaks = result["breaks"]
    assert isinstance(breaks, list) and breaks
    first = breaks[0]
    # alice's "version 4" expected bob's version 3, which the filtered replay never applied
    assert first["path"] == "a.txt" and first["op"] == "write"
    assert "expects content" in first["detail"]
    assert (tmp_path / "alice" / "a.txt").read_bytes() == b"version 4 by alice\n"
    assert (tmp_path / "alice" / "keep.txt").stat().st_mode & 0o777 != 0o600  # bob's chmod not applied
    done = subprocess.run(
        [*CLI, "--home", str(home.root), "replay", "state", str(root), "--at", str(instants[-1][0] / 1e9),
         "--user", "alice", "--out", str(tmp_path / "cli-alice"), "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is False and data["breaks"][0]["record_id"] == first["record_id"]


def test_cli_json_keys_and_exit_status(history: dict[str, object], tmp_path: Path) -> None:
    root, home, instants = history["root"], history["home"], history["instants"]
    assert isinstance(root, Path) and isinstance(home, Home) and isinstance(instants, list)
    at, expected = instants[5]
    done = subprocess.run(
        [*CLI, "--home", str(home.root), "replay", "state", str(root), "--at", f"{at / 1e9:.9f}",
         "--out", str(tmp_path / "cli"), "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {"ok", "applied", "snapshot", "files"} <= set(data)
    assert data["ok"] is True and data["snapshot"]["snapshot_id"].startswith("b")
    assert {f["path"] for f in data["files"]} == set(expected)
    assert all({"path", "sha256"} <= set(f) for f in data["files"])


def test_content_comes_from_the_verified_cache_the_second_time(history: dict[str, object], tmp_path: Path) -> None:
    root, home, instants = history["root"], history["home"], history["instants"]
    assert isinstance(root, Path) and isinstance(home, Home) and isinstance(instants, list)
    at, expected = instants[-1]
    replay(home, root, at, tmp_path / "first")
    second = replay(home, root, at, tmp_path / "second")
    assert second["content_from_ipfs"] == 0 and second["content_from_cache"] >= 3
    # a tampered cache entry is detected, dropped and fetched again from IPFS
    cache = home.root / "cache" / "content"
    digest = hashlib.sha256(b"version 4 by alice\n").hexdigest()
    entry = cache / digest[:2] / digest
    entry.write_bytes(b"tampered\n")
    third = replay(home, root, at, tmp_path / "third")
    assert (tmp_path / "third" / "a.txt").read_bytes() == b"version 4 by alice\n"
    assert third["content_from_ipfs"] == 1
    assert tree_of(tmp_path / "third") == expected


# ------------------------------------------------------------------ safety


def test_out_must_be_empty_unless_forced_and_not_a_file(history: dict[str, object], tmp_path: Path) -> None:
    root, home, instants = history["root"], history["home"], history["instants"]
    assert isinstance(root, Path) and isinstance(home, Home) and isinstance(instants, list)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("do not lose me")
    with pytest.raises(OutputDirError, match="not empty"):
        replay(home, root, instants[-1][0], busy)
    assert (busy / "mine.txt").read_text() == "do not lose me"
    afile = tmp_path / "a-file"
    afile.write_text("x")
    done = subprocess.run(
        [*CLI, "--home", str(home.root), "replay", "state", str(root), "--at", str(instants[-1][0] // 10**9 + 1),
         "--out", str(afile)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "not a directory" in done.stderr
    with open_sources(home) as sources:
        result = replay_state(
            sources.records, sources.ipfs, sources.ledger, file_location(HOST, str(root)), instants[-1][0], busy,
            force=True,
        )  # fmt: skip
        assert result.ok and tree_of(busy) == instants[-1][1]
        live = tree_of(root)
        for overlapping in (root, root / "sub", root.parent):  # the live data is never the target, even forced
            with pytest.raises(OutputDirError, match="overlaps"):
                replay_state(
                    sources.records, sources.ipfs, sources.ledger, file_location(HOST, str(root)), instants[0][0],
                    overlapping, force=True,
                )  # fmt: skip
        assert tree_of(root) == live


def test_bad_input_is_one_line(history: dict[str, object], tmp_path: Path) -> None:
    root, home = history["root"], history["home"]
    assert isinstance(root, Path) and isinstance(home, Home)
    base = [*CLI, "--home", str(home.root), "replay", "state"]
    cases = [
        ([str(root), "--at", "2001-01-01", "--out", str(tmp_path / "o1")], "nothing is recorded"),
        (["/no/such/place", "--at", "2099-01-01", "--out", str(tmp_path / "o2")], "nothing is recorded"),
        ([str(root), "--at", "yesterday-ish", "--out", str(tmp_path / "o3")], "ISO 8601"),
    ]
    for args, needle in cases:
        done = subprocess.run([*base, *args], capture_output=True, text=True)
        assert done.returncode != 0, args
        assert done.stderr.count("\n") == 1 and needle in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    with pytest.raises(NothingRecorded):
        replay(home, root, 10**9, tmp_path / "o4")


def test_unreachable_content_leaves_nothing_partial(agent_home: Home, tmp_path: Path) -> None:
    root = (tmp_path / "lost").resolve()
    root.mkdir()
    with AgentSession.open(agent_home, password=PASSWORD) as session:
        recorder = Recorder(session, root)
        recorder.write("ok.txt", b"stored\n")
        recorder.write("lost.bin", os.urandom(64))
        assert session.flush() is not None
        batch = session.spool.last_batch()
        assert batch is not None
        ipfs = session.anchorer.ipfs
        # lose the content block: unpin what holds it and remove it from the daemon
        lost = CID.parse(cid_for_bytes((root / "lost.bin").read_bytes()))
        for pinned in (lost, CID.parse(batch.manifest_cid)):
            ipfs.unpin(pinned)
        ipfs._api.block._client.request("/block/rm", (lost.encode(),), decoder="json")
        assert not ipfs.has_block(lost)
    out = tmp_path / "out"
    done = subprocess.run(
        [*CLI, "--home", str(agent_home.root), "replay", "state", str(root), "--at", str(time.time() + 1),
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode != 0 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "not available" in errors[0] and "lost.bin" in errors[0]
    assert not out.exists()  # created by the replay, removed again: nothing partial


def test_malicious_manifests_and_symlinks_are_refused(tmp_path: Path) -> None:
    out_root = tmp_path / "out"
    for bad in ("../escape", "/etc/passwd", "a/../../b", "a//b"):
        entry = FileEntry(bad, "file", 1, b"\x00" * 32, 0o644, CID.parse(cid_for_bytes(b"x")), None)
        manifest = SnapshotManifest("file://h/d", CID.parse(cid_for_bytes(b"")), 1, "0x" + "0" * 40, None, [entry])
        with pytest.raises(ManifestError):
            manifest.encode()
        raw = dagcbor.encode({**manifest.to_dict(), "files": [manifest.to_dict()["files"][0]]})  # type: ignore[index]

        with pytest.raises(ManifestError):
            decode_snapshot_manifest(raw)
    assert symlink_escapes("a/link", "../../outside")
    assert symlink_escapes("link", "/etc/passwd")
    assert not symlink_escapes("a/link", "../sibling")
    from provanchor.replay.content import ContentWriter
    from provanchor.replay.paths import OutputTree

    empty = hashlib.sha256(b"").digest()
    tree = ReplayTree({"ok.txt": Node("file", empty, 0), "evil": Node("symlink", target="../x")})
    output = OutputTree(out_root)
    output.prepare()
    _, problems = restore_tree(tree, output, ContentWriter(None, None))
    assert [p for p in problems if p.startswith("evil: refused symlink")]
    assert sorted(os.listdir(out_root)) == ["ok.txt"]  # nothing written for the symlink
    output.clear()
    tree = ReplayTree({"fine.txt": Node("file", empty, 0), "../up.txt": Node("file", empty, 0)})
    with pytest.raises(UnsafePath):
        restore_tree(tree, output, ContentWriter(None, None))
    assert not (tmp_path / "up.txt").exists() and list(out_root.iterdir()) == []  # refused before any write


def test_symlinks_leading_out_of_the_tree_are_not_restored(agent_home: Home, tmp_path: Path) -> None:
    root = (tmp_path / "links").resolve()
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "data.txt").write_text("data\n")
    os.symlink("/etc/passwd", root / "absolute")
    os.symlink("../../../outside", root / "sub" / "climbing")
    os.symlink("data.txt", root / "sub" / "inside")
    with AgentSession.open(agent_home, password=PASSWORD) as session:
        take_snapshot(session, str(root), HOST)
    out = tmp_path / "out"
    done = subprocess.run(
        [*CLI, "--home", str(agent_home.root), "replay", "state", str(root), "--at", str(time.time() + 1),
         "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is False
    refused = sorted(p.split(":")[0] for p in data["problems"])
    assert refused == ["absolute", "sub/climbing"]
    assert tree_of(out) == {"sub/data.txt": ("file", b"data\n", 0o644), "sub/inside": ("symlink", "data.txt", 0)}


def test_records_naming_paths_outside_are_refused_before_any_replay() -> None:
    """A record whose location climbs out (or is relative) never decodes, so it never reaches the index or a replay."""
    from provanchor.errors import RecordError
    from provanchor.records import Record, decode_record

    honest = Record(
        agent="0x" + "11" * 20, seq=0, prev=None, time=1, host="h", location="file://h/data/a.txt", op=Op.CREATE,
        capture=Capture(backend=CaptureBackend.MANUAL, attributed=True),
        after=ContentRef(hashlib.sha256(b"x").digest(), 1, CID.parse(cid_for_bytes(b"x"))),
    )  # fmt: skip
    wire = dagcbor.decode(honest.canonical)
    assert isinstance(wire, dict)
    for bad in ("file://h/data/../etc/passwd", "file://h/data/./a", "file://h//etc/passwd", "file://h"):
        with pytest.raises(RecordError, match="location"):
            decode_record(dagcbor.encode({**wire, "location": bad}))
    with pytest.raises(RecordError, match="from"):
        decode_record(dagcbor.encode({**wire, "op": "rename", "from": "file://h/../../etc/shadow"}))
