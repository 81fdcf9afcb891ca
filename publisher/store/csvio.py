"""Readers in and out as CSV: an import is one transaction, bad rows are named by line,
and an export neutralises cells a spreadsheet would run as formulas."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..emails import fold_email, normalize_email, show_value, validate_email
from ..errors import Finding, RunletterError, display_path, suggest
from ..model import EVERYONE, Goals
from .readers import (
    COLUMNS,
    LEFT,
    STATUSES,
    Store,
    name_problem,
    now,
    split_tags,
    subscriber_from_row,
)

IMPORT_COLUMNS = ("email", "first_name", "goal", "tags", "status")
# Written by export_csv; accepted and ignored on import so an export can be imported back.
EXPORT_ONLY_COLUMNS = ("consent_source", "consent_at", "created_at")
EXPORT_COLUMNS = ("email", "first_name", "goal", "tags", "status", "consent_source",
                  "consent_at", "created_at")
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
            sub.consent_source, sub.consent_at or "", sub.created_at)])
        count += 1
    return count


def import_csv(store: Store, path: Path, goals: Goals, *,
               display: str | None = None) -> ImportReport:
    """Import readers from CSV in one transaction: bad rows reported by line and skipped."""
    shown = display or display_path(path)
    text = _read_text(Path(path), shown)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise RunletterError(Finding(shown, 1, f"the header is not valid CSV: {exc}")
                             ) from None
    columns = _check_header(header, shown)
    index = {name: i for i, name in enumerate(columns)}
    slugs = goals.slugs
    seen: dict[str, int] = {}  # folded address -> line of its first occurrence
    findings: list[Finding] = []
    added = updated = unchanged = skipped = 0
    source = f"import:{shown}"
    stamp = now()
    # A new address is inserted in one statement; only a conflict costs a second look.
    insert_sql = ("INSERT INTO subscribers(email, first_name, goal, tags, status, "
                  "consent_source, consent_at, created_at, updated_at) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(email) DO NOTHING")
    update_sql = ("UPDATE subscribers SET first_name = ?, goal = ?, tags = ?, status = ?, "
                  "updated_at = ? WHERE id = ?")
    select_sql = f"SELECT {COLUMNS} FROM subscribers WHERE email = ?"
    audit_rows: list[tuple] = []
    with store.transaction() as conn:
        previous_end = reader.line_num
        while True:
            try:
                record = next(reader, None)
            except csv.Error as exc:
                raise RunletterError(Finding(shown, previous_end + 1,
                                             f"not valid CSV: {exc}; nothing imported")
                                     ) from None
            if record is None:
                break
            # A quoted field may span lines; report the line the record starts on.
            line, previous_end = previous_end + 1, reader.line_num
            if not any(field.strip() for field in record):
                continue  # blank lines and spreadsheet filler rows carry nothing
            row, problems = _parse_row(record, columns, index, slugs)
            if row is not None:
                key = fold_email(row.email)
                first = seen.get(key)
                if first is not None:
                    problems.append(f"duplicate: {row.email} is already on line {first}; "
                                    "each reader may appear once")
                else:
                    seen[key] = line
            if problems or row is None:
                skipped += 1
                findings.append(Finding(shown, line, "; ".join(problems) + " (row skipped)"))
                continue
            status = row.status or "active"
            cursor = conn.execute(insert_sql, (
                row.email, row.first_name or "", row.goal or EVERYONE,
                ";".join(row.tags or ()), status, source, stamp, stamp, stamp))
            if cursor.rowcount == 1:
                audit_rows.append((cursor.lastrowid, row.email, None, status,
                                   f"imported from {shown}:{line}", stamp))
                added += 1
                continue
            existing = subscriber_from_row(conn.execute(select_sql, (row.email,)).fetchone())
            status = row.status or existing.status
            if existing.status in LEFT and status in ("active", "pending"):
                findings.append(Finding(
                    shown, line, f"{existing.email}: kept {existing.status}; a reader who "
                    "left must re-subscribe themselves", level="warning"))
                status = existing.status
            new = (row.first_name if row.first_name is not None else existing.first_name,
                   row.goal if row.goal is not None else existing.goal,
                   row.tags if row.tags is not None else existing.tags,
                   status)
            if new == (existing.first_name, existing.goal, existing.tags, existing.status):
                unchanged += 1
                continue
            conn.execute(update_sql, (new[0], new[1], ";".join(new[2]), new[3], stamp,
                                      existing.id))
            if status != existing.status:
                audit_rows.append((existing.id, existing.email, existing.status, status,
                                   f"imported from {shown}:{line}", stamp))
            updated += 1
        conn.executemany("INSERT INTO audit(subscriber_id, email, old_status, new_status, "
                         "reason, at) VALUES (?, ?, ?, ?, ?, ?)", audit_rows)
    return ImportReport(added=added, updated=updated, unchanged=unchanged, skipped=skipped,
                        findings=tuple(findings))



@dataclass(frozen=True)
class _ImportRow:
    """A CSV row's values after checking; None means the column is absent from the file."""

    email: str
    first_name: str | None
    goal: str | None
    tags: tuple[str, ...] | None
    status: str | None  # None or '' both mean "no status given"


