"""Hostile bytes into every decoder of untrusted input: a value or a typed error, nothing else.

A bounded hypothesis run per target (random bytes and mutations of valid
seeds) and a replay of every kept input in tests/fuzz_corpus/, where the
crashes that fuzzing once found stay as regressions. The long, coverage-guided
run (1,000,000 executions per decoder) is benchmarks/fuzz.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz_targets import TARGETS, Target, check, corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = 250
# CBOR and protobuf heads that mean "a length follows", "indefinite", "tag", "break": where decoders go wrong.
_INTERESTING = [0x00, 0x17, 0x18, 0x1B, 0x1F, 0x40, 0x5F, 0x7F, 0x9F, 0xBF, 0xD8, 0xF6, 0xFF]


@st.composite
def mutated(draw: st.DrawFn, target: Target) -> bytes:
    """A valid seed with a few bytes flipped, cut, inserted or duplicated: deep paths, not just the first check."""
    data = bytearray(draw(st.sampled_from(target.seeds())))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            data.extend(draw(st.binary(min_size=1, max_size=8)))
            continue
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "cut", "insert", "truncate", "copy"]))
        if action == "set":
            data[at] = draw(st.sampled_from(_INTERESTING))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "truncate":
            del data[at:]
        else:
            source = draw(st.integers(0, len(data) - 1))
            data[at:at] = data[source : source + draw(st.integers(1, 16))]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_decode(name: str) -> None:
    """The seeds are valid: mutations start from a real encoding, so the fuzzing reaches past the first check."""
    target = TARGETS[name]
    for seed in target.seeds():
        assert target.run(seed) is not None


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_random_bytes_give_a_value_or_a_typed_error(name: str) -> None:
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.binary(max_size=512))
    def run(data: bytes) -> None:
        check(target, data)

    run()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutated_seeds_give_a_value_or_a_typed_error(name: str) -> None:
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutated(target))
    def run(data: bytes) -> None:
        check(target, data)

    run()


_KEPT = [pytest.param(name, path, id=f"{name}/{path.name}") for name in sorted(TARGETS) for path in corpus(name)]


@pytest.mark.parametrize(("name", "path"), _KEPT)
def test_kept_inputs_give_a_value_or_a_typed_error(name: str, path: Path) -> None:
    """Every crash fuzzing ever found, replayed: it must stay fixed."""
    check(TARGETS[name], path.read_bytes())


def test_the_corpus_holds_the_crashes_found() -> None:
    """The regressions are really there (a renamed folder must not silently drop them)."""
    assert {path.name for path in corpus("manifest")} >= {"prev-index-is-text", "agent-is-a-number"}
    assert {path.name for path in corpus("dag-cbor")} >= {"break-byte"}
