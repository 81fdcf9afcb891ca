"""The subscriber store: readers, their consent, the delivery ledger and an audit trail, in a
SQLite file or a PostgreSQL database (`database`); the schema and its migrations are in
`schema` and `migrations`, CSV import and export in `csvio`. Every status change writes an
`audit` row in the same transaction as the change itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from publisher.emails import check_email, normalize_email, show_value
from publisher.errors import Finding, RunletterError
from publisher.model import EVERYONE, Goals
from publisher.store.changes import LEFT, ReaderChanges  # noqa: F401 - LEFT stays importable from here
from publisher.store.database import (
    Connection,
    connect,
    no_space,
    parse_url,
    shown,
    sqlite_disk_full,
)
from publisher.store.proposals import Proposals
from publisher.store.ready import ReadySteps
from publisher.store.records import (  # noqa: F401 - the store's record types stay importable from here
    COLUMNS,
    MAX_NAME,
    STATUSES,
    AuditEntry,
    Subscriber,
    check_goal,
    check_name,
    check_race_date,
    check_race_name,
    check_status,
    check_timezone,
    name_problem,
    now,
    split_tags,
    subscriber_from_row,
)
from publisher.store.schema import upgrade, version_of

if TYPE_CHECKING:
    from publisher.store.csvio import ImportReport

class Store(ReaderChanges, ReadySteps, Proposals):
    """The subscriber database. Open with `Store.open(path)`; use as a context manager.
    What readers and providers change (confirm, pause, change_goal, …) is in `changes`;
    a reader's "ready" at a gated step in `ready`; what a signup proposes in `proposals`."""

    def __init__(self, conn: Connection, path: Path | None, shown: str = ""):
        self._conn = conn
        self.path = path  # the SQLite file; None for a PostgreSQL store
        self.shown = shown or str(path)  # how errors name the store (no password)

    # -- opening and schema -------------------------------------------------------------

    @classmethod
    def open(cls, where: Path | str) -> Store:
        """Open (creating if needed) the store at a SQLite path or a database URL and bring
        its schema up to date."""
        from sqlalchemy.exc import DBAPIError

        url = where if isinstance(where, str) and "://" in where else f"sqlite:///{where}"
        parsed = parse_url(url)
        path = Path(parsed.database) if parsed.drivername == "sqlite" else None
        conn = connect(url)
        store = cls(conn, path, str(path) if path else shown(parsed))
        try:
            upgrade(conn, store.shown)
        except DBAPIError as exc:
            conn.close()
            if is_busy(exc):
                raise store._busy() from None
            raise RunletterError(Finding(store.shown, None, "not a usable subscriber store: "
                                         f"{str(exc.orig).splitlines()[0]}")) from None
        except BaseException:
            conn.close()
            raise
        return store

    @property
    def schema_version(self) -> int:
        """The schema version the database is at."""
        return version_of(self._conn) or 0

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql"."""
        return self._conn.dialect

    @property
    def conn(self) -> Connection:
        """The connection (autocommit; use `transaction()` to write)."""
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any error; nests by
        joining. On SQLite it takes the write lock up front (BEGIN IMMEDIATE), so two
        writers queue on busy_timeout instead of one failing when it upgrades a read lock."""
        from sqlalchemy.exc import OperationalError

        try:
            with self._conn.transaction() as conn:
                yield conn
        except OperationalError as exc:
            if is_busy(exc):
                raise self._busy() from None
            if self.path is not None and sqlite_disk_full(str(self.path), exc):
                raise no_space(self.shown) from None
            raise

    def _busy(self) -> RunletterError:
        return RunletterError(Finding(self.shown, None, "the subscriber store is locked by "
                                      "another runletter process; try again when it has "
                                      "finished"))

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- single readers --------------------------------------------------------------------

    def get(self, email: str) -> Subscriber | None:
        """The reader with this address (any case), or None."""
        row = self._conn.execute(f"SELECT {COLUMNS} FROM subscribers WHERE email = ?",
                                 (normalize_email(email),)).fetchone()
        return subscriber_from_row(row) if row else None

    def _get_id(self, subscriber_id: int) -> Subscriber | None:
        row = self._conn.execute(f"SELECT {COLUMNS} FROM subscribers WHERE id = ?",
                                 (subscriber_id,)).fetchone()
        return subscriber_from_row(row) if row else None

    def _require(self, email_or_id: str | int) -> Subscriber:
        found = (self._get_id(email_or_id) if isinstance(email_or_id, int)
                 else self.get(email_or_id))
        if found is None:
            shown = f"#{email_or_id}" if isinstance(email_or_id, int) else show_value(email_or_id)
            raise RunletterError(f"no subscriber {shown}")
        return found

    def _audit(self, subscriber_id: int | None, email: str, old: str | None, new: str,
               reason: str, at: str) -> None:
        self._conn.execute("INSERT INTO audit(subscriber_id, email, old_status, new_status, "
                           "reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                           (subscriber_id, email, old, new, reason, at))

    def add(self, email: str, *, goal: str = EVERYONE, first_name: str = "",
            tags: Iterable[str] = (), status: str = "active", consent_source: str = "cli",
            consent_ip: str | None = None, race_date: str | None = None,
            race_name: str = "", timezone: str = "") -> Subscriber:
        """Add a new reader; a RunletterError says why when the row is invalid or present."""
        address = check_email(email)
        goal = check_goal(goal)
        first_name = check_name(first_name)
        check_status(status)
        race = (check_race_date(race_date), check_race_name(race_name), check_timezone(timezone))
        stamp = now()
        with self.transaction() as conn:
            # DO NOTHING rather than a look first: on PostgreSQL another process may add the
            # same address between the look and the insert (SQLite's write lock forbids it).
            new_id = conn.execute(
                "INSERT INTO subscribers(email, first_name, goal, tags, status, consent_source, "
                "consent_at, consent_ip, created_at, updated_at, race_date, race_name, "
                "timezone, enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(email) DO NOTHING RETURNING id",
                (address, first_name, goal, ";".join(split_tags(tags)), status, consent_source,
                 stamp, consent_ip, stamp, stamp, *race, stamp)).scalar_one_or_none()
            if new_id is None:
                existing = self._require(address)
                raise RunletterError(f"{existing.email} is already a subscriber "
                                     f"(status {existing.status})")
            self._audit(new_id, address, None, status, f"added ({consent_source})", stamp)
            added = self._get_id(new_id)
        assert added is not None
        return added

    def remove(self, email: str, reason: str = "removed") -> bool:
        """Delete a reader (their ledger rows go too); False when there was no such reader."""
        with self.transaction() as conn:
            found = self.get(email)
            if found is None:
                return False
            conn.execute("DELETE FROM subscribers WHERE id = ?", (found.id,))
            self._audit(found.id, found.email, found.status, "removed", reason, now())
        return True

    def set_status(self, email_or_id: str | int, status: str, reason: str) -> Subscriber:
        """Change a reader's status, recording who/why in the audit trail."""
        check_status(status)
        with self.transaction():
            found = self._require(email_or_id)
            # The author's command may set any status, but from the one it read: locked.
            found = self._locked(found.id) or found
            if found.status == status:
                return found
            self._move(found, status, reason)
            changed = self._get_id(found.id)
        assert changed is not None
        return changed

    def update(self, email: str, *, goal: str | None = None, first_name: str | None = None,
               tags: Iterable[str] | None = None, race_date: str | None = None,
               race_name: str | None = None, timezone: str | None = None) -> Subscriber:
        """Change a reader's goal, first name, tags, race date, race name or time zone (None
        leaves a field as it is; "" clears race_date, race_name and timezone)."""
        given = {"goal": (goal, check_goal), "first_name": (first_name, check_name),
                 "tags": (tags, split_tags), "race_date": (race_date, check_race_date),
                 "race_name": (race_name, check_race_name),
                 "timezone": (timezone, check_timezone)}
        checked = {name: check(value) for name, (value, check) in given.items()
                   if value is not None}
        with self.transaction() as conn:
            found = self._require(email)
            new = dataclasses.replace(found, **checked)
            if new == found:
                return found
            conn.execute("UPDATE subscribers SET goal = ?, first_name = ?, tags = ?, "
                         "race_date = ?, race_name = ?, timezone = ?, updated_at = ? "
                         "WHERE id = ?",
                         (new.goal, new.first_name, ";".join(new.tags), new.race_date,
                          new.race_name, new.timezone, now(), found.id))
            changed = self._get_id(found.id)
        assert changed is not None
        return changed

    def history(self, email: str) -> tuple[AuditEntry, ...]:
        """Every recorded status change for an address, oldest first."""
        rows = self._conn.execute(
            "SELECT subscriber_id, email, old_status, new_status, reason, at FROM audit "
            # Stores made before version 6 keep audit addresses with case: fold here too.
            f"WHERE email = ?{' COLLATE NOCASE' if self.dialect == 'sqlite' else ''} "
            "ORDER BY id", (normalize_email(email),))
        return tuple(AuditEntry(*row) for row in rows)

    # -- many readers ----------------------------------------------------------------------

    def list(self, goal: str | None = None, status: str | None = None,
             batch_size: int = 1000) -> Iterator[Subscriber]:
        """Readers ordered by email, optionally only one goal and/or status; streamed."""
        where, params = [], []
        if goal is not None:
            where.append("goal = ?")
            params.append(goal)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        # SQLite's NOCASE orders by the address with ASCII folded; citext folds and orders by
        # the database's collation (en_US puts 'A_c' before 'a-z'), unless told "C", which
        # then orders exactly as NOCASE does: the same list, and export, on both.
        email = "email" if self.dialect == "sqlite" else 'email COLLATE "C"'
        after: str | None = None
        while True:
            clauses = [*where, f"{email} > ?"] if after is not None else where
            sql = (f"SELECT {COLUMNS} FROM subscribers"
                   + (" WHERE " + " AND ".join(clauses) if clauses else "")
                   + f" ORDER BY {email} LIMIT ?")
            rows = self._conn.execute(
                sql, [*params, *([after] if after is not None else []), batch_size]).fetchall()
            yield from (subscriber_from_row(r) for r in rows)
            if len(rows) < batch_size:
                return
            after = rows[-1][1]

    def count_by_goal(self, status: str | None = "active") -> dict[str, int]:
        """How many readers each goal has, for one status (None counts every status)."""
        if status is None:
            rows = self._conn.execute("SELECT goal, COUNT(*) FROM subscribers GROUP BY goal "
                                      "ORDER BY goal")
        else:
            rows = self._conn.execute("SELECT goal, COUNT(*) FROM subscribers WHERE status = ? "
                                      "GROUP BY goal ORDER BY goal", (status,))
        return dict(rows.fetchall())

    def iter_active(self, goals: Collection[str],
                    batch_size: int = 1000) -> Iterator[list[Subscriber]]:
        """Active readers whose goal is in `goals`, in id order, `batch_size` at a time."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        wanted = sorted(set(goals))
        if not wanted:
            return
        marks = ", ".join("?" * len(wanted))
        # Keyset pagination: each batch is its own short query, so memory stays at one batch
        # and no read snapshot is held open while the caller sends. The unary '+' keeps the
        # planner walking the primary key from `id > ?` instead of sorting every remaining
        # match from the (status, goal) index on each batch.
        status = "+status" if self.dialect == "sqlite" else "status"
        sql = (f"SELECT {COLUMNS} FROM subscribers WHERE {status} = 'active' "
               f"AND goal IN ({marks}) AND id > ? ORDER BY id LIMIT ?")
        last = 0
        while True:
            rows = self._conn.execute(sql, (*wanted, last, batch_size)).fetchall()
            if not rows:
                return
            yield [subscriber_from_row(r) for r in rows]
            if len(rows) < batch_size:
                return
            last = rows[-1][0]

    # -- CSV ---------------------------------------------------------------------------------

    def export_csv(self, out: TextIO, goal: str | None = None,
                   status: str | None = None) -> int:
        """Write readers as CSV (header first); return how many rows were written."""
        from publisher.store.csvio import export_csv

        return export_csv(self, out, goal=goal, status=status)

    def import_csv(self, path: Path, goals: Goals, *,
                   display: str | None = None) -> ImportReport:
        """Import readers from CSV in one transaction: bad rows reported by line and skipped."""
        from publisher.store.csvio import import_csv

        return import_csv(self, path, goals, display=display)


# PostgreSQL's lock_not_available (lock_timeout ran out) and deadlock_detected (rolled back:
# trying again is the way out too).
BUSY_STATES = frozenset({"55P03", "40P01"})


def is_busy(exc: BaseException) -> bool:
    """A lock held by another process (SQLite's "database is locked", PostgreSQL's lock
    timeout or deadlock)."""
    import sqlite3

    orig = getattr(exc, "orig", exc)
    if not isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlstate", None) in BUSY_STATES
    text = str(orig).lower()
    return "locked" in text or "busy" in text
