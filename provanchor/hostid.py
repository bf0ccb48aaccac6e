"""This machine's identity in location URIs (`file://HOST-ID/PATH`), and plain paths made into them.

Low in the layers on purpose: the agent writes locations with it, and every
reader (query, replay, verify) turns a plain path typed on this machine into
the same URI, so the two always agree.
"""

from __future__ import annotations

import os

from provanchor.records.locations import location_arg

__all__ = ["default_host_id", "local_location"]


def default_host_id() -> str:
    """The machine's stable identity: /etc/machine-id where present, else the host name."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path, encoding="ascii") as handle:
                value = handle.read().strip()
            if value:
                return value
        except OSError:
            continue
    return os.uname().nodename


def local_location(text: str, host: str | None = None) -> str:
    """A location URI as is; a plain path as `host`'s (default: this machine's), resolved as agents record it.

    Agents record real paths, so an existing path is resolved through symlinks
    first; a path that no longer exists is only made absolute.
    """
    if "://" not in text and os.path.exists(text):
        text = os.path.realpath(text)
    return location_arg(text, host or default_host_id())
