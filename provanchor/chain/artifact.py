"""Loading the compiled ledger contract.

The artifact is committed at `contracts/build/ProvenanceLedger.json` and shipped
inside the wheel as `provanchor/chain/artifact/ProvenanceLedger.json`, so a
verifier installed from a wheel needs neither the repository nor a compiler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from provanchor.errors import ArtifactError

_REPO_ARTIFACT = Path(__file__).resolve().parents[2] / "contracts" / "build" / "ProvenanceLedger.json"


@dataclass(frozen=True)
class Artifact:
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    source_sha256: str


@lru_cache(maxsize=1)
def load_artifact() -> Artifact:
    raw = _read_artifact_text()
    try:
        data = json.loads(raw)
        return Artifact(
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            compiler_version=data["compiler"]["version"],
            source_sha256=data["sourceSha256"],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"contract artifact is malformed ({exc}): run scripts/compile") from exc


def _read_artifact_text() -> str:
    packaged = resources.files("provanchor.chain").joinpath("artifact/ProvenanceLedger.json")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    if _REPO_ARTIFACT.is_file():
        return _REPO_ARTIFACT.read_text(encoding="utf-8")
    raise ArtifactError("contract artifact ProvenanceLedger.json not found: run scripts/compile")
