"""Buttondown's subscriber exports: the subscriber type, and names and goals in `metadata`."""

from __future__ import annotations

from publisher.arrivals.base import (
    GOAL_COLUMNS,
    Column,
    Format,
    comma_list,
    json_key,
    status_reader,
    when,
)

STATUS_TABLE = {
    **dict.fromkeys(("regular", "premium", "gifted", "churned", "trialed", "unpaid",
                     "churning", "paused", "past_due"), "active"),
    "unactivated": "pending",
    # blocked: refused by Buttondown's spam filters, so not even a confirmation may go out.
    **dict.fromkeys(("unsubscribed", "removed", "blocked", "disabled"), "unsubscribed"),
    "complained": "complained",
    # spammy and malformed were folded into undeliverable by Buttondown in 2025.
    **dict.fromkeys(("undeliverable", "spammy", "malformed"), "bounced"),
}


def detect(keys: frozenset[str]) -> bool:
    """An address column with `creation_date` or the older `subscriber_type`."""
    return bool(keys & {"email", "email_address"}) and bool(
        keys & {"creation_date", "subscriber_type"})


BUTTONDOWN = Format(
    name="buttondown", detect=detect, statuses=STATUS_TABLE,
    columns=(
        Column(("email_address", "email"), "email"),
        Column(("type", "subscriber_type"), "status", status_reader("buttondown", STATUS_TABLE)),
        Column(("metadata",), "first_name", json_key("first_name")),
        Column(("first_name",), "first_name"),
        Column(("metadata",), "goal", json_key("goal")),
        Column(GOAL_COLUMNS, "goal"),
        Column(("tags",), "tags", comma_list),
        Column(("creation_date", "created_at"), "consent_at", when),
    ))
