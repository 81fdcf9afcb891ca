"""The clock every recorded time comes from, so `publish --due --now …` can stand a run at
another moment and have everything it records (ledger, audit, schedule) say that moment.

A pinned clock still advances with the real one from the pinned instant: retry waits and
backoffs inside the run keep their meaning.
"""

from __future__ import annotations

import time
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

# Every date a reader, an import or an author gives must fall in this range: time zones,
# send hours and "N weeks before" are computed from it, and a date near year 1 or 9999
# overflows there (one such reader once stopped every scheduled run).
FIRST_DATE = date(1900, 1, 1)
LAST_DATE = date(2199, 12, 31)
DATE_RANGE = f"{FIRST_DATE.isoformat()} to {LAST_DATE.isoformat()}"

_offset = 0.0  # seconds added to the system clock while a run is pinned


def timestamp() -> float:
    """Unix seconds now, by the (possibly pinned) clock."""
    return time.time() + _offset


def now() -> datetime:
    """The current instant as an aware UTC datetime."""
    return datetime.fromtimestamp(timestamp(), UTC)


@contextmanager
def pinned(at: datetime | None) -> Iterator[None]:
    """Run the block as if the clock read `at` when it began (None: the real clock)."""
    global _offset
    if at is None:
        yield
        return
    saved = _offset
    _offset = at.timestamp() - time.time()
    try:
        yield
    finally:
        _offset = saved


class OutOfRange(ValueError):
    """A date or time outside DATE_RANGE."""


def check_in_range(value: date, what: str) -> None:
    """Refuse a date (or a datetime, by its own calendar date) outside DATE_RANGE; the
    OutOfRange's message starts with `what` (the field and value as the user gave them)."""
    day = value.date() if isinstance(value, datetime) else value
    if not FIRST_DATE <= day <= LAST_DATE:
        raise OutOfRange(f"{what} is outside the dates Runletter handles ({DATE_RANGE}); "
                         "give one in that range")


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with a UTC offset ('Z' allowed) within DATE_RANGE; ValueError
    names the form."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text}' is not a time; write it as 2027-01-10T05:30:00Z") from None
    if value.tzinfo is None:
        raise ValueError(f"'{text}' has no UTC offset; add one, e.g. Z or +01:00")
    # Checked before converting: 0001-01-01T00:00+01:00 has no UTC instant to convert to.
    check_in_range(value, f"'{text}'")
    return value.astimezone(UTC)


def known_timezone(name: str) -> bool:
    """True when zoneinfo knows this zone name."""
    if name != name.strip() or not name or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True
