"""Readers out as Runletter's own CSV: every field the store keeps, with cells a spreadsheet
would run as formulas neutralised (and a way back, for `publisher.arrivals`, which reads the
file in again)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import TextIO

from publisher.store.records import Subscriber

IMPORT_COLUMNS = ("email", "first_name", "goal", "tags", "status")
# Every field the store keeps but its id, so an export imports back into a new store as it was;
# the race and zone come last, so a script reading the older columns by position still works.
EXPORT_COLUMNS = (*IMPORT_COLUMNS, "consent_source", "consent_at", "consent_ip", "created_at",
                  "updated_at", "race_date", "race_name", "timezone")
# Cells spreadsheets may run as formulas (OWASP CSV injection), behind any quotes we added.
_FORMULA_CELL_RE = re.compile(r"'*[=+\-@\t\r]")
_NEUTRALISED_CELL_RE = re.compile(r"'+[=+\-@\t\r]")


def export_csv(readers: Iterable[Subscriber], out: TextIO) -> int:
    """Write readers as CSV (header first); return how many rows were written."""
    # Every cell quoted: a spreadsheet that splits on ';' or tabs keeps "Bo;=1" whole.
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for sub in readers:
        writer.writerow([neutralise_cell(cell) for cell in (
            sub.email, sub.first_name, sub.goal, ";".join(sub.tags), sub.status,
            sub.consent_source, sub.consent_at or "", sub.consent_ip or "", sub.created_at,
            sub.updated_at, sub.race_date or "", sub.race_name, sub.timezone)])
        count += 1
    return count


def neutralise_cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP: prefix a single quote)."""
    # Values that already start with quotes before a formula character get one more, so
    # restore_cell can tell a quote we added from one that was stored: exact for any value.
    return "'" + value if _FORMULA_CELL_RE.match(value) else value


def restore_cell(cell: str) -> str:
    """The value neutralise_cell was given; other cells (e.g. "'Tis") are left as they are."""
    return cell[1:] if _NEUTRALISED_CELL_RE.match(cell) else cell
