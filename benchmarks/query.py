"""Benchmark: index build rate, query latency and lineage walks at 1,000,000 records.

Usage: .venv/bin/python benchmarks/query.py [--records N] [--batch B] [--repeat R] [--limit L] [--keep DIR]

Records are real ones (``Record.from_change`` + ``encode_record``) from 64
agents on 64 hosts, 400 users, 1,000 code identities and 250,000 paths under
100 projects, with interleaved times; about 2% of the changes are runs (1-3
inputs drawn from earlier runs' outputs, 1-2 outputs each written by a record
carrying the run id), plus a 12-step chain of runs for the lineage figure.

"build" is the time spent in ``IndexStore.add_records`` (one transaction
per call) — what the indexer pays per record once it has verified it;
generating the records is reported separately. It is measured three ways:
the first ``--records`` inside ``bulk_load()`` (a first sync or rebuild:
query indexes built at the end, included in the figure), then 10% more with
indexes maintained in ``--batch``-record transactions (steady state), then
20,000 more in 1,024-record transactions (one agent checkpoint each).

Each query shape runs ``--repeat`` times with values drawn from records actually in the index
(so every query has matches) and ``LIMIT --limit``, the page size a CLI shows;
"rows" is the mean number returned. "plan" says whether SQLite's plan
searches an index (never a full scan of ``records``).

Targets: build >= 20,000 records/s, every query p95 <= 20 ms, a depth-10
lineage walk <= 100 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provanchor.formats.cid import CID, RAW
from provanchor.index import (
    Checkpoint,
    IndexedInput,
    IndexStore,
    QueryFilter,
    lineage,
    query_plan,
    run_query,
)
from provanchor.records import (
    Capture,
    CaptureBackend,
    Change,
    CodeFile,
    CodeIdentity,
    ContentRef,
    Op,
    Record,
    encode_record,
    file_location,
)

T0 = 1_700_000_000 * 10**9
AGENTS = ["0x" + hashlib.sha256(f"agent {i}".encode()).digest()[:20].hex() for i in range(64)]
HOSTS = [f"host-{i:02d}" for i in range(64)]
USERS = [f"user{i:03d}" for i in range(400)]
SUBDIRS = ("raw", "clean", "features", "models", "reports")
CHAIN_STEPS = 12
BATCH = 20_000
TX = hashlib.sha256(b"tx").digest()
ROOT = hashlib.sha256(b"root").digest()
ATTRIBUTED = Capture(CaptureBackend.FANOTIFY, True)
RUN_CAPTURE = Capture(CaptureBackend.RUN, True)


def _codes() -> list[CodeIdentity]:
    python = CodeFile("/usr/bin/python3.11", hashlib.sha256(b"python").digest())
    return [
        CodeIdentity(
            exe=python,
            scripts=(CodeFile(f"/opt/jobs/job{i:04d}.py", hashlib.sha256(f"job {i}".encode()).digest()),),
            argv=("python3", f"/opt/jobs/job{i:04d}.py", "--config", "prod.toml"),
            image=None,
        )
        for i in range(1000)
    ]


CODES = _codes()


def _path(rnd: random.Random) -> str:
    return f"/data/proj{rnd.randrange(100)}/{rnd.choice(SUBDIRS)}/part-{rnd.randrange(500):05d}.csv"


def _content(tag: int) -> ContentRef:
    digest = hashlib.sha256(tag.to_bytes(8, "big")).digest()
    return ContentRef(digest, 4096 + tag % 1000, CID(1, RAW, digest))


@dataclass
class Sample:
    """Values seen in generated records, to draw query parameters that match something."""

    rows: list[tuple[str, str, str, str, bytes, int, str]] = field(
        default_factory=list
    )  # agent host user path code t op
    runs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


class Generator:
    """Each agent's chained log (seq, prev), interleaved in time across agents."""

    def __init__(self, seed: int = 7) -> None:
        self.rnd = random.Random(seed)
        self.seq = [0] * len(AGENTS)
        self.prev: list[bytes | None] = [None] * len(AGENTS)
        self.time = T0
        self.count = 0
        self.sample = Sample()
        self.pool: list[tuple[int, str]] = []  # recent run outputs (agent index, path): inputs of later runs
        self.checkpoints = [Checkpoint(a, 0, 10**7, ROOT, "bafyreimanifest", 1, TX, T0) for a in AGENTS]

    def _emit(self, a: int, change: Change) -> IndexedInput:
        record = Record.from_change(change, AGENTS[a], self.seq[a], self.prev[a])
        encode_record(record)  # what the indexer holds: decoded records with their canonical bytes
        self.seq[a] += 1
        self.prev[a] = record.hash
        self.count += 1
        return IndexedInput(record, self.checkpoints[a])

    def _tick(self) -> int:
        self.time += self.rnd.randrange(1, 200_000_000)  # ~100 ms apart on average: ~28 hours of history
        return self.time

    def change(self) -> IndexedInput:
        rnd = self.rnd
        a = rnd.randrange(len(AGENTS))
        path = _path(rnd)
        t = self._tick()
        kind = rnd.random()
        user, code = rnd.choice(USERS), rnd.choice(CODES)
        extra: dict[str, object] = {}
        if kind < 0.70:
            op = Op.WRITE
        elif kind < 0.85:
            op, extra = Op.CREATE, {"mode": 0o100644}
        elif kind < 0.92:
            op = Op.DELETE
        elif kind < 0.97:
            op, extra = Op.RENAME, {"from_location": file_location(HOSTS[a], path + ".tmp")}
        else:
            op, extra = Op.CHMOD, {"mode": 0o100600}
        change = Change(
            time=t,
            host=HOSTS[a],
            location=file_location(HOSTS[a], path),
            op=op,
            capture=ATTRIBUTED,
            user=user,
            uid=1000,
            before=None if op is Op.CREATE else _content(self.count + 1),
            after=None if op is Op.DELETE else _content(self.count),
            code=code,
            pid=1000 + self.count % 30000,
            **extra,  # type: ignore[arg-type]
        )
        item = self._emit(a, change)
        if self.count % 997 == 0:
            self.sample.rows.append((AGENTS[a], HOSTS[a], user, path, code.digest, t, op.value))
        return item

    def run(self, a: int, run_id: str, inputs: list[str], outputs: list[str]) -> list[IndexedInput]:
        """A run of agent ``a``: one write per output (carrying the run id), then the run record."""
        host, code, user = HOSTS[a], self.rnd.choice(CODES), self.rnd.choice(USERS)
        items = []
        for path in outputs:
            change = Change(
                time=self._tick(),
                host=host,
                location=file_location(host, path),
                op=Op.WRITE,
                capture=RUN_CAPTURE,
                user=user,
                after=_content(self.count),
                code=code,
                pid=4242,
                run=run_id,
            )
            items.append(self._emit(a, change))

        def side(path: str) -> dict[str, object]:
            ref = _content(hash(path) & 0xFFFF)
            return {"location": file_location(host, path), "sha256": ref.sha256, "size": ref.size, "cid": ref.cid}

        payload: dict[str, object] = {
            "run_id": run_id,
            "name": None,
            "argv": list(code.argv),
            "cwd": "/data",
            "inputs": [side(p) for p in inputs],
            "outputs": [side(p) for p in outputs],
            "exit_code": 0,
        }
        change = Change(
            time=self._tick(),
            host=host,
            location=f"run://{host}/{run_id}",
            op=Op.RUN,
            capture=RUN_CAPTURE,
            user=user,
            code=code,
            run=run_id,
            payload=payload,
        )
        items.append(self._emit(a, change))
        self.sample.runs.append(run_id)
        self.sample.outputs.append(file_location(host, outputs[0]))
        return items

    def random_run(self) -> list[IndexedInput]:
        rnd = self.rnd
        a = rnd.randrange(len(AGENTS))
        run_id = hashlib.md5(f"run {self.count}".encode()).hexdigest()
        same_host = [p for agent, p in self.pool[-400:] if agent == a]
        inputs = rnd.sample(same_host, min(len(same_host), rnd.randint(1, 2))) or [_path(rnd)]
        inputs.append(f"/data/proj{rnd.randrange(100)}/raw/params.json")
        outputs = [_path(rnd) for _ in range(rnd.randint(1, 2))]
        self.pool.extend((a, p) for p in outputs)
        del self.pool[:-4000]
        return self.run(a, run_id, inputs, outputs)

    def chain(self) -> list[IndexedInput]:
        """step00.csv -> c01 -> step01.csv -> ... -> c12 -> step12.csv, each step also reading a config."""
        items = []
        for step in range(1, CHAIN_STEPS + 1):
            inputs = [f"/data/chain/step{step - 1:02d}.csv", f"/data/chain/config{step:02d}.toml"]
            items += self.run(0, f"chain-{step:02d}", inputs, [f"/data/chain/step{step:02d}.csv"])
        return items

    def batches(self, total: int, size: int) -> Iterator[list[IndexedInput]]:
        """Batches of ``size`` until ``total`` records exist in all (the chain comes first, once)."""
        batch = self.chain() if self.count == 0 else []
        while self.count < total:
            if self.rnd.random() < 0.02 / 2.5:  # a run emits ~2.5 records: ~2% of records belong to runs
                batch += self.random_run()
            else:
                batch.append(self.change())
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch


