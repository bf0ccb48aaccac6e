"""Every error provanchor raises on purpose.

Library code raises these typed exceptions; the CLI edge turns any
`ProvanchorError` into one line on stderr and a non-zero exit. Keeping them in
one module lets programs that import provanchor catch precisely what they
expect without string matching.
"""

from __future__ import annotations


class ProvanchorError(Exception):
    """Base class: its message is a complete, user-facing sentence."""

    exit_code: int = 1


class UsageError(ProvanchorError):
    """The caller passed something that can never work (bad address, bad number...)."""

    exit_code = 2


class ConfigError(ProvanchorError):
    """Configuration or data directory is missing or inconsistent."""


class NetworkNotFound(ConfigError):
    """No network.json: the local network was never brought up, or --home is wrong."""


class ToolNotFound(ConfigError):
    """A pinned tool (anvil, solc, Kubo) cannot be found."""


class DaemonStartError(ProvanchorError):
    """A managed daemon (anvil, IPFS) did not start or did not become ready."""


class LockBusy(ProvanchorError):
    """Another live process holds a lock this command needs (anchoring a spool, the agent service)."""


class SpoolUnavailable(ProvanchorError):
    """The spool cannot be written (read-only file or directory, full disk, locked too long).

    Nothing already committed is lost: the error is raised before or instead of
    a commit, never after one.
    """


class ChainUnavailable(ProvanchorError):
    """The chain's JSON-RPC endpoint does not answer."""


class IpfsUnavailable(ProvanchorError):
    """The IPFS daemon's RPC API does not answer."""


class CompileError(ProvanchorError):
    """The Solidity compiler refused the contract or could not be run."""


class ArtifactError(ProvanchorError):
    """The compiled contract artifact is missing or does not match its source."""


class ContractError(ProvanchorError):
    """The ledger contract refused a call with one of its custom errors.

    `name` and `args` carry the decoded Solidity error so callers can branch on
    it (for example `NotActiveAgent`) without parsing the message.
    """

    def __init__(self, name: str, args: dict[str, object], message: str | None = None) -> None:
        self.name = name
        self.args_by_name = args
        rendered = ", ".join(f"{key}={_render(value)}" for key, value in args.items())
        super().__init__(message or f"contract refused: {name}({rendered})")


class TransactionFailed(ProvanchorError):
    """A transaction was mined but reverted without a decodable reason, or was dropped."""


def _render(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


class DagCborError(ProvanchorError, ValueError):
    """A value cannot be encoded, or bytes are not the canonical DAG-CBOR of any value.

    A ValueError too, so callers that parse untrusted bytes can catch either.
    """


class InvalidCid(UsageError):
    """A string or byte sequence that is not a CID provanchor understands."""


class BlockMismatch(ProvanchorError):
    """An IPFS daemon returned bytes whose hash does not match the CID asked for."""

    def __init__(self, cid: str, message: str | None = None) -> None:
        self.cid = cid
        super().__init__(message or f"IPFS returned wrong bytes for {cid}: refusing to use them")


class BlockNotFound(ProvanchorError):
    """IPFS could not provide a block (not stored, not pinned, daemon offline)."""

    def __init__(self, cid: str, message: str | None = None) -> None:
        self.cid = cid
        super().__init__(message or f"IPFS block {cid} is not available")


class RecordError(UsageError):
    """A provenance record is malformed; `field` names the offending field when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class SignatureError(ProvanchorError):
    """A signature does not recover to the expected signer, or cannot be parsed."""


class KeystoreError(ProvanchorError):
    """A keystore is unreadable, or its password is wrong."""


# ---------------------------------------------------------------- replay (issue 6)


class UnsafePath(ProvanchorError):
    """A manifest or record names a path (or symlink) that would write outside the replay target."""


class OutputDirError(UsageError):
    """`--out` is a file, cannot be created, or is not empty (without --force)."""


class ReplayError(ProvanchorError):
    """A replay cannot proceed: nothing recorded for the location, content unavailable..."""


class NothingRecorded(ReplayError):
    """No record and no snapshot of the location exists at or before the requested time."""


class UnknownRun(UsageError):
    """No anchored run record has this id."""


class CodeDrift(ReplayError):
    """The code on this machine differs from the code a run recorded (the differing parts are named)."""

    exit_code = 3


class MlError(ProvanchorError):
    """An ML lifecycle event (dataset, training, model, evaluation, inference) cannot be recorded or traced."""


class UnknownParent(MlError):
    """An ML event names a parent event that neither this tracker nor the index knows."""


class WrongParentKind(MlError, UsageError):
    """An ML event names a parent of the wrong kind (a model where a dataset belongs...)."""


class DatasetNotFound(MlError, UsageError):
    """A dataset (or model, code, hyperparameters) path that does not exist or is not a regular file."""


class UnsupportedDataset(MlError, UsageError):
    """A dataset whose rows provanchor cannot define (a Fortran-ordered or object .npy array...)."""


class InvalidMetric(MlError, UsageError):
    """A metric that is not a finite number (NaN, infinity, text, a boolean...)."""


class InvalidHyperparameter(MlError, UsageError):
    """A hyperparameter that is not a string, integer, boolean, finite number or a list of those."""


class UnsupportedCommitment(MlError, UsageError):
    """A commitment mode other than sha256, salted or hmac, or hmac without a usable key."""


class NotAMember(MlError):
    """A sample whose hash is not among a dataset's rows: no membership proof exists."""


class UnknownEvent(MlError):
    """An event id that is not a recorded, indexed ML event."""
