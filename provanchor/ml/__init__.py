"""ML lifecycle provenance: datasets, training runs, models, evaluations and inference receipts (issue 8).

Each event is an ordinary signed, anchored provenance record whose payload
links to its parents, so a prediction can be traced back to the model, the
training run, its code and hyperparameters and the exact data, and verified.

* :class:`Tracker` records events (``dataset``, ``training``, ``model``,
  ``evaluation``, ``inference``), proves dataset membership, traces, verifies;
* :mod:`provanchor.ml.events` is the wire format, :mod:`provanchor.ml.dataset`
  the row fingerprints and membership proofs, :mod:`provanchor.ml.commitments`
  the input/output commitments, :mod:`provanchor.ml.receipts` receipts
  batched into records (for serving loops), :mod:`provanchor.ml.trace` and
  :mod:`provanchor.ml.verify` the read side (index + chain + files).

Names are imported on first use: `provanchor.ml.events` (a wire format) must
not drag in the tracker, a writer, and with it the pipeline.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provanchor.ml.commitments import CommitMode, DataCommitment, commit_data
    from provanchor.ml.dataset import Fingerprint, MembershipProof, fingerprint_file, fingerprint_samples, row_leaf
    from provanchor.ml.events import Event, ParentLink, parse_event
    from provanchor.ml.receipts import Receipt, ReceiptStream
    from provanchor.ml.trace import Trace, TraceNode, trace_event
    from provanchor.ml.tracker import Tracker, TrainingRun
    from provanchor.ml.verify import verify_event

_WHERE = {
    "CommitMode": "commitments",
    "DataCommitment": "commitments",
    "Event": "events",
    "Fingerprint": "dataset",
    "MembershipProof": "dataset",
    "ParentLink": "events",
    "Receipt": "receipts",
    "ReceiptStream": "receipts",
    "Trace": "trace",
    "TraceNode": "trace",
    "Tracker": "tracker",
    "TrainingRun": "tracker",
    "commit_data": "commitments",
    "fingerprint_file": "dataset",
    "fingerprint_samples": "dataset",
    "parse_event": "events",
    "row_leaf": "dataset",
    "trace_event": "trace",
    "verify_event": "verify",
}
__all__ = [
    "CommitMode",
    "DataCommitment",
    "Event",
    "Fingerprint",
    "MembershipProof",
    "ParentLink",
    "Receipt",
    "ReceiptStream",
    "Trace",
    "TraceNode",
    "Tracker",
    "TrainingRun",
    "commit_data",
    "fingerprint_file",
    "fingerprint_samples",
    "parse_event",
    "row_leaf",
    "trace_event",
    "verify_event",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"provanchor.ml.{module}"), name)