# ------------------------------------------------------------------ measuring


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Result:
    name: str
    p50: float
    p95: float
    rows: float
    plan: str


def measure(
    store: IndexStore, name: str, make: Callable[[random.Random], QueryFilter], repeat: int, rnd: random.Random
) -> Result:
    filters = [make(rnd) for _ in range(repeat)]
    plan = query_plan(store, filters[0])
    records_steps = [step for step in plan if "records" in step]
    indexed = all(step.startswith("SEARCH records USING") for step in records_steps)
    index_names = sorted({step.split("INDEX ")[1].split(" ")[0] for step in records_steps if "INDEX " in step})
    run_query(store, filters[0])  # warm the statement cache
    times, rows = [], []
    for query in filters:
        t0 = time.perf_counter()
        rows.append(len(run_query(store, query)))
        times.append((time.perf_counter() - t0) * 1000)
    return Result(
        name,
        statistics.median(times),
        percentile(times, 0.95),
        statistics.fmean(rows),
        ("index " if indexed else "SCAN ") + ",".join(index_names),
    )


def query_shapes(sample: Sample, limit: int | None) -> list[tuple[str, Callable[[random.Random], QueryFilter]]]:
    rows = sample.rows
    hour = 3600 * 10**9

    def pick(rnd: random.Random) -> tuple[str, str, str, str, bytes, int, str]:
        return rnd.choice(rows)

    def project(path: str) -> str:
        return "/".join(path.split("/")[:3])  # /data/projN: 1% of all files; /data/proj1 is not /data/proj10

    def subdir(path: str) -> str:
        return "/".join(path.split("/")[:4])  # /data/projN/sub: 0.2%

    def f(**kwargs: object) -> QueryFilter:
        return QueryFilter(limit=limit, **kwargs)  # type: ignore[arg-type]

    return [
        ("user", lambda r: f(user=pick(r)[2])),
        ("location (URI)", lambda r: f(location=file_location((p := pick(r))[1], p[3]))),
        ("location (path, any host)", lambda r: f(location=pick(r)[3])),
        ("under (URI, project)", lambda r: f(under=file_location((p := pick(r))[1], project(p[3])))),
        ("under (path, project)", lambda r: f(under=project(pick(r)[3]))),
        ("under (path, subdir)", lambda r: f(under=subdir(pick(r)[3]))),
        ("since+until (1 h)", lambda r: f(since_ns=(t := pick(r)[5]), until_ns=t + hour)),
        ("since", lambda r: f(since_ns=pick(r)[5])),
        ("until", lambda r: f(until_ns=pick(r)[5])),
        ("code_hash", lambda r: f(code_hash=pick(r)[4])),
        ("agent", lambda r: f(agent=pick(r)[0])),
        ("op (delete)", lambda r: f(op="delete")),
        ("op (run)", lambda r: f(op="run")),
        ("run_id", lambda r: f(run_id=r.choice(sample.runs))),
        # The combinations used in tests/test_index_store.py.
        ("user+op", lambda r: f(user=pick(r)[2], op="write")),
        ("agent+under", lambda r: f(agent=(p := pick(r))[0], under=project(p[3]))),
        ("code_hash+since+until", lambda r: f(code_hash=(p := pick(r))[4], since_ns=p[5] - hour, until_ns=p[5] + hour)),
        ("under+since+until", lambda r: f(under=project((p := pick(r))[3]), since_ns=p[5], until_ns=p[5] + hour)),
        ("location (path)+agent", lambda r: f(location=(p := pick(r))[3], agent=p[0])),
        ("run_id+op", lambda r: f(run_id=r.choice(sample.runs), op="run")),
        ("user+under+op", lambda r: f(user=(p := pick(r))[2], under=project(p[3]), op="write")),
        (
            "agent+op+code_hash+under",
            lambda r: f(agent=(p := pick(r))[0], op=p[6], code_hash=p[4], under=project(p[3])),
        ),
    ]


