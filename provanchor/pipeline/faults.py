"""Crash injection for the pipeline's crash-safety tests.

Setting `PROVANCHOR_CRASH_AT=<point>` makes the process SIGKILL itself the
first time it reaches that point: the test then restarts it and checks that
nothing was lost or repeated. Outside tests the variable is unset and this is
one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = ("after-spool-commit", "after-ipfs-write", "after-send", "after-receipt")


def crash_point(name: str) -> None:
    if os.environ.get("PROVANCHOR_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
