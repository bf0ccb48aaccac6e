"""Times as users type them, and as the index shows them.

Records carry nanoseconds since the Unix epoch (UTC). People type either an
ISO 8601 time (copied from a log, or from our own output) or Unix seconds
(from `date +%s`), so both are accepted, and nothing else: guessing at other
formats would silently turn a typo into a wrong time window.

Precision is kept to the nanosecond both ways, because query bounds are
inclusive: a time copied from `format_time` output must select exactly the
record it came from. (`datetime.fromisoformat` alone would drop the last three
digits of a nanosecond fraction, hence the fraction is split off here.)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from provanchor.errors import BadTime as BadTime

__all__ = ["MAX_TIME_NS", "BadTime", "format_time", "parse_time"]

_NS = 1_000_000_000
MAX_TIME_NS = (1 << 64) - 1
"""Records store time as a uint64 of nanoseconds; later times cannot occur in any record."""

_UNIX = re.compile(r"\d+(?:\.\d+)?")
# HH[:]MM[:]SS followed by a fraction: the fraction is parsed here, the rest by datetime.
_FRACTION = re.compile(r"(?P<head>.*?\d{2}:?\d{2}:?\d{2})[.,](?P<frac>\d+)(?P<tail>.*)")
_HINT = "use ISO 8601 (e.g. 2024-05-01T12:00:00Z, 2024-05-01) or Unix seconds (e.g. 1714564800)"


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch (UTC) for an ISO 8601 time or Unix seconds.

    A time without offset means UTC (never the local zone: the index is shared
    across hosts, and a result must not depend on where the query runs). A date
    alone means its midnight UTC.
    """
    value = text.strip()
    if _UNIX.fullmatch(value):
        try:
            ns = int(Decimal(value) * _NS)
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            raise BadTime(f"not a time: {text!r}: {_HINT}") from None
    else:
        ns = _parse_iso(value, text)
    if not 0 <= ns <= MAX_TIME_NS:
        raise BadTime(f"time out of range (1970 to 2554): {text!r}")
    return ns


def _parse_iso(value: str, original: str) -> int:
    fraction_ns = 0
    match = _FRACTION.fullmatch(value)
    if match:
        digits = match["frac"][:9]
        fraction_ns = int(digits.ljust(9, "0"))
        value = match["head"] + match["tail"]
    if value.endswith(("z", "Z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadTime(f"not a time: {original!r}: {_HINT}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Whole seconds through integer arithmetic: a float timestamp would lose nanoseconds.
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    seconds = delta.days * 86_400 + delta.seconds
    return seconds * _NS + delta.microseconds * 1000 + fraction_ns


def format_time(ns: int) -> str:
    """ISO 8601 UTC with ``Z``; the fraction is shown in groups of 3 digits, only as far as needed.

    Whole seconds print without a fraction; otherwise milli-, micro- or
    nanosecond digits, so the text parses back to exactly ``ns``.
    """
    seconds, rest = divmod(ns, _NS)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if rest == 0:
        return stamp + "Z"
    digits = f"{rest:09d}"
    while digits.endswith("000"):
        digits = digits[:-3]
    return f"{stamp}.{digits}Z"
