"""Coverage-guided fuzzing (atheris, libFuzzer) of every decoder that reads untrusted bytes.

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python benchmarks/fuzz.py                      # 1,000,000 executions of each target
    .venv/bin/python benchmarks/fuzz.py --runs 20000 --target manifest

Each target runs in its own process (libFuzzer owns its process), seeded with
valid encodings and the kept corpus (tests/fuzz_corpus/<target>/). The rule is
the test suite's: a decoded value or a `ProvanchorError`, nothing else. A crash
is written to --crashes; minimise it, fix the decoder, and move the input into
tests/fuzz_corpus/<target>/ so tests/test_fuzz_decoders.py replays it forever.
Prints executions, seconds and executions per second per target.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")


def worker(name: str, runs: int, seconds: int, crashes: Path) -> None:
    """Inside the fuzzing process: instrument provanchor, then hand the target to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["provanchor"]):
        import fuzz_targets

    target = fuzz_targets.TARGETS[name]
    seeds = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    for number, seed in enumerate(target.seeds()):
        (seeds / f"seed-{number}").write_bytes(seed)
    for kept in fuzz_targets.corpus(name):
        (seeds / kept.name).write_bytes(kept.read_bytes())
    crashes.mkdir(parents=True, exist_ok=True)

    def one(data: bytes) -> None:
        fuzz_targets.check(target, data)

    atheris.Setup(
        [sys.argv[0], f"-runs={runs}", f"-max_total_time={seconds}", f"-artifact_prefix={crashes}/{name}-",
         "-max_len=4096", "-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1", str(seeds)],
        one,
    )
    atheris.Fuzz()


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":  # before anything imports provanchor uninstrumented
        options = dict(zip(sys.argv[3::2], sys.argv[4::2], strict=False))
        worker(sys.argv[2], int(options["--runs"]), int(options["--seconds"]), Path(options["--crashes"]))
        return 0
    from fuzz_targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="executions per target")
    parser.add_argument("--seconds", type=int, default=1800, help="time limit per target")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="only these (repeatable)")
    parser.add_argument("--crashes", type=Path, default=ROOT / "fuzz-crashes", help="where crashing inputs go")
    args = parser.parse_args()
    failed = False
    print(f"{'target':<18} {'executions':>11} {'seconds':>8} {'exec/s':>8}  outcome")
    for name in args.target or sorted(TARGETS):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, __file__, "--worker", name, "--runs", str(args.runs), "--seconds", str(args.seconds),
             "--crashes", str(args.crashes)],
            capture_output=True, text=True, check=False,
        )
        elapsed = time.monotonic() - started
        match = _DONE.search(done.stderr)
        executions = int(match.group(1)) if match else 0
        outcome = "no crash" if done.returncode == 0 else f"CRASH (exit {done.returncode}), see {args.crashes}"
        if done.returncode != 0:
            failed = True
            sys.stderr.write(done.stderr[-4000:])
        print(f"{name:<18} {executions:>11,} {elapsed:>8.0f} {executions / elapsed:>8,.0f}  {outcome}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
