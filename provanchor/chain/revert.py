"""Turning revert data into named errors.

web3 8 hands back a custom error only as raw bytes (selector + ABI-encoded
arguments). Matching the selector against the ledger ABI gives the error's name
and typed arguments, so callers see `NotActiveAgent(account=0x...)` rather
than a hex blob.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from provanchor.errors import ContractError

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)


# Plain-language explanations of the ledger's refusals; the error's name always leads the
# message so scripts and people can both recognise it.
_EXPLANATIONS: dict[str, str] = {
    "NotGovernor": "{account} is not a governor",
    "NotActiveAgent": "{account} is not an active agent (never approved, or revoked)",
    "ZeroAddress": "the zero address cannot be used",
    "EmptyName": "an agent needs a non-empty name",
    "NameTooLong": "name is {length} bytes, at most {maxLength} allowed",
    "AgentAlreadyRegistered": "{agent} is already registered (a revoked key never returns)",
    "AgentNotActive": "{agent} is not an active agent",
    "AlreadyGovernor": "{account} is already a governor",
    "NotAGovernor": "{account} is not a governor",
    "InvalidQuorum": "a quorum of {quorum} is impossible with {governorCount} governor(s)",
    "UnknownProposal": "there is no proposal {proposalId}",
    "ProposalAlreadyExecuted": "proposal {proposalId} was already executed",
    "ProposalStale": "proposal {proposalId} is stale (a governor was removed since): propose it again",
    "AlreadyApproved": "{governor} already approved proposal {proposalId}",
    "QuorumNotReached": "proposal {proposalId} has {approvals} approval(s), the quorum is {quorum}",
    "SizeNotIncreasing": "a checkpoint must grow the log (anchored size {previousSize}, new size {newSize})",
    "CheckpointExists": "{agent} already anchored checkpoint {index}",
    "CheckpointMissing": "{agent} has not anchored checkpoint {index} yet",
    "ZeroRoot": "a checkpoint root cannot be zero",
    "SizeTooLarge": "log size {size} exceeds what the ledger stores",
    "InvalidConsistencyProof": (
        "the consistency proof from size {previousSize} to {newSize} does not verify: "
        "the new log does not extend the anchored one"
    ),
    "InvalidCid": "the CID is empty or too long",
    "NoCheckpoints": "{agent} has anchored no checkpoint",
    "UnknownCheckpoint": "{agent} has no checkpoint {index}",
    "NoCheckpointAtOrBefore": "{agent} has no checkpoint at or before time {timestamp}",
    "UnknownSnapshot": "no snapshot {index} for resource {resourceId}",
    "NoSnapshotAtOrBefore": "no snapshot of {resourceId} at or before time {timestamp}",
}


@dataclass(frozen=True)
class _ErrorSpec:
    name: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]


class RevertDecoder:
    """Maps 4-byte selectors of an ABI's custom errors to their definitions."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        self._specs: dict[bytes, _ErrorSpec] = {}
        for entry in abi:
            if entry.get("type") != "error":
                continue
            types = tuple(_canonical_type(item) for item in entry.get("inputs", []))
            names = tuple(item.get("name") or f"arg{i}" for i, item in enumerate(entry.get("inputs", [])))
            signature = f"{entry['name']}({','.join(types)})"
            self._specs[keccak(text=signature)[:4]] = _ErrorSpec(entry["name"], names, types)

    def decode(self, data: bytes) -> ContractError:
        """Name the error in `data`; unknown data still yields a ContractError, never a crash."""
        selector, payload = data[:4], data[4:]
        if not data:
            return ContractError("Reverted", {}, "contract reverted without a reason")
        if selector == _ERROR_STRING:
            (reason,) = abi_decode(["string"], payload)
            return ContractError("Error", {"reason": reason}, f"contract reverted: {reason}")
        if selector == _PANIC:
            (code,) = abi_decode(["uint256"], payload)
            return ContractError("Panic", {"code": code}, f"contract panicked with code {code:#x}")
        spec = self._specs.get(selector)
        if spec is None:
            return ContractError("Unknown", {"data": data}, f"contract reverted with unknown data 0x{data.hex()}")
        try:
            values = abi_decode(list(spec.arg_types), payload)
        except Exception:  # malformed payload for a known selector: still name it
            return ContractError(spec.name, {}, f"contract refused: {spec.name}")
        args = {
            name: _pretty(kind, value) for name, kind, value in zip(spec.arg_names, spec.arg_types, values, strict=True)
        }
        template = _EXPLANATIONS.get(spec.name)
        if template is None:
            return ContractError(spec.name, args)
        return ContractError(spec.name, args, f"{spec.name}: {template.format(**args)}")


def revert_data_from_exception(exc: BaseException) -> bytes | None:
    """Dig the revert bytes out of whatever web3 or the node raised."""
    candidates: list[Any] = [getattr(exc, "data", None)]
    candidates.extend(arg for arg in getattr(exc, "args", ()) if arg is not None)
    for candidate in candidates:
        found = _as_revert_bytes(candidate)
        if found is not None:
            return found
    return None


def _as_revert_bytes(candidate: Any) -> bytes | None:
    if isinstance(candidate, dict):
        for key in ("data", "error"):
            if key in candidate:
                found = _as_revert_bytes(candidate[key])
                if found is not None:
                    return found
        return None
    if isinstance(candidate, bytes):
        return candidate
    if isinstance(candidate, str) and candidate.startswith("0x"):
        try:
            return bytes.fromhex(candidate[2:])
        except ValueError:
            return None
    return None


def _canonical_type(item: dict[str, Any]) -> str:
    kind = str(item["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in item.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _pretty(kind: str, value: Any) -> Any:
    if kind == "address":
        return to_checksum_address(value)
    if kind.startswith("bytes") and isinstance(value, bytes):
        return "0x" + value.hex()
    return value
