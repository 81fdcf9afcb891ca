"""What a stored reader is, and which values a reader's fields may hold."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass

from publisher import clock
from publisher.emails import CONTROL_RE, show_value
from publisher.errors import RunletterError, suggest
from publisher.model import EVERYONE

# A reader's statuses: defined here only; the tables' CHECK and the arrivals import them.
STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
MAX_NAME = 100

COLUMNS = ("id, email, first_name, goal, tags, status, consent_source, consent_at, consent_ip, "
           "created_at, updated_at, race_date, race_name, timezone")
MAX_RACE_NAME = 120
GOAL_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def now() -> str:
    """The current time (by the run's clock) as an ISO-8601 UTC string, to the second."""
    return clock.now().isoformat(timespec="seconds")


@dataclass(frozen=True)
class Subscriber:
    """One reader as stored."""

    id: int
    email: str
    first_name: str
    goal: str
    tags: tuple[str, ...]
    status: str
    consent_source: str
    consent_at: str | None
    consent_ip: str | None
    created_at: str
    updated_at: str
    race_date: str | None = None  # YYYY-MM-DD
    race_name: str = ""
    timezone: str = ""  # IANA name; "" = the newsletter's [schedule] timezone

    @property
    def signed_up(self) -> str | None:
        """When the reader gave consent (their signup time), as stored; None when unknown
        (imported from a file that gave no consent time)."""
        return self.consent_at

    @property
    def is_active(self) -> bool:
        """Only active readers are sent posts."""
        return self.status == "active"


@dataclass(frozen=True)
class AuditEntry:
    """One status change, as the audit trail recorded it."""

    subscriber_id: int | None
    email: str
    old_status: str | None
    new_status: str
    reason: str
    at: str


def name_problem(name: str) -> str | None:
    """Why a first name cannot be stored, or None."""
    # The name is merged into subjects and headers; a line break there injects headers.
    if "\r" in name or "\n" in name:
        return "first_name contains a line break (refused: it could inject email headers)"
    if CONTROL_RE.search(name):
        return "first_name contains a control character (refused: it could inject email headers)"
    if len(name) > MAX_NAME:
        return f"first_name is {len(name)} characters long; the limit is {MAX_NAME}"
    return None


def split_tags(items: Iterable[str]) -> tuple[str, ...]:
    """Tags split on ';', trimmed, empties and repeats dropped, order kept."""
    out: list[str] = []
    for item in items:
        for tag in str(item).split(";"):
            tag = tag.strip()
            if tag and tag not in out:
                out.append(tag)
    return tuple(out)


def subscriber_from_row(row: tuple) -> Subscriber:
    """A Subscriber from a row selected with COLUMNS."""
    (id_, email, first_name, goal, tags, status, consent_source, consent_at, consent_ip,
     created_at, updated_at, race_date, race_name, timezone) = row
    return Subscriber(id=id_, email=email, first_name=first_name, goal=goal,
                      tags=tuple(t for t in tags.split(";") if t), status=status,
                      consent_source=consent_source, consent_at=consent_at,
                      consent_ip=consent_ip, created_at=created_at, updated_at=updated_at,
                      race_date=race_date, race_name=race_name, timezone=timezone)


def check_goal(goal: str) -> str:
    """A goal as stored (trimmed, lowercase, the default for none); RunletterError when it
    is not a slug."""
    goal = goal.strip().lower() or EVERYONE
    if not GOAL_RE.match(goal):
        raise RunletterError(f"goal {show_value(goal)} is not a slug "
                             "(lowercase letters, digits and hyphens)")
    return goal


def check_name(name: str) -> str:
    """A first name as stored (trimmed); RunletterError says why it cannot be."""
    name = name.strip()
    problem = name_problem(name)
    if problem:
        raise RunletterError(problem)
    return name


def check_status(status: str) -> None:
    """RunletterError, with a suggestion, for a status that is not one of STATUSES."""
    if status not in STATUSES:
        raise RunletterError(f"unknown status {show_value(status)}" + suggest(status, STATUSES)
                             + f"; use one of: {', '.join(STATUSES)}")


class RaceDateOutOfRange(RunletterError):
    """A race date that is a date, but outside the range Runletter computes with."""


def check_race_date(text: str | None) -> str | None:
    """A race date as stored (YYYY-MM-DD), None for none; RunletterError says why not."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        if len(text) != 10:
            raise ValueError
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise RunletterError(f"race_date {show_value(text)} is not a date; write it as "
                             "YYYY-MM-DD, e.g. 2027-03-28") from None
    try:
        clock.check_in_range(day, f"race_date {text}")
    except clock.OutOfRange as exc:
        raise RaceDateOutOfRange(str(exc)) from None
    return day.isoformat()


def check_race_name(name: str | None) -> str:
    """A race name as stored; refused where it could break a header or a page."""
    name = (name or "").strip()
    if CONTROL_RE.search(name) or "\n" in name or "\r" in name:
        raise RunletterError("race_name contains a line break or control character; "
                             "write it on one line")
    if len(name) > MAX_RACE_NAME:
        raise RunletterError(f"race_name is {len(name)} characters long; the limit is "
                             f"{MAX_RACE_NAME}")
    return name


def check_timezone(name: str | None) -> str:
    """An IANA time zone name as stored ("" for none), with a suggestion when misspelt."""
    name = (name or "").strip()
    if not name:
        return ""
    if clock.known_timezone(name):
        return name
    raise RunletterError(f"timezone {show_value(name)} is not an IANA time zone"
                         + suggest(name, _zone_names()) + ", e.g. Europe/Madrid or "
                         "America/New_York")


def _zone_names() -> list[str]:
    return sorted(zoneinfo.available_timezones())
