"""What a stored reader is, and which values a reader's fields may hold."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..emails import CONTROL_RE, show_value
from ..errors import RunletterError, suggest
from ..model import EVERYONE

STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
MAX_NAME = 100

COLUMNS = ("id, email, first_name, goal, tags, status, consent_source, consent_at, consent_ip, "
           "created_at, updated_at")
GOAL_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def now() -> str:
    """The current time as an ISO-8601 UTC string, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


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
     created_at, updated_at) = row
    return Subscriber(id=id_, email=email, first_name=first_name, goal=goal,
                      tags=tuple(t for t in tags.split(";") if t), status=status,
                      consent_source=consent_source, consent_at=consent_at,
                      consent_ip=consent_ip, created_at=created_at, updated_at=updated_at)


def check_goal(goal: str) -> str:
    goal = goal.strip().lower() or EVERYONE
    if not GOAL_RE.match(goal):
        raise RunletterError(f"goal {show_value(goal)} is not a slug "
                             "(lowercase letters, digits and hyphens)")
    return goal


def check_name(name: str) -> str:
    name = name.strip()
    problem = name_problem(name)
    if problem:
        raise RunletterError(problem)
    return name


def check_status(status: str) -> None:
    if status not in STATUSES:
        raise RunletterError(f"unknown status {show_value(status)}" + suggest(status, STATUSES)
                             + f"; use one of: {', '.join(STATUSES)}")
