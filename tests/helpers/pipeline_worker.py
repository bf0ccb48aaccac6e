"""A separate process that records and anchors, so tests can SIGKILL it mid-pipeline.

Usage: python pipeline_worker.py HOME (record COUNT TAG | flush)
The password comes from PROVANCHOR_PASSWORD; PROVANCHOR_CRASH_AT picks the crash point.
"""

from __future__ import annotations

import sys
import time

from provanchor.home import Home
from provanchor.pipeline.session import AgentSession
from provanchor.records import Capture, CaptureBackend, Change, Op


def change(tag: str, i: int) -> Change:
    return Change(
        time=time.time_ns(),
        host="crash-test",
        location=f"file://crash-test/data/{tag}/{i}.txt",
        op=Op.CREATE,
        capture=Capture(backend=CaptureBackend.MANUAL, attributed=False, reason="test"),
        user="tester",
    )


def main() -> None:
    home, action = Home.resolve(sys.argv[1]), sys.argv[2]
    with AgentSession.open(home, batch_size=int(sys.argv[5]) if len(sys.argv) > 5 else 4) as session:
        if action == "record":
            count, tag = int(sys.argv[3]), sys.argv[4]
            for i in range(count):
                ref = session.record(change(tag, i))
                print(ref.seq, flush=True)
        elif action == "flush":
            status = session.flush(timeout=60)
            print(status.size if status else 0, flush=True)
        else:
            raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    main()