def lineage_figures(
    store: IndexStore, sample: Sample, repeat: int, rnd: random.Random
) -> list[tuple[str, float, float, float]]:
    figures = []
    last = file_location(HOSTS[0], f"/data/chain/step{CHAIN_STEPS:02d}.csv")
    first = file_location(HOSTS[0], "/data/chain/step00.csv")
    for name, location, direction in (
        (f"chain upstream from step{CHAIN_STEPS}", last, "upstream"),
        ("chain downstream from step00", first, "downstream"),
    ):
        times, nodes = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            graph = lineage(store, location, direction, 10)
            times.append((time.perf_counter() - t0) * 1000)
            nodes.append(len(graph.nodes))
        figures.append((name, statistics.median(times), percentile(times, 0.95), statistics.fmean(nodes)))
    times, nodes = [], []
    for _ in range(repeat):
        location = rnd.choice(sample.outputs)
        t0 = time.perf_counter()
        graph = lineage(store, location, "upstream", 10)
        times.append((time.perf_counter() - t0) * 1000)
        nodes.append(len(graph.nodes))
    figures.append(
        ("random run output, upstream", statistics.median(times), percentile(times, 0.95), statistics.fmean(nodes))
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--limit", type=int, default=100, help="LIMIT of each query (0: none)")
    parser.add_argument("--batch", type=int, default=BATCH, help="records per add_records transaction")
    parser.add_argument("--keep", type=Path, default=None, help="build the index here and keep it")
    args = parser.parse_args()
    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="provanchor-query-bench-"))
    db = directory / "index.db"
    IndexStore.destroy(db)
    print(f"records: {args.records:,}  (python {sys.version.split()[0]}, {os.cpu_count()} CPUs, index {db})")
    try:
        run(db, args.records, args.batch, args.repeat, args.limit or None)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


