"""The committed contract artifact is exactly what the pinned compiler makes of the source."""

from __future__ import annotations

import hashlib
import json

from provanchor.chain import compile as solc
from provanchor.chain.artifact import load_artifact


def test_committed_artifact_equals_a_fresh_compile_byte_for_byte() -> None:
    committed = solc.ARTIFACT_PATH.read_bytes()
    fresh = solc.render_artifact(solc.compile_source(solc.SOURCE_PATH.read_text(encoding="utf-8"))).encode()
    assert fresh == committed, "contracts/build is stale: run scripts/compile and commit the result"


def test_artifact_names_its_source_and_compiler() -> None:
    data = json.loads(solc.ARTIFACT_PATH.read_text(encoding="utf-8"))
    assert data["sourceSha256"] == hashlib.sha256(solc.SOURCE_PATH.read_bytes()).hexdigest()
    assert data["compiler"]["version"].startswith("0.8.")
    artifact = load_artifact()
    names = {entry.get("name") for entry in artifact.abi}
    assert {"anchor", "verifyInclusion", "verifyConsistency", "proposeAddAgent", "approve"} <= names
    assert artifact.bytecode.startswith("0x60")
