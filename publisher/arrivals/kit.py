"""Kit's (formerly ConvertKit) subscriber exports: the subscriber state and custom fields."""

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

# inactive: never confirmed; cold: active but not opening lately (still subscribed).
STATUS_TABLE = {"active": "active", "cold": "active", "inactive": "pending",
            "cancelled": "unsubscribed", "bounced": "bounced", "complained": "complained"}


def detect(keys: frozenset[str]) -> bool:
    """An address column with `state`."""
    return "state" in keys and bool(keys & {"email_address", "email"})


KIT = Format(
    name="kit", detect=detect, statuses=STATUS_TABLE,
    columns=(
        Column(("email_address", "email"), "email"),
        Column(("state",), "status", status_reader("kit", STATUS_TABLE)),
        Column(("first_name",), "first_name"),
        Column(("name", "full_name"), "first_name", first_word),
        Column(GOAL_COLUMNS, "goal"),
        Column(("tags",), "tags", comma_list),
        Column(("created_at", "subscribed_at"), "consent_at", when),
    ))
