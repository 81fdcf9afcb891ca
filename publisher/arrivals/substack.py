"""Substack's subscriber exports: `email_disabled` true means the reader turned emails off."""

from __future__ import annotations

from publisher.arrivals.base import GOAL_COLUMNS, Column, Format, first_word, status_reader, when

STATUS_TABLE = {"false": "active", "true": "unsubscribed"}
_DELETED = "@deletion-request.substack.com"


def detect(keys: frozenset[str]) -> bool:
    """Both layouts (subscriber emails, email list) have `email` and `email_disabled`."""
    return {"email", "email_disabled"} <= keys


def skip(email: str) -> str | None:
    """Substack replaces the address of a reader who asked to be deleted; they stay out."""
    if email.lower().endswith(_DELETED):
        return f"{email}: a reader Substack deleted on request; left out"
    return None


SUBSTACK = Format(
    name="substack", detect=detect, statuses=STATUS_TABLE, skip=skip,
    columns=(
        Column(("email",), "email"),
        Column(("email_disabled",), "status", status_reader("substack", STATUS_TABLE)),
        Column(("name",), "first_name", first_word),
        Column(GOAL_COLUMNS, "goal"),
        Column(("created_at",), "consent_at", when),
    ))
