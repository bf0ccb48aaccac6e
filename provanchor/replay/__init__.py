"""The replay engine: rebuild a location at any time, and re-execute recorded runs (issue 6).

`replay_state` restores the latest snapshot and applies the verified records
after it, checking each record's ``before``; `replay_run` restores a run's
inputs, checks its code, re-executes it and compares every output.
"""

from __future__ import annotations

from provanchor.replay.run import RunReplay, replay_run
from provanchor.replay.sources import ReplaySources, open_sources
from provanchor.replay.state import StateReplay, replay_state

__all__ = ["ReplaySources", "RunReplay", "StateReplay", "open_sources", "replay_run", "replay_state"]
