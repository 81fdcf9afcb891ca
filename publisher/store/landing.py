"""Imported readers landing in the store: one transaction per file, duplicates within the file
named by line, every status change audited, and a reader who left never made active (or
pending) again by an import."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import insert

from publisher.emails import fold_email
from publisher.model import EVERYONE
from publisher.store.changes import LEFT
from publisher.store.database import listing
from publisher.store.records import COLUMNS, Subscriber, now, subscriber_from_row
from publisher.store.tables import audit

if TYPE_CHECKING:
    from publisher.store.database import Connection
    from publisher.store.store import Store

# Audit rows are written in batches so a 100,000-row import never holds them all.
_AUDIT_BATCH = 1000
_INSERT = ("INSERT INTO subscribers(email, first_name, goal, tags, status, consent_source, "
           "consent_at, consent_ip, created_at, updated_at, race_date, race_name, timezone, "
           "enrolled_at) VALUES (:email, :first_name, :goal, :tags, :status, :consent_source, "
           ":consent_at, :consent_ip, :created_at, :updated_at, :race_date, :race_name, "
           ":timezone, :enrolled_at) ON CONFLICT(email) DO NOTHING")
# --enrol on a reader already stored who was imported without it.
_ENROL = ("UPDATE subscribers SET enrolled_at = :at WHERE email = :email "
          "AND enrolled_at IS NULL")
_UPDATE = ("UPDATE subscribers SET first_name = :first_name, goal = :goal, tags = :tags, "
           "race_date = :race_date, race_name = :race_name, timezone = :timezone, "
           "status = :status, updated_at = :at WHERE id = :id")
# The fields a file may change on a stored reader, besides the status.
_MERGED = ("first_name", "goal", "tags", "race_date", "race_name", "timezone")
_IN_LIMIT = 500  # addresses per "email IN (…)" query, well under SQLite's variable limit
# Addresses seen in this file; folded as the email column folds them (NOCASE, citext).
_SEEN = {"sqlite": "CREATE TEMP TABLE IF NOT EXISTS import_seen(email TEXT PRIMARY KEY "
                   "COLLATE NOCASE, line INTEGER NOT NULL) WITHOUT ROWID",
         "postgresql": "CREATE TEMP TABLE IF NOT EXISTS import_seen(email CITEXT PRIMARY KEY, "
                       "line INTEGER NOT NULL)"}


class Landing(NamedTuple):
    """One reader as a file gives them; None leaves a stored reader's field as it is."""

    email: str
    first_name: str | None
    goal: str | None
    tags: tuple[str, ...] | None
    status: str | None  # None: a new reader is active, a stored one keeps their status
    consent_source: str
    consent_at: str | None = None  # None: unknown (never invented)
    consent_ip: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    race_date: str | None = None  # "" clears it, as for race_name and timezone
    race_name: str | None = None
    timezone: str | None = None


class Landed(NamedTuple):
    """What landing one row did, and the reader's status and goal afterwards."""

    outcome: str  # added | updated | unchanged
    status: str
    goal: str
    kept: str | None = None  # the status kept against the file's, for a warning


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


