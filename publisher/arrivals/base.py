"""What every export format is made of: columns that feed a reader's fields, value readers
(dates, names, tags, JSON keys, status tables), and the safe rule for unknown statuses."""

from __future__ import annotations

import csv
import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from publisher.emails import show_value
from publisher.errors import RunletterError
from publisher.store import LEFT
from publisher.store.records import check_race_date, check_race_name, check_timezone, split_tags

RACE_FIELDS = ("race_date", "race_name", "timezone")
# What --map may name.
FIELDS = ("email", "first_name", "name", "goal", "tags", "status", *RACE_FIELDS)
# Columns a coach's goal may sit in, in any tool (merge fields and custom fields).
GOAL_COLUMNS = ("goal", "race_goal", "race_distance")
# From the most permissive to the least: --status and a file's kind can only move down.
STRICTNESS = {"active": 0, "pending": 1, "unsubscribed": 2, "bounced": 3, "complained": 4}
_KEY_RE = re.compile(r"[\s_\-]+")
# A UTC time to the second that the store's own form only re-punctuates: Mailchimp's naive
# '2023-03-02 18:06:12', Buttondown's '2023-03-02T18:06:12Z', Kit's '… UTC'.
_PLAIN_UTC_RE = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:Z| UTC|\+00:00)?")


class RowProblem(Exception):
    """A value that makes its row unusable; the message says why."""


class Unreadable(Exception):
    """A value that cannot be read but whose row still lands (the importer warns once per
    column); the message follows the column's name: "is not a date: '…'"."""


def column_key(name: str) -> str:
    """A header name as formats look it up: 'Email Address' and 'email_address' alike."""
    return _KEY_RE.sub("_", name.strip().lower()).strip("_")


@dataclass(frozen=True)
class Column:
    """Header columns (keys, in order of preference) that feed one field through `read`."""

    keys: tuple[str, ...]
    field: str
    read: Callable[[str], object] = str.strip
    blank: bool = False  # an empty cell is a value (Runletter's own CSV), not "not given"


@dataclass(frozen=True)
class Format:
    """One tool's export: how to recognise it, which columns feed which field, its statuses."""

    name: str
    detect: Callable[[frozenset[str]], bool]
    columns: tuple[Column, ...]
    statuses: Mapping[str, str] = field(default_factory=dict)  # its value -> a store status
    tags: Callable[[str], tuple[str, ...]] = lambda text: comma_list(text)
    # Mailchimp writes one file per status, told apart by the header and the file's name:
    # (status or None, what the file is, why to refuse it unless --status says otherwise).
    kind: Callable[[frozenset[str], str], tuple[str | None, str, str | None]] | None = None
    skip: Callable[[str], str | None] = lambda email: None  # why to leave an address out
    strict: bool = False  # runletter: a column it does not know is an error
    needs_status: bool = True  # a row with no status of its own is an error


def stricter(*statuses: str | None) -> str | None:
    """The least permissive of the statuses given (None when none is)."""
    given = [s for s in statuses if s]
    return max(given, key=STRICTNESS.__getitem__) if given else None


def status_reader(label: str, table: Mapping[str, str]) -> Callable[[str], str | None]:
    """Read a status value with `table`; an unknown one is a RowProblem naming the known ones."""
    known = ", ".join(table)

    def read(text: str) -> str | None:
        value = text.strip().lower()
        if not value:
            return None
        if value in table:
            return table[value]
        named = f"unknown {label} status" if label else "unknown status"
        close = safe_suggestion(value, table)
        if close:
            raise RowProblem(f"{named} {show_value(value)} (did you mean '{close}'?); "
                             f"known: {known}")
        raise RowProblem(f"{named} {show_value(value)} (known: {known})")

    return read


