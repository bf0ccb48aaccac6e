"""Replay speed: rebuild a 1 GB tree after 10,000 recorded changes, against `cp -r` and `dvc checkout`.

On its own local network (anvil + Kubo) this script

1. builds a tree of 1,000 files and 1 GiB (900 files of 1.1 MiB, 100 small
   "hot" files), snapshots it (`take_snapshot`: UnixFS on IPFS, manifest,
   record, contract anchor);
2. makes 10,000 changes to the real tree and records each exactly as the
   agent would (writes, appends and truncates of the hot files, creates,
   deletes, renames of any file, chmods), anchors them and syncs the index;
3. rebuilds the tree as of the 9,900th change with `replay_state`, cold
   (every byte from IPFS, the local content cache empty) and warm (the
   verified content cache filled by the cold run), checks the result equals
   the real tree at that instant, and times `cp -r` of the same tree and
   `dvc checkout` of it (`dvc add` first) in the same run;
4. changes 1% of the bytes (ten large files rewritten) and takes an
   incremental snapshot, against the time to hash those bytes.

Figures are printed; targets: rebuild at least half as fast as `cp -r` and
faster than `dvc checkout`; incremental snapshot within 3x the hashing time.
DVC comes from `pip install dvc`; without it (or with --no-dvc) that line is
skipped. Use --small for a quick run (100 MiB, 1,000 changes).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provanchor.formats.cid import CID
from provanchor.formats.unixfs import cid_for_bytes
from provanchor.home import Home
from provanchor.hostid import default_host_id
from provanchor.index.store import IndexStore
from provanchor.index.sync import Indexer
from provanchor.localnet import lifecycle
from provanchor.localnet.devagents import enroll_agent
from provanchor.network import load_network
from provanchor.pipeline.session import AgentSession
from provanchor.records import Capture, CaptureBackend, Change, ContentRef, Op, file_location
from provanchor.records.codehash import sha256_file
from provanchor.replay import open_sources, replay_state
from provanchor.snapshot.cache import FileCache
from provanchor.snapshot.service import cache_path, take_snapshot
from provanchor.snapshot.tree import build_tree

PASSWORD = "bench-replay"
HOST = default_host_id()


def ref(data: bytes, with_cid: bool = True) -> ContentRef:
    return ContentRef(hashlib.sha256(data).digest(), len(data), CID.parse(cid_for_bytes(data)) if with_cid else None)


def ref_of_file(path: Path) -> ContentRef:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").digest()
    return ContentRef(digest, path.stat().st_size)


class Changer:
    """Applies random changes to the real tree and records each one as the agent would."""

    def __init__(self, session: AgentSession, root: Path, rng: random.Random) -> None:
        self.session, self.root, self.rng = session, root, rng
        self.hot = sorted(p for p in root.rglob("hot-*") if p.is_file())
        self.large = sorted(p for p in root.rglob("big-*") if p.is_file())
        self.created = 0

    def record(self, op: Op, path: Path, content: bytes | None = None, **fields: object) -> None:
        change = Change(
            time=time.time_ns(), host=HOST, location=file_location(HOST, str(path)), op=op, user="bench",
            capture=Capture(backend=CaptureBackend.MANUAL, attributed=True), **fields,  # type: ignore[arg-type]
        )  # fmt: skip
        self.session.record(change, content)

    def step(self) -> None:
        choice = self.rng.random()
        if choice < 0.7 and self.hot:
            path = self.rng.choice(self.hot)
            old = path.read_bytes()
            kind = self.rng.random()
            if kind < 0.5:
                new, op = os.urandom(self.rng.randint(100, 8000)), Op.WRITE
            elif kind < 0.85:
                new, op = old + os.urandom(self.rng.randint(1, 500)), Op.WRITE
            else:
                new, op = old[: len(old) // 2], Op.TRUNCATE
            path.write_bytes(new)
            self.record(op, path, new, before=ref(old, False), after=ref(new))
        elif choice < 0.8:
            pool = self.hot if self.rng.random() < 0.7 else self.large
            path = self.rng.choice(pool)
            target = path.with_name(f"{path.name.split('.')[0]}.r{self.rng.randrange(10**6)}")
            content = ref_of_file(path) if path in self.large else ref(path.read_bytes())
            os.rename(path, target)
            pool[pool.index(path)] = target
            before = ContentRef(content.sha256, content.size)
            after = content if content.cid is not None else self._large_ref(target, content)
            self.record(Op.RENAME, target, before=before, after=after, from_location=file_location(HOST, str(path)))
        elif choice < 0.9:
            path = self.rng.choice(self.hot + self.large)
            mode = self.rng.choice([0o600, 0o640, 0o644, 0o755])
            os.chmod(path, mode)
            size_ref = ref(path.read_bytes(), False) if path in self.hot else ref_of_file(path)
            self.record(Op.CHMOD, path, before=size_ref, after=size_ref, mode=path.stat().st_mode)
        elif choice < 0.95 or len(self.hot) < 20:
            self.created += 1
            path = self.root / f"d{self.rng.randrange(10)}" / f"hot-new{self.created}"
            data = os.urandom(self.rng.randint(10, 4000))
            path.write_bytes(data)
            self.hot.append(path)
            self.record(Op.CREATE, path, data, after=ref(data), mode=path.stat().st_mode)
        else:
            path = self.rng.choice(self.hot)
            old = path.read_bytes()
            path.unlink()
            self.hot.remove(path)
            self.record(Op.DELETE, path, before=ref(old, False))

    def _large_ref(self, path: Path, content: ContentRef) -> ContentRef:
        from provanchor.formats.unixfs import cid_for_file

        return ContentRef(content.sha256, content.size, CID.parse(cid_for_file(path)))


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    found: dict[str, tuple[str, int]] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            with open(path, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            found[str(path.relative_to(root))] = (digest, path.stat().st_mode & 0o7777)
    return found


def kubo_add_seconds(net: Home, tree: Path, expected_root: str | None) -> float:
    """`ipfs add -r` of `tree` on the network's running Kubo (its CLI talks to the daemon); checks the root."""
    from provanchor.localnet.tools import find_ipfs

    env = {**os.environ, "IPFS_PATH": str(net.ipfs_dir / "repo")}
    started = time.perf_counter()
    done = subprocess.run(
        [str(find_ipfs().path), "add", "-r", "-Q", "--cid-version=1", "--raw-leaves", str(tree)],
        env=env, capture_output=True, text=True, check=True,
    )
    seconds = time.perf_counter() - started
    if expected_root is not None and done.stdout.strip() != expected_root:
        raise SystemExit(f"ipfs add gave {done.stdout.strip()}, the snapshot {expected_root}: CIDs differ")
    return seconds


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def drop_caches_note() -> str:
    return "page cache warm for all three (the tree was just written or read)"


