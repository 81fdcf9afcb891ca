"""Mailchimp audience exports: one file per member status (subscribed, unsubscribed, cleaned,
nonsubscribed) with the same columns, told apart by their UNSUB_/CLEAN_ columns and name."""

from __future__ import annotations

from publisher.arrivals.base import GOAL_COLUMNS, Column, Format, first_word, quoted_list, when

_MARKS = frozenset({"member_rating", "leid", "euid", "optin_time", "confirm_time"})


def detect(keys: frozenset[str]) -> bool:
    """'Email Address' and one of Mailchimp's own columns."""
    return "email_address" in keys and bool(keys & _MARKS)


def kind(keys: frozenset[str], file_name: str) -> tuple[str | None, str, str | None]:
    """The status of every row, what the file is, and why to refuse it without --status."""
    if "unsub_time" in keys:
        return "unsubscribed", "unsubscribed members (UNSUB_TIME): every row unsubscribed", None
    if "clean_time" in keys:
        return "bounced", "cleaned members (CLEAN_TIME): every row bounced", None
    if file_name.lower().startswith("nonsubscribed"):
        # Its columns are those of a subscribed file; only the name tells them apart.
        return None, "nonsubscribed members: contacts who never opted in", (
            "a Mailchimp nonsubscribed export holds contacts who never opted in, so none of "
            "them may be mailed; import it with --status pending to keep them on file, or "
            "leave it out (nothing imported)")
    return "active", "subscribed members: every row active", None


MAILCHIMP = Format(
    name="mailchimp", detect=detect, kind=kind, tags=quoted_list,
    columns=(
        Column(("email_address",), "email"),
        Column(("first_name", "fname"), "first_name"),
        Column(("name", "full_name"), "first_name", first_word),
        Column(GOAL_COLUMNS, "goal"),
        Column(("tags",), "tags", quoted_list),
        Column(("confirm_time", "optin_time"), "consent_at", when),
    ))
