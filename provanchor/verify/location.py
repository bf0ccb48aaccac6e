"""`verify location LOCATION --at T`: the state replay produces, from records verified by the auditor.

The replay engine (`provanchor.replay`) reads records from an index. An
index handed over by someone else could leave a record out, so this builds a
fresh one, in a temporary directory, from the chain and IPFS alone (the
indexer checks every manifest, root, seq/prev link and signature with the
same functions as `verify agent`). Then the location is replayed into a
scratch directory and the report says whether every record's ``before``
matched the state the records before it produced, whether the snapshot it
started from matches its record and the contract's anchor, and whether every
restored file's content has the sha256 its last record carries.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from provanchor.errors import NothingRecorded, ReplayError, UsageError
from provanchor.index.store import IndexStore
from provanchor.index.sync import Indexer
from provanchor.index.timeparse import format_time
from provanchor.ipfs.client import IpfsClient
from provanchor.ipfs.sources import IpfsSource
from provanchor.network import NetworkDescriptor
from provanchor.verify.api import VerifyContext
from provanchor.verify.report import Report

__all__ = ["verify_location"]

CHECK_LEDGER = "records verified"
CHECK_SNAPSHOT = "snapshot"
CHECK_CHAIN = "before-chain"
CHECK_HASHES = "replayed hashes"


def verify_location(ctx: VerifyContext, location: str, at_ns: int) -> Report:
    """Replay `location` (a ``file://`` URI) as of `at_ns` from freshly verified records and check each step."""
    from provanchor.replay import replay_state
    from provanchor.replay.source import LedgerRecords

    if not location.startswith("file://"):
        raise UsageError(f"verify location needs a file://HOST/PATH location, got {location!r:.80}")
    if not isinstance(ctx.source, IpfsSource):
        raise UsageError("verify location reads contents from an IPFS API: give --ipfs")
    report = Report(f"location {location} at {format_time(at_ns)}")
    network = NetworkDescriptor(
        chain_id=ctx.chain_id,
        rpc_url=ctx.rpc_url,
        contract=ctx.contract,
        deployment_block=ctx.chain.deployment_block,
        ipfs_api=ctx.source.api,
    )
    with (
        tempfile.TemporaryDirectory(prefix="provanchor-verify-location-") as scratch,
        IpfsClient(ctx.source.api) as ipfs,
    ):
        root = Path(scratch)
        with IndexStore.open(root / "index.sqlite", must_exist=False) as store:
            synced = Indexer(store, network, ledger=ctx.chain.ledger, ipfs=ipfs).sync()
            problems = store.problems()
            if problems:
                shown = "; ".join(f"{p.agent} seq {p.seq}: {p.reason}" for p in problems[:3])
                report.failed(
                    CHECK_LEDGER,
                    f"{len(problems)} record(s) or checkpoint(s) of the ledger fail verification and were left out "
                    f"of the replay, which therefore cannot vouch for this location: {shown}",
                )
            else:
                report.passed(
                    CHECK_LEDGER,
                    f"{synced.records} record(s) in {synced.checkpoints} checkpoint(s) verified from the chain "
                    "and IPFS into a fresh index (signatures, seq/prev, anchored roots)",
                )
            try:
                result = replay_state(LedgerRecords(store), ipfs, ctx.chain.ledger, location, at_ns, root / "out")
            except NothingRecorded as exc:
                report.failed(CHECK_CHAIN, str(exc))
                return report
            except ReplayError as exc:
                report.failed(CHECK_SNAPSHOT, f"the replay could not use its snapshot: {exc}")
                return report
    if result.snapshot is not None:
        used = result.snapshot
        report.passed(
            CHECK_SNAPSHOT,
            f"snapshot {used.snapshot_id} of {format_time(used.time)} ({used.files} file(s)) matches its record "
            "and the contract's snapshot anchor",
        )
    breaks = result.breaks
    if breaks:
        first = breaks[0]
        report.failed(
            CHECK_CHAIN,
            f"{len(breaks)} record(s) do not follow the replayed state; first: {first.record_id} "
            f"({first.op} {first.path} at {format_time(first.time)}): {first.detail}",
        )
    else:
        report.passed(CHECK_CHAIN, f"{len(result.steps)} record(s) replayed in order, each `before` matched")
    if result.problems:
        report.failed(CHECK_HASHES, "; ".join(result.problems[:3]))
    else:
        report.passed(
            CHECK_HASHES, f"{len(result.files)} path(s) restored, every content verified against its recorded sha256"
        )
    facts = result.to_json()
    facts.pop("out", None)
    facts.pop("ok", None)
    report.facts.update(facts)
    return report
