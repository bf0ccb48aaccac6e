"""The local index: a queryable SQLite cache of anchored, verified records.

The indexer (which follows the chain and verifies records) writes through
:class:`IndexStore`; :func:`run_query` answers "who changed what, where, when,
with which code", and :func:`lineage` walks the run graph. The index can always
be rebuilt from the chain and IPFS, so it is a cache, never a source of truth.
"""

from __future__ import annotations

from provanchor.index.lineage import BadDepth, BadDirection, Direction, Graph, lineage
from provanchor.index.query import (
    BadAgent,
    BadCodeHash,
    BadLimit,
    BadLocation,
    BadOp,
    BadTimeRange,
    QueryFilter,
    QueryRow,
    location_arg,
    parse_agent,
    parse_code_hash,
    parse_op,
    query_plan,
    run_query,
)
from provanchor.index.store import (
    SCHEMA_VERSION,
    Checkpoint,
    ForeignIndex,
    IndexedInput,
    IndexMissing,
    IndexOutdated,
    IndexStore,
    NotAnIndex,
    Problem,
    location_path,
    record_id,
)
from provanchor.index.timeparse import BadTime, format_time, parse_time

__all__ = [
    "SCHEMA_VERSION",
    "BadAgent",
    "BadCodeHash",
    "BadDepth",
    "BadDirection",
    "BadLimit",
    "BadLocation",
    "BadOp",
    "BadTime",
    "BadTimeRange",
    "Checkpoint",
    "Direction",
    "ForeignIndex",
    "Graph",
    "IndexMissing",
    "IndexOutdated",
    "IndexStore",
    "IndexedInput",
    "NotAnIndex",
    "Problem",
    "QueryFilter",
    "QueryRow",
    "format_time",
    "lineage",
    "location_arg",
    "location_path",
    "parse_agent",
    "parse_code_hash",
    "parse_op",
    "parse_time",
    "query_plan",
    "record_id",
    "run_query",
]
