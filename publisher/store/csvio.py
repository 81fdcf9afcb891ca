"""Readers in and out as Runletter's own CSV: an export neutralises cells a spreadsheet would
run as formulas; an import (read by `publisher.arrivals`) is one transaction."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from publisher.errors import Finding
from publisher.model import Goals
from publisher.store.readers import Store

IMPORT_COLUMNS = ("email", "first_name", "goal", "tags", "status")
# Every field the store keeps but its id, so an export imports back into a new store as it was;
# the race and zone come last, so a script reading the older columns by position still works.
EXPORT_COLUMNS = (*IMPORT_COLUMNS, "consent_source", "consent_at", "consent_ip", "created_at",
                  "updated_at", "race_date", "race_name", "timezone")
# Cells spreadsheets may run as formulas (OWASP CSV injection), behind any quotes we added.
_FORMULA_CELL_RE = re.compile(r"'*[=+\-@\t\r]")
_NEUTRALISED_CELL_RE = re.compile(r"'+[=+\-@\t\r]")


@dataclass(frozen=True)
class ImportReport:
    """What a CSV import did: counts, and a Finding per skipped row or kept status."""

    added: int
    updated: int
    unchanged: int
    skipped: int
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        """Findings for rows that were skipped."""
        return tuple(f for f in self.findings if f.level == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """Findings for rows that landed with something kept as it was."""
        return tuple(f for f in self.findings if f.level == "warning")


def export_csv(store: Store, out: TextIO, goal: str | None = None,
               status: str | None = None) -> int:
    """Write readers as CSV (header first); return how many rows were written."""
    # Every cell quoted: a spreadsheet that splits on ';' or tabs keeps "Bo;=1" whole.
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for sub in store.list(goal=goal, status=status):
        writer.writerow([neutralise_cell(cell) for cell in (
            sub.email, sub.first_name, sub.goal, ";".join(sub.tags), sub.status,
            sub.consent_source, sub.consent_at or "", sub.consent_ip or "", sub.created_at,
            sub.updated_at, sub.race_date or "", sub.race_name, sub.timezone)])
        count += 1
    return count


def import_csv(store: Store, path: Path, goals: Goals, *,
               display: str | None = None) -> ImportReport:
    """Import readers from Runletter's own CSV in one transaction (see `publisher.arrivals`)."""
    from publisher.arrivals import ArrivalOptions, import_file

    return import_file(store, path, goals, ArrivalOptions(source="runletter"), display=display)


def neutralise_cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP: prefix a single quote)."""
    # Values that already start with quotes before a formula character get one more, so
    # restore_cell can tell a quote we added from one that was stored: exact for any value.
    return "'" + value if _FORMULA_CELL_RE.match(value) else value


def restore_cell(cell: str) -> str:
    """The value neutralise_cell was given; other cells (e.g. "'Tis") are left as they are."""
    return cell[1:] if _NEUTRALISED_CELL_RE.match(cell) else cell