def timed_build(store: IndexStore, generator: Generator, total: int, size: int) -> tuple[int, float, float]:
    """Generate records up to ``total`` and add them in ``size`` batches: (records, generate s, add_records s)."""
    generate_s = insert_s = 0.0
    before = generator.count
    batches = generator.batches(total, size)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        t1 = time.perf_counter()
        if batch is None:
            return generator.count - before, generate_s, insert_s
        store.add_records(batch)
        insert_s += time.perf_counter() - t1
        generate_s += t1 - t0


def run(db: Path, total: int, batch_size: int, repeat: int, limit: int | None) -> None:
    generator = Generator()
    store = IndexStore(db)
    store.bind(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    t_start = time.perf_counter()
    print("build                                          records   add_records s   records/s")
    # A first sync (or rebuild): records go in without the query indexes, which are built at the end.
    with store.bulk_load():
        n, generate_s, insert_s = timed_build(store, generator, total, batch_size)
        t1 = time.perf_counter()
    finish_s = time.perf_counter() - t1
    insert_s += finish_s
    print(f"{'first sync, bulk_load() (incl. index build)':46} {n:8,} {insert_s:15.1f} {n / insert_s:11,.0f}")
    print(f"{'  of which building indexes + ANALYZE':46} {'':8} {finish_s:15.1f}")
    # Then the steady state: indexes maintained on every insert, into an index of `total` records.
    for label, extra, size in (
        (f"incremental, {batch_size:,}-record transactions", total // 10, batch_size),
        ("incremental, 1,024-record transactions", 20_000, 1024),
    ):
        n, gen_s, insert_s = timed_build(store, generator, generator.count + extra, size)
        generate_s += gen_s
        print(f"{label:46} {n:8,} {insert_s:15.1f} {n / insert_s:11,.0f}")
    count = store.record_count()
    size_mib = sum(Path(f"{db}{s}").stat().st_size for s in ("", "-wal") if Path(f"{db}{s}").exists()) / 2**20
    print(
        f"index: {count:,} records ({len(generator.sample.runs):,} runs), {size_mib:,.0f} MiB; "
        f"generating the records (Record.from_change + encode_record): {count / generate_s:,.0f}/s; "
        f"wall {time.perf_counter() - t_start:.0f} s"
    )
    print()

    rnd = random.Random(11)
    header = f"{'query':32} {'p50 ms':>8} {'p95 ms':>8} {'rows':>7}  plan"
    print(f"queries: {repeat} runs each, LIMIT {limit}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, make in query_shapes(generator.sample, limit):
        result = measure(store, name, make, repeat, rnd)
        worst = max(worst, result.p95)
        print(f"{result.name:32} {result.p50:8.2f} {result.p95:8.2f} {result.rows:7.1f}  {result.plan}")
    print()
    header = f"{'lineage, depth 10':32} {'p50 ms':>8} {'p95 ms':>8} {'nodes':>7}"
    print(header)
    print("-" * len(header))
    for name, p50, p95, nodes in lineage_figures(store, generator.sample, repeat, rnd):
        print(f"{name:32} {p50:8.2f} {p95:8.2f} {nodes:7.1f}")
    print()
    print(f"worst query p95: {worst:.2f} ms (target <= 20 ms)")
    store.close()


if __name__ == "__main__":
    main()
