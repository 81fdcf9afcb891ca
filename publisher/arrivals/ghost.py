"""Ghost's member exports: `subscribed_to_emails` false (or a `deleted_at`) means gone."""

from __future__ import annotations

from publisher.arrivals.base import (
    GOAL_COLUMNS,
    Column,
    Format,
    comma_list,
    first_word,
    status_reader,
    when,
)
from publisher.store import restore_cell

STATUS_TABLE = {"true": "active", "false": "unsubscribed"}


def detect(keys: frozenset[str]) -> bool:
    """`email` with Ghost's subscription flag, or its comped-plan and labels columns."""
    return "email" in keys and ("subscribed_to_emails" in keys
                                or {"complimentary_plan", "labels"} <= keys)


def deleted(text: str) -> str | None:
    """A member with a deletion time is never mailed."""
    return "unsubscribed" if text.strip() else None


def disabled(text: str) -> str | None:
    """Ghost turns email off for an address that bounced or complained (when exported)."""
    return "bounced" if text.strip().lower() == "true" else None


def name(text: str) -> str:
    """The first word of the name; Ghost quotes cells a spreadsheet would run as formulas."""
    return first_word(restore_cell(text.strip()))


GHOST = Format(
    name="ghost", detect=detect, statuses=STATUS_TABLE,
    columns=(
        Column(("email",), "email"),
        Column(("deleted_at",), "status", deleted),
        Column(("email_disabled",), "status", disabled),
        Column(("subscribed_to_emails", "subscribed"), "status",
               status_reader("ghost", STATUS_TABLE)),
        Column(("name",), "first_name", name),
        Column(GOAL_COLUMNS, "goal"),
        Column(("labels",), "tags", comma_list),
        Column(("created_at",), "consent_at", when),
    ))
