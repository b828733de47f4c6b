"""Durations and instants as typed on a command line: ``90s``, ``15m``, ``1h30m``, ``2d``; an
instant is RFC 3339 (``2026-12-04T10:00:00Z``) or a duration from now (``+10m``)."""

import re
from datetime import UTC, datetime, timedelta
from typing import Final

_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION: Final = timedelta(days=36500)


def parse_duration(text: str) -> timedelta:
    """``1h30m`` → 90 minutes; ValueError for anything else (a bare number is refused: its
    unit would be a guess)."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _PART.sub("", compact):
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 1h30m or 2d")
    seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _PART.findall(compact))
    duration = timedelta(seconds=seconds)
    if duration > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than {MAX_DURATION.days} days")
    return duration


def parse_instant(text: str, now: datetime | None = None) -> datetime:
    """RFC 3339, or ``+DURATION`` from now. Without an offset, the local time zone's."""
    now = now or datetime.now(UTC)
    if text.startswith("+"):
        return now + parse_duration(text[1:])
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an RFC 3339 time (2026-12-04T10:00:00Z) nor +DURATION (+10m)"
        ) from None
    return instant if instant.tzinfo is not None else instant.astimezone()
