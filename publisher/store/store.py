"""The subscriber store: readers, their consent, the delivery ledger and an audit trail, in a
SQLite file or a PostgreSQL database (`database`), brought to the newest schema on opening
(`upgrade`). `Store` holds one reader's rows and many readers' lists; what readers and
providers change is in `changes`, a reader's "ready" in `ready`, what a signup proposes in
`proposals`, the CSV export in `export`. Every status change writes an `audit` row in the
same transaction as the change itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError, OperationalError

from publisher.config import parse_url, printable_url
from publisher.emails import check_email, normalize_email, show_value
from publisher.errors import Finding, RunletterError
from publisher.model import EVERYONE
from publisher.store.changes import ReaderChanges
from publisher.store.database import (
    Connection,
    connect,
    is_busy,
    listing,
    no_space,
    sqlite_disk_full,
)
from publisher.store.export import export_csv
from publisher.store.proposals import Proposals
from publisher.store.ready import ReadySteps
from publisher.store.records import (
    COLUMNS,
    AuditEntry,
    Subscriber,
    check_goal,
    check_name,
    check_race_date,
    check_race_name,
    check_status,
    check_timezone,
    now,
    split_tags,
    subscriber_from_row,
)
from publisher.store.tables import audit
from publisher.store.upgrade import upgrade, version_of

_BY_EMAIL = f"SELECT {COLUMNS} FROM subscribers WHERE email = :email"
_BY_ID = f"SELECT {COLUMNS} FROM subscribers WHERE id = :id"

# A write this large makes the tables' statistics stale for PostgreSQL's planner (a fresh
# table looks empty to it until autovacuum's ANALYZE, and a 1M publish once ran its first
# minute at 25 messages a second on such plans): the writer ANALYZEs them at once, when it
# wrote at least ANALYZE_AFTER rows and a tenth of what the planner last counted (the rule
# autovacuum follows, without its wait; a busy hour plans each step's rows apart).
ANALYZE_AFTER = 1_000
ANALYZE_SHARE = 0.1


class Store(ReaderChanges, ReadySteps, Proposals):
    """The subscriber database. Open with `Store.open(path)`; use as a context manager.
    What readers and providers change (confirm, pause, change_goal, …) is in `changes`;
    a reader's "ready" at a gated step in `ready`; what a signup proposes in `proposals`:
    those build on the public methods here (by_id, locked, move_status, write_audit)."""

    def __init__(self, conn: Connection, path: Path | None, shown: str = ""):
        self._conn = conn
        self.path = path  # the SQLite file; None for a PostgreSQL store
        self.shown = shown or str(path)  # how errors name the store (no password)

    # -- opening and schema -------------------------------------------------------------

    @classmethod
    def open(cls, where: Path | str) -> Store:
        """Open (creating if needed) the store at a SQLite path or a database URL and bring
        its schema up to date."""
        url = where if isinstance(where, str) and "://" in where else f"sqlite:///{where}"
        parsed = parse_url(url)
        path = Path(parsed.database) if parsed.drivername == "sqlite" else None
        conn = connect(url)
        store = cls(conn, path, str(path) if path else printable_url(parsed))
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
        try:
            with self._conn.transaction() as conn:
                yield conn
        except OperationalError as exc:
            if is_busy(exc):
                raise self._busy() from None
            if self.path is not None and sqlite_disk_full(str(self.path), exc):
                raise no_space(self.shown) from None
            raise

    def analyze(self, tables: Sequence[str], written: int | None = None) -> None:
        """Bring PostgreSQL's planner statistics for these tables up to date after a bulk
        write of `written` rows to the first of them (see ANALYZE_AFTER; None: whatever it
        was), so the next statements are not planned for the tables as they were.

        Nothing on SQLite: its planner uses no statistics unless ANALYZE has written
        sqlite_stat1, which would change every plan the store's statements were written for.
        """
        if self.dialect != "postgresql":
            return
        names = [t for t in tables if t.isidentifier()]
        if written is not None:
            counted = self._conn.execute(
                "SELECT COALESCE(MAX(reltuples), 0) FROM pg_class WHERE relname = :name",
                {"name": names[0]}).scalar()
            if written < max(ANALYZE_AFTER, ANALYZE_SHARE * counted):
                return
        self._conn.raw("ANALYZE " + ", ".join(names))

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
        row = self._conn.execute(_BY_EMAIL, {"email": normalize_email(email)}).fetchone()
        return subscriber_from_row(row) if row else None

    def by_id(self, subscriber_id: int) -> Subscriber | None:
        """The reader with this id, or None."""
        row = self._conn.execute(_BY_ID, {"id": subscriber_id}).fetchone()
        return subscriber_from_row(row) if row else None

    def require(self, email_or_id: str | int) -> Subscriber:
        """The reader with this address or id; a RunletterError when there is none."""
        found = (self.by_id(email_or_id) if isinstance(email_or_id, int)
                 else self.get(email_or_id))
        if found is None:
            shown = f"#{email_or_id}" if isinstance(email_or_id, int) else show_value(email_or_id)
            raise RunletterError(f"no subscriber {shown}")
        return found

    def locked(self, subscriber_id: int) -> Subscriber | None:
        """The reader, their row locked until the transaction ends, so what a change reads
        (their status, their last audit row) stays true until it writes. PostgreSQL needs
        FOR UPDATE: two transactions there may both read before either writes. SQLite's
        BEGIN IMMEDIATE already holds the whole store's write lock."""
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        row = self._conn.execute(_BY_ID + lock, {"id": subscriber_id}).fetchone()
        return subscriber_from_row(row) if row else None

    def move_status(self, reader: Subscriber, status: str, reason: str) -> bool:
        """Move a reader read by `locked` to `status` with one conditional UPDATE (only from
        the status read), and its audit row only when a row changed; True when it moved."""
        stamp = now()
        moved = self._conn.execute(
            "UPDATE subscribers SET status = :status, updated_at = :at WHERE id = :id "
            "AND status = :was RETURNING id",
            {"status": status, "at": stamp, "id": reader.id, "was": reader.status}).fetchone()
        if moved is not None and reader.status != status:
            self.write_audit(reader.id, reader.email, reader.status, status, reason, stamp)
        return moved is not None and reader.status != status

    def write_audit(self, subscriber_id: int | None, email: str, old: str | None, new: str,
                    reason: str, at: str) -> None:
        """One audit row, in the caller's transaction: a status change and why."""
        self._conn.execute(insert(audit), {"subscriber_id": subscriber_id, "email": email,
                                    "old_status": old, "new_status": new, "reason": reason,
                                    "at": at})

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
                "timezone, enrolled_at) VALUES (:email, :first_name, :goal, :tags, :status, "
                ":consent_source, :at, :consent_ip, :at, :at, :race_date, :race_name, "
                ":timezone, :at) ON CONFLICT(email) DO NOTHING RETURNING id",
                {"email": address, "first_name": first_name, "goal": goal,
                 "tags": ";".join(split_tags(tags)), "status": status,
                 "consent_source": consent_source, "consent_ip": consent_ip, "at": stamp,
                 "race_date": race[0], "race_name": race[1], "timezone": race[2]},
            ).scalar_one_or_none()
            if new_id is None:
                existing = self.require(address)
                raise RunletterError(f"{existing.email} is already a subscriber "
                                     f"(status {existing.status})")
            self.write_audit(new_id, address, None, status, f"added ({consent_source})", stamp)
            added = self.by_id(new_id)
        assert added is not None
        return added

    def remove(self, email: str, reason: str = "removed") -> bool:
        """Delete a reader (their ledger rows go too); False when there was no such reader."""
        with self.transaction() as conn:
            found = self.get(email)
            if found is None:
                return False
            conn.execute("DELETE FROM subscribers WHERE id = :id", {"id": found.id})
            self.write_audit(found.id, found.email, found.status, "removed", reason, now())
        return True

    def set_status(self, email_or_id: str | int, status: str, reason: str) -> Subscriber:
        """Change a reader's status, recording who/why in the audit trail."""
        check_status(status)
        with self.transaction():
            found = self.require(email_or_id)
            # The author's command may set any status, but from the one it read: locked.
            found = self.locked(found.id) or found
            if found.status == status:
                return found
            self.move_status(found, status, reason)
            changed = self.by_id(found.id)
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
            found = self.require(email)
            new = dataclasses.replace(found, **checked)
            if new == found:
                return found
            conn.execute("UPDATE subscribers SET goal = :goal, first_name = :first_name, "
                         "tags = :tags, race_date = :race_date, race_name = :race_name, "
                         "timezone = :timezone, updated_at = :at WHERE id = :id",
                         {"goal": new.goal, "first_name": new.first_name,
                          "tags": ";".join(new.tags), "race_date": new.race_date,
                          "race_name": new.race_name, "timezone": new.timezone, "at": now(),
                          "id": found.id})
            changed = self.by_id(found.id)
        assert changed is not None
        return changed

    def history(self, email: str) -> tuple[AuditEntry, ...]:
        """Every recorded status change for an address, oldest first."""
        rows = self._conn.execute(
            "SELECT subscriber_id, email, old_status, new_status, reason, at FROM audit "
            # Stores made before version 6 keep audit addresses with case: fold here too.
            f"WHERE email = :email{' COLLATE NOCASE' if self.dialect == 'sqlite' else ''} "
            "ORDER BY id", {"email": normalize_email(email)})
        return tuple(AuditEntry(*row) for row in rows)

    # -- many readers ----------------------------------------------------------------------

    def list(self, goal: str | None = None, status: str | None = None,
             batch_size: int = 1000) -> Iterator[Subscriber]:
        """Readers ordered by email, optionally only one goal and/or status; streamed."""
        where, params = [], {"limit": batch_size}
        if goal is not None:
            where.append("goal = :goal")
            params["goal"] = goal
        if status is not None:
            # SQLite has no statistics (nothing runs ANALYZE), so it would read the matches
            # from the (status, goal) index and sort every one after the page, each page; the
            # unary '+' keeps it walking the email index, in list order. PostgreSQL weighs
            # the two by its statistics, and a '+' has no text form there.
            where.append(f"{'+' if self.dialect == 'sqlite' else ''}status = :status")
            params["status"] = status
        # SQLite's NOCASE orders by the address with ASCII folded; citext folds and orders by
        # the database's collation (en_US puts 'A_c' before 'a-z'), unless told "C", which
        # then orders exactly as NOCASE does: the same list, and export, on both. Each page
        # is read in that order from an index: SQLite's unique NOCASE one on email, and on
        # PostgreSQL subscribers_email_c (migration 0011), never a sort of all the rest.
        email = "email" if self.dialect == "sqlite" else 'email COLLATE "C"'
        first = (f"SELECT {COLUMNS} FROM subscribers"
                 + (" WHERE " + " AND ".join(where) if where else "")
                 + f" ORDER BY {email} LIMIT :limit")
        following = (f"SELECT {COLUMNS} FROM subscribers WHERE "
                     + " AND ".join([*where, f"{email} > :after"])
                     + f" ORDER BY {email} LIMIT :limit")
        rows = self._conn.execute(first, params).fetchall()
        while True:
            yield from (subscriber_from_row(r) for r in rows)
            if len(rows) < batch_size:
                return
            rows = self._conn.execute(following, {**params, "after": rows[-1][1]}).fetchall()

    def count_by_goal(self, status: str | None = "active") -> dict[str, int]:
        """How many readers each goal has, for one status (None counts every status)."""
        if status is None:
            rows = self._conn.execute("SELECT goal, COUNT(*) FROM subscribers GROUP BY goal "
                                      "ORDER BY goal")
        else:
            rows = self._conn.execute("SELECT goal, COUNT(*) FROM subscribers "
                                      "WHERE status = :status GROUP BY goal ORDER BY goal",
                                      {"status": status})
        return dict(rows.fetchall())

    def iter_active(self, goals: Collection[str],
                    batch_size: int = 1000) -> Iterator[list[Subscriber]]:
        """Active readers whose goal is in `goals`, in id order, `batch_size` at a time."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        wanted = sorted(set(goals))
        if not wanted:
            return
        # Keyset pagination: each batch is its own short query, so memory stays at one batch
        # and no read snapshot is held open while the caller sends. The unary '+' keeps the
        # planner walking the primary key from `id > :last` instead of sorting every
        # remaining match from the (status, goal) index on each batch.
        status = "+status" if self.dialect == "sqlite" else "status"
        query = listing(f"SELECT {COLUMNS} FROM subscribers WHERE {status} = 'active' "
                        "AND goal IN :goals AND id > :last ORDER BY id LIMIT :limit", "goals")
        last = 0
        while True:
            rows = self._conn.execute(query, {"goals": wanted, "last": last,
                                              "limit": batch_size}).fetchall()
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
        return export_csv(self.list(goal=goal, status=status), out)
