"""Location URIs as records carry them, and plain paths typed by a user made comparable to them.

Part of the formats layer: the indexer, the bundle selection and every reader
match locations the same way, so the rules live once, here.
"""

from __future__ import annotations

import os

from provanchor.errors import BadLocation, RecordError
from provanchor.records.model import file_location

__all__ = ["encoded_path", "location_arg", "location_path"]


def location_path(location: str) -> str | None:
    """The (percent-encoded) path part of a ``file://HOST/PATH`` location, else None.

    Kept encoded, exactly as in the URI: '/' is never encoded, so directory
    prefixes of encoded paths are prefixes of the encoded location too, and a
    plain path typed by a user is encoded the same way before matching.
    """
    if not location.startswith("file://"):
        return None
    slash = location.find("/", 7)
    return None if slash < 0 else location[slash:]


def location_arg(text: str, host: str | None) -> str:
    """Command-line text to a location filter: a URI as is, else an absolute path.

    With ``host`` the path becomes that host's ``file://`` URI (as agents write
    it); without, the absolute path is returned and matches the file on any
    host. Relative paths are made absolute against the current directory but
    symlinks are not resolved: the file may live on another machine, and agents
    record real paths, so pass a real path when it matters.
    """
    if "://" in text:
        return text
    path = os.path.abspath(text)
    if path.startswith("//"):  # POSIX keeps a leading '//'; records never have one
        path = "/" + path.lstrip("/")
    if host is None:
        encoded_path(path)  # validate now, with the user's text in the message
        return path
    try:
        return file_location(host, path)
    except RecordError as exc:
        raise BadLocation(f"not a usable location {text!r:.80}: {exc}") from None


def encoded_path(path: str) -> str:
    """A plain absolute path percent-encoded exactly as in ``file://`` locations."""
    try:
        encoded = location_path(file_location("h", path))
    except RecordError as exc:
        raise BadLocation(f"not a usable path {path!r:.80}: {exc}") from None
    assert encoded is not None
    return encoded
