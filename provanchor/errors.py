"""Every error provanchor raises on purpose, in one hierarchy with one exit code per kind.

Library code raises these typed exceptions; only the CLI edge turns them into a
message: one line on stderr and the exit code of the error's kind. Keeping
them all in this module lets programs that import provanchor catch precisely
what they expect without string matching, and keeps the exit codes in one
table (README, "Exit codes"):

| kind                  | class                | exit |
|-----------------------|----------------------|------|
| failed or refused     | `ProvanchorError`    | 1    |
| usage                 | `UsageError`         | 2    |
| proven incomplete     | `CodeDrift`...       | 3    |
| bad input (data)      | `BadInput`           | 65   |
| service unavailable   | `ServiceUnavailable` | 69   |
| internal (a bug)      | `InternalError`      | 70   |
| configuration         | `ConfigError`        | 78   |

Anything that is not a `ProvanchorError` reaching the CLI is a bug and exits
70 as well. The codes after 3 are the BSD sysexits a service manager knows.
"""

from __future__ import annotations

from typing import Any


class ProvanchorError(Exception):
    """Base class: its message is a complete, user-facing sentence."""

    exit_code: int = 1


class UsageError(ProvanchorError):
    """The caller passed something that can never work (bad address, bad number...)."""

    exit_code = 2


class BadInput(ProvanchorError):
    """Bytes or text given to provanchor are not what they claim to be (a record, CID, CAR, manifest...)."""

    exit_code = 65


class ServiceUnavailable(ProvanchorError):
    """A service provanchor needs (chain RPC, IPFS, the kernel's capture, a lock holder) cannot be used now."""

    exit_code = 69


class InternalError(ProvanchorError):
    """An invariant of provanchor itself does not hold: a bug, reported as such."""

    exit_code = 70


class ConfigError(ProvanchorError):
    """Configuration or data directory is missing or inconsistent."""

    exit_code = 78


class NetworkNotFound(ConfigError):
    """No network.json: the local network was never brought up, or --home is wrong."""


class ToolNotFound(ConfigError):
    """A pinned tool (anvil, solc, Kubo) cannot be found."""


class DaemonStartError(ServiceUnavailable):
    """A managed daemon (anvil, IPFS) did not start or did not become ready."""


class LockBusy(ServiceUnavailable):
    """Another live process holds a lock this command needs (anchoring a spool, the agent service)."""


class SpoolUnavailable(ServiceUnavailable):
    """The spool cannot be written (read-only file or directory, full disk, locked too long).

    Nothing already committed is lost: the error is raised before or instead of
    a commit, never after one.
    """


class ChainUnavailable(ServiceUnavailable):
    """The chain's JSON-RPC endpoint does not answer."""


class IpfsUnavailable(ServiceUnavailable):
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


class DagCborError(BadInput):
    """A value cannot be encoded, or bytes are not the canonical DAG-CBOR of any value."""


class VarintError(BadInput):
    """A varint is truncated, too long or (where minimality is required) not minimal."""


class CarError(BadInput):
    """Input is not a CARv1 archive this reader accepts, or it is truncated."""


class UnixFSError(BadInput):
    """A block is not the dag-pb / UnixFS file node it should be (or a file cannot be read)."""


class InvalidCid(BadInput):
    """A string or byte sequence that is not a CID provanchor understands."""


class BlockMismatch(BadInput):
    """An IPFS daemon returned bytes whose hash does not match the CID asked for."""

    def __init__(self, cid: str, message: str | None = None) -> None:
        self.cid = cid
        super().__init__(message or f"IPFS returned wrong bytes for {cid}: refusing to use them")


class BlockNotFound(ServiceUnavailable):
    """IPFS could not provide a block (not stored, not pinned, daemon offline)."""

    def __init__(self, cid: str, message: str | None = None) -> None:
        self.cid = cid
        super().__init__(message or f"IPFS block {cid} is not available")


