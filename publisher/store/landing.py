"""Imported readers landing in the store: one transaction per file, duplicates within the file
named by line, every status change audited, and a reader who left never made active (or
pending) again by an import."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..model import EVERYONE
from .readers import COLUMNS, LEFT, Store, now, subscriber_from_row

# Audit rows are written in batches so a 100,000-row import never holds them all.
_AUDIT_BATCH = 1000
_INSERT = ("INSERT INTO subscribers(email, first_name, goal, tags, status, consent_source, "
           "consent_at, consent_ip, created_at, updated_at) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(email) DO NOTHING")
_UPDATE = ("UPDATE subscribers SET first_name = ?, goal = ?, tags = ?, status = ?, "
           "updated_at = ? WHERE id = ?")
_SELECT = f"SELECT {COLUMNS} FROM subscribers WHERE email = ?"
_AUDIT = ("INSERT INTO audit(subscriber_id, email, old_status, new_status, reason, at) "
          "VALUES (?, ?, ?, ?, ?, ?)")


@dataclass(frozen=True)
class Landing:
    """One reader as a file gives them; None leaves a stored reader's field as it is."""

    email: str
    first_name: str | None
    goal: str | None
    tags: tuple[str, ...] | None
    status: str | None  # None: a new reader is active, a stored one keeps their status
    consent_source: str
    consent_at: str | None = None  # None: the import time
    consent_ip: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class Landed:
    """What landing one row did, and the reader's status and goal afterwards."""

    outcome: str  # added | updated | unchanged
    status: str
    goal: str
    kept: str | None = None  # the status kept against the file's, for a warning


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


class Lander:
    """Writes one file's rows inside its transaction; use through `importing()`."""

    def __init__(self, conn: sqlite3.Connection, shown: str):
        self._conn = conn
        self._shown = shown
        self._stamp = now()
        self._audit: list[tuple] = []
        # Addresses seen in this file live in a temporary table, not in Python, so memory
        # stays flat however long the file is; NOCASE folds as the UNIQUE email column does.
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS import_seen(email TEXT PRIMARY KEY "
                     "COLLATE NOCASE, line INTEGER NOT NULL) WITHOUT ROWID")
        conn.execute("DELETE FROM temp.import_seen")

    def first_line(self, email: str, line: int) -> int | None:
        """The line this address was first seen on in the file, or None (now seen on `line`)."""
        cursor = self._conn.execute("INSERT INTO temp.import_seen(email, line) VALUES (?, ?) "
                                    "ON CONFLICT(email) DO NOTHING", (email, line))
        if cursor.rowcount == 1:
            return None
        return self._conn.execute("SELECT line FROM temp.import_seen WHERE email = ?",
                                  (email,)).fetchone()[0]

    def land(self, row: Landing, line: int) -> Landed:
        """Insert a new reader, or update a stored one without making a leaver active."""
        stamp = self._stamp
        status = row.status or "active"
        goal = row.goal or EVERYONE
        cursor = self._conn.execute(_INSERT, (
            row.email, row.first_name or "", goal, ";".join(row.tags or ()), status,
            row.consent_source, row.consent_at or stamp, row.consent_ip,
            row.created_at or stamp, row.updated_at or stamp))
        if cursor.rowcount == 1:
            self._record(cursor.lastrowid, row.email, None, status, line)
            return Landed("added", status, goal)
        return self._update(row, line)

    def _update(self, row: Landing, line: int) -> Landed:
        existing = subscriber_from_row(self._conn.execute(_SELECT, (row.email,)).fetchone())
        status, kept = row.status or existing.status, None
        if existing.status in LEFT and status in ("active", "pending"):
            status, kept = existing.status, existing.status
        new = (existing.first_name if row.first_name is None else row.first_name,
               existing.goal if row.goal is None else row.goal,
               existing.tags if row.tags is None else row.tags,
               status)
        if new == (existing.first_name, existing.goal, existing.tags, existing.status):
            return Landed("unchanged", status, new[1], kept)
        self._conn.execute(_UPDATE, (new[0], new[1], ";".join(new[2]), status, self._stamp,
                                     existing.id))
        if status != existing.status:
            self._record(existing.id, existing.email, existing.status, status, line)
        return Landed("updated", status, new[1], kept)

    def _record(self, subscriber_id: int | None, email: str, old: str | None, new: str,
                line: int) -> None:
        self._audit.append((subscriber_id, email, old, new,
                            f"imported from {self._shown}:{line}", self._stamp))
        if len(self._audit) >= _AUDIT_BATCH:
            self._flush()

    def _flush(self) -> None:
        self._conn.executemany(_AUDIT, self._audit)
        self._audit.clear()

    def finish(self) -> None:
        """Write the audit rows still held and forget the file's addresses."""
        self._flush()
        self._conn.execute("DROP TABLE temp.import_seen")


@contextmanager
def importing(store: Store, shown: str, *, dry_run: bool = False) -> Iterator[Lander]:
    """A Lander in one write transaction: committed at the end, rolled back on any error,
    and rolled back anyway on a dry run, which therefore writes nothing."""
    try:
        with store.transaction() as conn:
            lander = Lander(conn, shown)
            yield lander
            lander.finish()
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