def safe_suggestion(value: str, table: Mapping[str, str]) -> str | None:
    """A known value close to `value` that cannot make a reader more welcome than meant.

    A value that lets mail go out (active, or pending's confirmation) is suggested only for a
    plain typo no longer than it ('actve'), never for a longer word built on it
    ('unactivated', 'inactive'), since those usually say the opposite."""
    for close in difflib.get_close_matches(value, list(table), n=3, cutoff=0.6):
        if table[close] in LEFT or (len(value) <= len(close) and _one_edit(value, close)):
            return close
    return None


def _one_edit(a: str, b: str) -> bool:
    """Whether a is b with one letter dropped, changed or two neighbours swapped."""
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    return len(b) == len(a) + 1 and any(b[:i] + b[i + 1:] == a for i in range(len(b)))


def split_on(separator: str, text: str) -> tuple[str, ...]:
    """Tags split on `separator`, trimmed, empties and repeats dropped."""
    return split_tags(text.replace(";", separator).split(separator))


def comma_list(text: str) -> tuple[str, ...]:
    """Tags as most tools write them: 'Road, Masters 40+', or a JSON list '["Road"]'."""
    if text.lstrip().startswith("["):
        try:
            found = json.loads(text)
        except ValueError:
            found = None
        if isinstance(found, list):
            return split_tags(str(tag) for tag in found)
    return split_on(",", text)


def quoted_list(text: str) -> tuple[str, ...]:
    """Tags written as a CSV line inside one cell ('"Road","Masters 40+"'), as Mailchimp does."""
    try:
        return split_tags(next(csv.reader([text]), []))
    except csv.Error:
        return split_on(",", text)


def first_word(text: str) -> str:
    """The first word of a full name ('Zoë Marchetti' -> 'Zoë')."""
    words = text.split()
    return words[0] if words else ""


def checked(check: Callable[[str], str | None]) -> Callable[[str], str]:
    """A value reader from one of the store's field checks: the value as stored ("" for
    none, which clears the field where a blank cell is a value), or a RowProblem saying why."""

    def read(text: str) -> str:
        try:
            return check(text) or ""
        except RunletterError as exc:
            raise RowProblem(exc.findings[0].message) from None

    return read


# How a race or zone cell is read, in any format.
RACE_READERS: dict[str, Callable[[str], str]] = {
    "race_date": checked(check_race_date), "race_name": checked(check_race_name),
    "timezone": checked(check_timezone)}


def json_key(key: str) -> Callable[[str], object]:
    """Read `key` from a cell holding a JSON object; no such key gives None. A cell that is
    not a JSON object is left unread: it must not cost the row its status."""

    def read(text: str) -> object:
        try:
            found = json.loads(text)
        except ValueError:
            found = None
        if not isinstance(found, dict):
            raise Unreadable(f"is not a JSON object: {show_value(text)}")
        value = found.get(key)
        return str(value).strip() if value not in (None, "") else None

    return read


def when(text: str) -> str:
    """A date and time from an export, as the store writes it (ISO 8601 UTC, to the second).

    A time without a zone is read as UTC (Mailchimp); Go's trailing zone name (listmonk's
    '+0000 +0000' or '+0000 UTC') and a ' UTC' suffix (Kit) are dropped."""
    value = text.strip()
    try:
        if _PLAIN_UTC_RE.fullmatch(value):  # the common case, without a round trip
            datetime.fromisoformat(value[:19])  # still refuses 2024-02-30
            return f"{value[:10]}T{value[11:19]}+00:00"
        stamp = datetime.fromisoformat(_iso(value))
    except ValueError:
        raise Unreadable(f"is not a date: {show_value(text)}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC).isoformat(timespec="seconds")


def _iso(value: str) -> str:
    """Go's '2024-01-13 07:42:10.3 +0000 UTC' and Kit's '… UTC' in a form ISO 8601 reads."""
    parts = value.split(" ")
    if len(parts) >= 3 and parts[2][:1] in "+-" and parts[2][1:5].isdigit():
        return f"{parts[0]} {parts[1]}{parts[2]}"
    if value.upper().endswith((" UTC", " GMT")):
        return value[:-4]
    return value
