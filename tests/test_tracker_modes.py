"""The change tracker, fed real kernel-shaped events by hand: a mode the agent never recorded is recorded.

A file created, chmod-ed and renamed twice before the agent reads any of it
(the agent is busy; the events wait in the queue) reaches the tracker when
only its final name exists. The create record cannot carry content or mode,
the write record at the final name carries the content, and a write cannot
carry a mode: so the tracker must record the mode with a chmod, or a replay
restores the file with a default mode. (Seen as a rare failure of the replay
test against the real agent, which depends on the agent falling behind.)
"""

from __future__ import annotations

import os
from pathlib import Path

from provanchor.agent.capture import EventKind, RawEvent
from provanchor.agent.config import load_config
from provanchor.agent.tracker import ChangeTracker
from provanchor.records import Change, Op


def test_a_file_renamed_away_before_it_was_read_gets_its_mode_recorded(tmp_path: Path) -> None:
    data = (tmp_path / "data").resolve()
    for sub in ("a", "b", "c"):
        (data / sub).mkdir(parents=True)
    config_file = tmp_path / "agent.toml"
    config_file.write_text(f'[agent]\nname = "t"\nhome = "{tmp_path / "home"}"\n[capture]\npaths = ["{data}"]\n')
    changes: list[Change] = []
    tracker = ChangeTracker(load_config(config_file), "host", "fanotify", lambda change, _: changes.append(change))

    first, middle, final = data / "a" / "x.dat", data / "b" / "y.dat", data / "c" / "z.dat"
    final.write_bytes(b"content")  # what is on disk when the agent gets to the events: only the final name
    os.chmod(final, 0o600)

    def event(kind: EventKind, path: Path, old: Path | None = None) -> RawEvent:
        return RawEvent(kind, str(path), str(old) if old else None, False, None, None, 1)

    tracker.handle_batch([event(EventKind.CREATE, first), event(EventKind.CLOSE_WRITE, first)])
    tracker.handle_batch([event(EventKind.RENAME, middle, first)])
    tracker.handle_batch([event(EventKind.RENAME, final, middle)])

    ops = [(change.op, change.location.rsplit("/", 2)[-2:]) for change in changes]  # type: ignore[union-attr]
    assert ops == [
        (Op.CREATE, ["a", "x.dat"]),
        (Op.RENAME, ["b", "y.dat"]),
        (Op.RENAME, ["c", "z.dat"]),
        (Op.WRITE, ["c", "z.dat"]),
        (Op.CHMOD, ["c", "z.dat"]),
    ]
    assert changes[0].after is None and changes[0].mode is None  # nothing could be read at the first name
    assert changes[3].after is not None and changes[3].after.size == len(b"content")
    assert changes[4].mode == os.stat(final).st_mode  # 0o100600: the mode the replay must restore