def find_dvc() -> str | None:
    for candidate in (shutil.which("dvc"), str(Path(__file__).resolve().parent.parent / ".venv-dvc" / "bin" / "dvc")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def dvc_checkout_seconds(dvc: str, source: Path, work: Path) -> tuple[float, float]:
    """(dvc add seconds, dvc checkout seconds) for a copy of `source` in a fresh DVC project."""
    project = work / "dvc-project"
    project.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=project, check=True, env=env)
    shutil.copytree(source, project / "data", symlinks=True)
    added = timed(lambda: subprocess.run([dvc, "add", "-q", "data"], cwd=project, check=True, env=env))
    shutil.rmtree(project / "data")
    checkout = timed(lambda: subprocess.run([dvc, "checkout", "-q"], cwd=project, check=True, env=env))
    assert tree_digest(project / "data").keys() == tree_digest(source).keys(), "dvc checkout differs"
    return added, checkout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="100 MiB and 1,000 changes")
    parser.add_argument("--no-dvc", action="store_true")
    parser.add_argument("--changes", type=int, default=None, help="number of recorded changes (default 10,000)")
    parser.add_argument("--profile", action="store_true", help="print where the warm replay spends its time")
    args = parser.parse_args()
    scale = 10 if args.small else 1
    large_files, large_size = 900, (1024 * 1024 + 100 * 1024) // scale
    changes = args.changes or 10_000 // scale
    rng = random.Random(7)
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    home = Home(work / "net")
    lifecycle.up(home)
    try:
        agent_home = enroll_agent(home, work / "agent", "bench-replay", PASSWORD)[0]
        root = work / "tree"
        for d in range(10):
            (root / f"d{d}").mkdir(parents=True)
        for i in range(large_files):
            (root / f"d{i % 10}" / f"big-{i}.bin").write_bytes(os.urandom(large_size))
        for i in range(100):
            (root / f"d{i % 10}" / f"hot-{i}").write_bytes(os.urandom(rng.randint(100, 8000)))
        total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        print(f"tree: {sum(1 for p in root.rglob('*') if p.is_file())} files, {total / 2**20:.0f} MiB")
        with AgentSession.open(agent_home, password=PASSWORD, batch_size=1024) as session:
            started = time.perf_counter()
            first = take_snapshot(session, str(root), HOST)
            elapsed = time.perf_counter() - started
            print(f"first snapshot: {elapsed:.1f} s ({first.files} files, {first.files_read} read)")
            # Kubo's own importer on the same daemon, over a twin tree (same shape, fresh bytes: blocks it
            # must store, as the snapshot had to), and the snapshot's own tree to check the root CID.
            twin = work / "twin"
            shutil.copytree(root, twin, copy_function=lambda src, dst: Path(dst).write_bytes(
                os.urandom(Path(src).stat().st_size)))
            add_s = kubo_add_seconds(home, twin, None)
            kubo_add_seconds(home, root, first.root.encode())
            shutil.rmtree(twin)
            print(
                f"ipfs add -r --cid-version=1 --raw-leaves of a same-shaped tree: {add_s:.1f} s; "
                f"snapshot take at {add_s / elapsed:.2f}x its speed (target >= 0.8x; the snapshot also records, "
                f"anchors and anchors the snapshot in the contract)"
            )
            changer = Changer(session, root, rng)
            started = time.perf_counter()
            cut = changes - changes // 100
            at = 0
            for number in range(changes):
                changer.step()
                if number + 1 == cut:
                    time.sleep(0.001)
                    at = time.time_ns()
                    expected = tree_digest(root)
                    shutil.copytree(root, work / "at-cut", symlinks=True)
                    time.sleep(0.001)
            recorded = time.perf_counter() - started
            started = time.perf_counter()
            session.flush(timeout=600)
            print(f"{changes} changes: recorded in {recorded:.1f} s, anchored in {time.perf_counter() - started:.1f} s")
        network = load_network(agent_home)
        with IndexStore.open(agent_home.root / "index.sqlite", must_exist=False) as store:
            started = time.perf_counter()
            report = Indexer(store, network).sync()
            print(f"index sync: {report.records} records in {time.perf_counter() - started:.1f} s")
        location = file_location(HOST, str(root))
        results: dict[str, float] = {}
        for label, cache in (("cold", "cold"), ("warm", "warm")):
            out = work / f"replay-{label}"
            with open_sources(agent_home, sync=False, cache=True) as sources:
                if label == "cold" and sources.cache_dir is not None:
                    shutil.rmtree(sources.cache_dir, ignore_errors=True)
                profiler = cProfile.Profile() if args.profile and label == "warm" else None
                started = time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                result = replay_state(sources.records, sources.ipfs, sources.ledger, location, at, out,
                                      cache_dir=sources.cache_dir)  # fmt: skip
                results[label] = time.perf_counter() - started
                if profiler is not None:
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
            assert result.ok, [b.to_json() for b in result.breaks[:3]] + result.problems[:3]
            assert tree_digest(out) == expected, f"{label} replay differs from the tree at the cut"
            print(
                f"replay ({cache}): {results[label]:.2f} s, {len(result.steps)} records applied on the snapshot, "
                f"{result.from_ipfs} contents from IPFS, {result.from_cache} from the verified cache"
            )
            shutil.rmtree(out)
        copy_target = work / "cp-copy"
        results["cp"] = timed(lambda: subprocess.run(["cp", "-r", str(work / "at-cut"), str(copy_target)], check=True))
        shutil.rmtree(copy_target)
        print(f"cp -r of the same tree: {results['cp']:.2f} s ({drop_caches_note()})")
        dvc = None if args.no_dvc else find_dvc()
        if dvc is not None:
            added, checkout = dvc_checkout_seconds(dvc, work / "at-cut", work)
            results["dvc"] = checkout
            print(f"dvc add: {added:.2f} s; dvc checkout: {checkout:.2f} s")
        else:
            print("dvc checkout: skipped (install it: python -m venv .venv-dvc && .venv-dvc/bin/pip install dvc)")
        for label in ("cold", "warm"):
            line = f"rebuild {label}: {results['cp'] / results[label]:.2f}x the speed of cp -r (target >= 0.5x)"
            if "dvc" in results:
                line += f", {results['dvc'] / results[label]:.2f}x the speed of dvc checkout (target > 1x)"
            print(line)
        # ------------------------------------------------------------ incremental snapshot
        with AgentSession.open(agent_home, password=PASSWORD) as session:
            take_snapshot(session, str(root), HOST)  # the baseline: the tree after all the changes
        time.sleep(1.1)  # a file changed within a second of a scan is re-read by the next one (racy mtime)
        changed = sorted(root.rglob("big-*"))[:10]
        for path in changed:
            path.write_bytes(os.urandom(path.stat().st_size))
        changed_bytes = sum(p.stat().st_size for p in changed)
        time.sleep(1.1)
        hashing = min(timed(lambda: [sha256_file(p) for p in changed]) for _ in range(3))
        agent_dir = agent_home.root / "agents" / next(iter(os.listdir(agent_home.root / "agents")))
        cache = FileCache(cache_path(agent_dir, location))
        try:
            build = timed(lambda: build_tree(root, cache))
        finally:
            cache.discard()
            cache.close()
        with AgentSession.open(agent_home, password=PASSWORD) as session:
            started = time.perf_counter()
            second = take_snapshot(session, str(root), HOST)
            full = time.perf_counter() - started
        print(
            f"incremental snapshot after {changed_bytes / total:.1%} of the bytes changed "
            f"({second.files_read} files read, {second.files_reused} reused): tree {build * 1000:.0f} ms, "
            f"with upload + record + anchors {full * 1000:.0f} ms; hashing those bytes {hashing * 1000:.0f} ms "
            f"-> tree {build / hashing:.2f}x, whole {full / hashing:.2f}x the hashing time (target <= 3x)"
        )
    finally:
        lifecycle.down(home)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