def neutralise_cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP: prefix a single quote)."""
    # Values that already start with quotes before a formula character get one more, so
    # restore_cell can tell a quote we added from one that was stored: exact for any value.
    return "'" + value if _FORMULA_CELL_RE.match(value) else value


def restore_cell(cell: str) -> str:
    """The value neutralise_cell was given; other cells (e.g. "'Tis") are left as they are."""
    return cell[1:] if _NEUTRALISED_CELL_RE.match(cell) else cell


def _read_text(path: Path, shown: str) -> str:
    """The file's text (UTF-8, BOM optional), or a RunletterError naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunletterError(Finding(shown, None, f"cannot read the file: "
                                     f"{exc.strerror or exc}")) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RunletterError(Finding(shown, line, "not UTF-8 text; save it as 'CSV UTF-8' "
                                     "and import again (nothing imported)")) from None


def _check_header(header: list[str] | None, shown: str) -> list[str]:
    """The header's column names, or a RunletterError: nothing is imported from a bad header."""
    allowed = (*IMPORT_COLUMNS, *EXPORT_ONLY_COLUMNS)
    if not header or not any(h.strip() for h in header):
        raise RunletterError(Finding(shown, 1, "no header row; the first line must name the "
                                     f"columns, e.g. {','.join(IMPORT_COLUMNS)}"))
    columns = [h.strip().lower() for h in header]
    findings: list[Finding] = []
    for number, name in enumerate(columns, start=1):
        if not name:
            findings.append(Finding(shown, 1, f"column {number} has no name in the header"))
        elif name not in allowed:
            findings.append(Finding(shown, 1, f"unknown column '{name}'" + suggest(name, allowed)
                                    + f"; columns: {', '.join(IMPORT_COLUMNS)}"))
        elif columns.index(name) != number - 1:
            findings.append(Finding(shown, 1, f"column '{name}' appears twice in the header"))
    if "email" not in columns:
        findings.append(Finding(shown, 1, "the header has no 'email' column"))
    if findings:
        raise RunletterError([*findings, Finding(shown, None, "nothing imported")])
    return columns


def _parse_row(record: list[str], columns: list[str], index: dict[str, int],
               slugs: tuple[str, ...]) -> tuple[_ImportRow | None, list[str]]:
    """Check one CSV record; return the row (None if the email is unusable) and its problems."""
    if len(record) != len(columns):
        return None, [f"the row has {len(record)} fields; the header has {len(columns)} "
                      f"({','.join(columns)})"]
    problems: list[str] = []

    def value(name: str) -> str | None:
        return restore_cell(record[index[name]]) if name in index else None

    raw_email = value("email") or ""
    reason = validate_email(raw_email)
    if reason:
        problems.append(f"invalid email {show_value(raw_email)}: {reason}")
    first_name = value("first_name")
    if first_name is not None:
        first_name = first_name.strip()
        problem = name_problem(first_name)
        if problem:
            problems.append(problem)
    goal = value("goal")
    if goal is not None:
        goal = goal.strip().lower() or EVERYONE
        if goal not in slugs:
            problems.append(f"unknown goal {show_value(goal)}" + suggest(goal, slugs)
                            + f"; goals: {', '.join(slugs)}")
    status = value("status")
    if status is not None:
        status = status.strip().lower()
        if status and status not in STATUSES:
            problems.append(f"unknown status {show_value(status)}" + suggest(status, STATUSES)
                            + f"; use one of: {', '.join(STATUSES)}")
    raw_tags = value("tags")
    tags = split_tags([raw_tags]) if raw_tags is not None else None
    if reason:
        return None, problems
    return _ImportRow(email=normalize_email(raw_email), first_name=first_name, goal=goal,
                      tags=tags, status=status or None), problems
