"""Compile `contracts/ProvenanceLedger.sol` into the committed artifact.

No native solc is reachable from this project's registries, so compilation goes
through py-solc-x's `compile_standard` pointed at `node/solc-json.js`, a small
solc-compatible front for the pinned solcjs (the official compiler built to
wasm). Its output is deterministic, which is what lets a test prove the
committed artifact equals a fresh compile byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from provanchor.errors import CompileError, ToolNotFound

CONTRACT_NAME = "ProvenanceLedger"
SOURCE_NAME = f"{CONTRACT_NAME}.sol"
REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_PATH = REPO_ROOT / "contracts" / SOURCE_NAME
ARTIFACT_PATH = REPO_ROOT / "contracts" / "build" / f"{CONTRACT_NAME}.json"

# Settings are part of the artifact: changing them changes the bytecode.
COMPILER_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 10000},
    "evmVersion": "cancun",
    "viaIR": True,
    "metadata": {"bytecodeHash": "none"},
}


def solc_front() -> Path:
    """The solc-compatible executable wrapping the pinned solcjs."""
    override = os.environ.get("PROVANCHOR_SOLC")
    path = Path(override) if override else REPO_ROOT / "node" / "solc-json.js"
    if not path.exists():
        raise ToolNotFound(f"solc front-end not found at {path}: run `make setup` (npm ci in node/)")
    if not (REPO_ROOT / "node" / "node_modules" / "solc").exists() and not override:
        raise ToolNotFound("solcjs is not installed: run `make setup` (npm ci in node/)")
    return path


def compile_source(source: str) -> dict[str, Any]:
    """Compile `source` and return the artifact as a JSON-ready dict."""
    import solcx  # imported here: it is only needed by developers who recompile

    standard_input = {
        "language": "Solidity",
        "sources": {SOURCE_NAME: {"content": source}},
        "settings": {
            **COMPILER_SETTINGS,
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
        },
    }
    front = solc_front()
    try:
        output = solcx.compile_standard(standard_input, solc_binary=str(front), allow_empty=True)
        version = _front_version(front)
    except Exception as exc:  # solcx raises its own hierarchy with multi-line text
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompileError(f"solc failed: {first}") from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("solc: " + errors[0].get("message", "compilation failed"))
    contract = output["contracts"][SOURCE_NAME][CONTRACT_NAME]
    return {
        "contractName": CONTRACT_NAME,
        "sourceName": f"contracts/{SOURCE_NAME}",
        "sourceSha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        "compiler": {"name": "solcjs", "version": version, "settings": COMPILER_SETTINGS},
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
    }


def _front_version(front: Path) -> str:
    import subprocess

    out = subprocess.run([str(front), "--version"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise CompileError(f"{front} --version printed no version line")


def render_artifact(artifact: dict[str, Any]) -> str:
    """The one serialisation of an artifact, so equal artifacts are equal bytes."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def compile_to_file(source_path: Path = SOURCE_PATH, artifact_path: Path = ARTIFACT_PATH) -> Path:
    artifact = compile_source(source_path.read_text(encoding="utf-8"))
    artifact_path.parent.mkdir(parents=True, exist_ok=True)
    artifact_path.write_text(render_artifact(artifact), encoding="utf-8")
    return artifact_path


if __name__ == "__main__":
    print(compile_to_file())