class RecordError(BadInput):
    """A provenance record is malformed; `field` names the offending field when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class SignatureError(BadInput):
    """A signature does not recover to the expected signer, or cannot be parsed."""


class KeystoreError(ProvanchorError):
    """A keystore is unreadable, or its password is wrong."""


class ManifestError(RecordError):
    """A snapshot manifest is malformed or unsafe; ``field`` names the offending field."""


# ---------------------------------------------------------------- IPFS


class IpfsError(ProvanchorError):
    """The daemon refused or failed an operation (other than a missing block or being unreachable)."""


# ---------------------------------------------------------------- capture and the agent


class CaptureError(ProvanchorError):
    """Kernel event capture failed: a watcher that was working has failed."""


class CaptureUnavailable(CaptureError, ServiceUnavailable):
    """This capture backend cannot run on this kernel, filesystem or with these privileges: pick another."""


class InvalidWatchPath(CaptureError, UsageError):
    """A path to watch does not exist or is not a directory (the operator asked for something impossible)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(f"cannot watch {path!r}: {problem}")


class MalformedEvent(CaptureError):
    """The kernel returned bytes this parser does not understand; `events` holds what parsed before it."""

    def __init__(self, message: str, events: list[Any]) -> None:
        self.events = events
        super().__init__(message)


class ProcessTableUnavailable(ServiceUnavailable):
    """The process connector cannot be used (not root, or no CONFIG_PROC_EVENTS)."""


# ---------------------------------------------------------------- snapshots


class SnapshotError(ProvanchorError):
    """A directory cannot be snapshotted (unreadable, changed type under us, unsupported entry)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class UnsafeEntry(SnapshotError):
    """An entry whose name or type could not be restored safely; ``path`` names it."""


class CacheError(ConfigError):
    """The snapshot cache file cannot be opened, read or written."""


# ---------------------------------------------------------------- the index and its queries


class IndexMissing(ConfigError):
    """There is no index file where one was expected: it has to be built first."""


class ForeignIndex(ConfigError):
    """The index follows another chain or ledger contract than the one asked for."""


class NotAnIndex(ConfigError):
    """The file exists but is not a provanchor index (another database, or not SQLite)."""


class IndexOutdated(ConfigError):
    """The index was built with another schema version; it must be rebuilt."""


class BadTime(UsageError):
    """A time argument that is neither ISO 8601 nor Unix seconds, or is out of range."""


class BadCodeHash(UsageError):
    """A code hash that is not 32 bytes of hex."""


class BadAgent(UsageError):
    """An agent that is not a 20-byte hex address (or fails its EIP-55 checksum)."""


class BadOp(UsageError):
    """An op that records never carry."""


class BadTimeRange(UsageError):
    """A time window that ends before it starts."""


class BadLocation(UsageError):
    """A location that is neither a URI nor an absolute, normalized path."""


class BadLimit(UsageError):
    """A result limit below 1."""


class BadProgram(UsageError):
    """`--program` names no readable regular file (nor a command on PATH)."""


class BadDirection(UsageError):
    """A lineage direction other than upstream or downstream."""


class BadDepth(UsageError):
    """A negative lineage depth."""


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


class InteropError(ProvanchorError):
    """Exchanging provenance with the ecosystem's formats (OpenLineage, PROV, in-toto) failed."""


class BadLineageEvent(InteropError, BadInput):
    """A body that is not an OpenLineage RunEvent: the receiver answers 400 with this message."""


class LineageEventTooLarge(BadLineageEvent):
    """An OpenLineage event over the receiver's size limit (413)."""


class EmitFailed(InteropError, ServiceUnavailable):
    """OpenLineage events could not be delivered; they stay in the outbox and are retried."""


class BadAttestation(InteropError, BadInput):
    """A file that is not a DSSE envelope holding an in-toto statement."""


class NotInIndex(UsageError):
    """An id the index does not hold (a record, an agent, a location): the explorer answers 404."""