class Lander:
    """Writes one file's rows inside its transaction, a batch at a time (a few statements
    per batch rather than several per row); use through `importing()`."""

    def __init__(self, conn: Connection, shown: str, enrol: bool = False):
        self._conn = conn
        self._shown = shown
        self._enrol = enrol  # the import's time is their signup sequences' start
        self._stamp = now()
        self._audit: list[dict] = []
        # Readers with a higher id were inserted by this import.
        self._top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM subscribers").fetchone()[0]
        # Addresses seen in this file live in a temporary table, not in Python, so memory
        # stays flat however long the file is; NOCASE folds as the UNIQUE email column does.
        conn.execute(_SEEN[conn.dialect])
        conn.execute("DELETE FROM import_seen")

    def claim(self, claims: list[tuple[str, int]]) -> dict[int, int]:
        """Note each (address, line); return {line: earlier line} for addresses seen before."""
        if not claims:
            return {}
        added = self._conn.executemany(
            "INSERT INTO import_seen(email, line) VALUES (:email, :line) "
            "ON CONFLICT(email) DO NOTHING",
            ({"email": email, "line": line} for email, line in claims))
        if added == len(claims):
            return {}  # every address new: nothing to look up
        first = {fold_email(email): line for email, line in self._select(
            "SELECT email, line FROM import_seen", [email for email, _ in claims])}
        return {line: first[fold_email(email)] for email, line in claims
                if first[fold_email(email)] != line}

    def land(self, rows: list[tuple[int, Landing]]) -> list[Landed]:
        """Insert new readers and update stored ones, never making a leaver active; the rows
        have distinct addresses (claim() finds the repeats)."""
        if not rows:
            return []
        stamp = self._stamp
        self._conn.executemany(_INSERT, [{
            "email": row.email, "first_name": row.first_name or "",
            "goal": row.goal or EVERYONE, "tags": ";".join(row.tags or ()),
            "status": row.status or "active", "consent_source": row.consent_source,
            "consent_at": row.consent_at, "consent_ip": row.consent_ip,
            "created_at": row.created_at or stamp, "updated_at": row.updated_at or stamp,
            "race_date": row.race_date or None, "race_name": row.race_name or "",
            "timezone": row.timezone or "", "enrolled_at": stamp if self._enrol else None}
            for _, row in rows])
        # The rows just inserted are those above the highest id so far (a range scan), with
        # the address exactly as the file gave it; only the others are looked up by address.
        inserted = {email: (id_, goal, status) for id_, email, goal, status in
                    self._conn.execute("SELECT id, email, goal, status FROM subscribers "
                                       "WHERE id > :top", {"top": self._top})}
        self._top = max([self._top, *(id_ for id_, _, _ in inserted.values())])
        stored = {fold_email(found[1]): found for found in self._select(
            f"SELECT {COLUMNS} FROM subscribers",
            [row.email for _, row in rows if row.email not in inserted])}
        out, updates = [], []
        for line, row in rows:
            hit = inserted.get(row.email)
            if hit is None:
                existing = subscriber_from_row(stored[fold_email(row.email)])
                out.append(self._merge(existing, row, line, updates))
                continue
            self._record(hit[0], row.email, None, hit[2], line)
            out.append(Landed("added", hit[2], hit[1]))
        self._conn.executemany(_UPDATE, updates)
        if self._enrol:
            self._conn.executemany(_ENROL, [{"at": stamp, "email": row.email}
                                            for _, row in rows if row.email not in inserted])
        if len(self._audit) >= _AUDIT_BATCH:
            self._flush()
        return out

    def keep_opt_outs(self, rows: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
        """For rows that could not land but say the person left (line, address, status): a
        stored reader still active or pending gets that status. Returns (line, address, old
        status) for each reader changed."""
        changed = []
        for line, email, status in rows:
            found = self._conn.execute("SELECT id, email, status FROM subscribers "
                                       "WHERE email = :email", {"email": email}).fetchone()
            if found is None or found[2] in LEFT:
                continue
            self._conn.execute("UPDATE subscribers SET status = :status, updated_at = :at "
                               "WHERE id = :id",
                               {"status": status, "at": self._stamp, "id": found[0]})
            self._record(found[0], found[1], found[2], status, line)
            changed.append((line, found[1], found[2]))
        return changed

    def _merge(self, existing: Subscriber, row: Landing, line: int,
               updates: list[dict]) -> Landed:
        """A stored reader with the file's values; a leaver keeps their status."""
        status, kept = row.status or existing.status, None
        if existing.status in LEFT and status in ("active", "pending"):
            status, kept = existing.status, existing.status
        old = tuple(getattr(existing, name) for name in _MERGED)
        new = [was if getattr(row, name) is None else getattr(row, name)
               for name, was in zip(_MERGED, old, strict=True)]
        new[3] = new[3] or None  # a race date is stored as NULL when there is none
        if (*new, status) == (*old, existing.status):
            return Landed("unchanged", status, new[1], kept)
        updates.append({**dict(zip(_MERGED, new, strict=True)), "tags": ";".join(new[2]),
                        "status": status, "at": self._stamp, "id": existing.id})
        if status != existing.status:
            self._record(existing.id, existing.email, existing.status, status, line)
        return Landed("updated", status, new[1], kept)

    def _select(self, sql: str, emails: list[str]) -> list[tuple]:
        """Rows of `sql` whose email is one of `emails`."""
        query = listing(f"{sql} WHERE email IN :emails", "emails")
        found: list[tuple] = []
        for start in range(0, len(emails), _IN_LIMIT):
            found += self._conn.execute(
                query, {"emails": emails[start:start + _IN_LIMIT]}).fetchall()
        return found

    def _record(self, subscriber_id: int | None, email: str, old: str | None, new: str,
                line: int) -> None:
        self._audit.append({"subscriber_id": subscriber_id, "email": email, "old_status": old,
                            "new_status": new, "reason": f"imported from {self._shown}:{line}",
                            "at": self._stamp})

    def _flush(self) -> None:
        self._conn.executemany(insert(audit), self._audit)
        self._audit.clear()

    def finish(self) -> None:
        """Write the audit rows still held and forget the file's addresses."""
        self._flush()
        self._conn.execute("DROP TABLE import_seen")


@contextmanager
def importing(store: Store, shown: str, *, dry_run: bool = False,
              enrol: bool = False) -> Iterator[Lander]:
    """A Lander in one write transaction: committed at the end, rolled back on any error,
    and rolled back anyway on a dry run, which therefore writes nothing. With `enrol`, the
    file's readers join the signup sequences from now; without, new ones never do."""
    try:
        with store.transaction() as conn:
            lander = Lander(conn, shown, enrol)
            yield lander
            lander.finish()
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
