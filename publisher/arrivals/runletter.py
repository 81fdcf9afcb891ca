"""Runletter's own CSV: what `subscribers export` writes, and what a coach writes by hand
(email, first_name, goal, tags, status, race_date, race_name, timezone). A blank cell is a
value here: it clears the field."""

from __future__ import annotations

import ipaddress

from publisher.arrivals.base import (
    RACE_FIELDS,
    RACE_READERS,
    Column,
    Format,
    RowProblem,
    status_reader,
    when,
)
from publisher.emails import show_value
from publisher.store import EXPORT_COLUMNS, STATUSES, restore_cell
from publisher.store.records import split_tags

STATUS_TABLE = {status: status for status in STATUSES}
RUNLETTER_STATUS = status_reader("", STATUS_TABLE)


def detect(keys: frozenset[str]) -> bool:
    """An `email` column and only columns of the export."""
    return "email" in keys and keys <= set(EXPORT_COLUMNS)


def tags(text: str) -> tuple[str, ...]:
    """Tags split on ';', as the export joins them."""
    return split_tags([restore_cell(text)])


def ip(text: str) -> str | None:
    """The address consent was given from, as the store keeps it."""
    value = restore_cell(text).strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise RowProblem(f"consent_ip {show_value(value)} is not an IP address") from None


def _plain(text: str) -> str:
    return restore_cell(text).strip()


def _race_column(name: str) -> Column:
    """A race or zone column: a blank cell clears the field, a bad one skips the row."""
    read = RACE_READERS[name]
    return Column((name,), name, lambda text: read(restore_cell(text)), blank=True)


RUNLETTER = Format(
    name="runletter", detect=detect, statuses=STATUS_TABLE, tags=tags,
    strict=True, needs_status=False,
    columns=(
        Column(("email",), "email", restore_cell),
        Column(("first_name",), "first_name", _plain, blank=True),
        Column(("goal",), "goal", _plain, blank=True),
        Column(("tags",), "tags", tags, blank=True),
        Column(("status",), "status", lambda text: RUNLETTER_STATUS(restore_cell(text))),
        Column(("consent_source",), "consent_source", _plain),
        Column(("consent_at",), "consent_at", when),
        Column(("consent_ip",), "consent_ip", ip),
        Column(("created_at",), "created_at", when),
        Column(("updated_at",), "updated_at", when),
        *(_race_column(name) for name in RACE_FIELDS),
    ))
