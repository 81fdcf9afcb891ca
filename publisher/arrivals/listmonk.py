"""listmonk's subscriber exports: the subscriber status, and the goal in `attributes` JSON.

The export has no per-list subscription status, so a reader who left one list but not
listmonk shows as enabled; import that list's unsubscribed export with --status."""

from __future__ import annotations

from publisher.arrivals.base import (
    GOAL_COLUMNS,
    Column,
    Format,
    first_word,
    json_key,
    status_reader,
    when,
)

STATUS_TABLE = {"enabled": "active", "disabled": "unsubscribed", "blocklisted": "unsubscribed"}


def detect(keys: frozenset[str]) -> bool:
    """`uuid`, `attributes` and `status`."""
    return {"uuid", "attributes", "status"} <= keys


LISTMONK = Format(
    name="listmonk", detect=detect, statuses=STATUS_TABLE,
    columns=(
        Column(("email",), "email"),
        Column(("status",), "status", status_reader("listmonk", STATUS_TABLE)),
        Column(("name",), "first_name", first_word),
        Column(("attributes",), "goal", json_key("goal")),
        Column(GOAL_COLUMNS, "goal"),
        Column(("created_at",), "consent_at", when),
    ))
