"""The `when:` of a sequence step: its grammar, and the local date or instant it names.

    on signup            | N days|weeks after signup
    N days|weeks before race | race day | N days|weeks after race
    N days|weeks after previous

Every form but "on signup" names a date in the reader's own time zone (their local signup
date + N, race date - N, the local date the previous step went out + N); dated items go out
at the newsletter's `send_hour` on that date.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from publisher.errors import suggest

SIGNUP, RACE, PREVIOUS = "signup", "race", "previous"

_FORM = re.compile(r"^(?P<n>\d{1,4})\s+(?P<unit>days?|weeks?)\s+(?P<dir>before|after)\s+"
                   r"(?P<anchor>signup|race|previous)$")
EXAMPLES = ('"on signup"', '"3 days after signup"', '"2 weeks after signup"',
            '"12 weeks before race"', '"race day"', '"3 days after race"',
            '"1 week after previous"')
_WORDS = ("on signup", "race day", "days after signup", "weeks after signup",
          "days before race", "weeks before race", "days after race", "weeks after race",
          "days after previous", "weeks after previous")


@dataclass(frozen=True)
class When:
    """A parsed `when:`: counted from `anchor` by `days` (negative: before); `instant` for
    "on signup", the only form that is not a date."""

    anchor: str
    days: int
    instant: bool = False
    text: str = ""

    @property
    def dated(self) -> bool:
        """True for forms that name a local date (sent at send_hour, skipped when stale)."""
        return not self.instant


def parse_when(text: object) -> When:
    """Parse a `when:` value; ValueError says what is wrong and shows the forms."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"'when' must be text such as {EXAMPLES[0]} or {EXAMPLES[3]}")
    words = " ".join(text.lower().split())
    if words == "on signup":
        return When(SIGNUP, 0, instant=True, text=text)
    if words == "race day":
        return When(RACE, 0, text=text)
    match = _FORM.match(words)
    if match is None:
        return _refuse(text, words)
    n = int(match["n"])
    unit = match["unit"].rstrip("s")  # "1 days" and "3 week" are understood too
    days = n * (7 if unit == "week" else 1)
    anchor, direction = match["anchor"], match["dir"]
    if direction == "before" and anchor != RACE:
        raise ValueError(f"'{text}': only the race can be counted back from; write "
                         f"'{n} {match['unit']} after {anchor}'")
    return When(anchor, -days if direction == "before" else days, text=text)


def _refuse(text: str, words: str) -> When:
    hint = ""
    shape = re.sub(r"^\d+\s+", "", words)
    close = suggest(shape, _WORDS)
    if close and re.match(r"^\d", words):
        hint = close.replace("did you mean '", f"did you mean '{words.split()[0]} ")
    elif close:
        hint = close
    raise ValueError(f"'when: {text}' is not understood{hint}; write one of "
                     + ", ".join(EXAMPLES))


def zone(name: str, default: str) -> ZoneInfo:
    """A reader's zone, or the newsletter's when they gave none (or one no longer known)."""
    try:
        return ZoneInfo(name or default)
    except (KeyError, ValueError, OSError):
        return ZoneInfo(default)


@functools.lru_cache(maxsize=8192)  # readers share race dates and zones
def at_send_hour(day: dt.date, tz: ZoneInfo, send_hour: int) -> dt.datetime:
    """The UTC instant of `send_hour` on a local date (a clock change's gap moves it later)."""
    local = dt.datetime(day.year, day.month, day.day, send_hour, tzinfo=tz)
    # Round-trip through UTC: a wall time inside a spring-forward gap comes back shifted.
    return local.astimezone(dt.UTC)


def local_date(instant: dt.datetime, tz: ZoneInfo) -> dt.date:
    """The reader's calendar date at an instant."""
    return instant.astimezone(tz).date()
