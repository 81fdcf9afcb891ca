"""Where the store lives and the connection a Store talks through.

The store is a SQLite file by default (`sqlite:///subscribers/runletter.db`) or a PostgreSQL
database (`postgresql://user@host:port/db`), named by RUNLETTER_DATABASE_URL or `[store] url`
(the environment wins). SQLAlchemy Core gives both the same connection: statements are
`text()` with named binds (`:email`) or SQLAlchemy Core over `tables`, written in the SQL
both databases speak (ON CONFLICT DO NOTHING, RETURNING); psycopg 3 is the PostgreSQL driver.

The connection runs in autocommit, as the store always has: reads see the latest commit, and
`transaction()` opens a write transaction explicitly (BEGIN IMMEDIATE on SQLite, so two
writers queue instead of failing on a lock upgrade).
"""

from __future__ import annotations

import functools
import itertools
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, String, bindparam, create_engine, event, inspect, text
from sqlalchemy.exc import DatabaseError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from publisher.config import parse_url, printable_url
from publisher.errors import Finding, RunletterError, is_disk_full

# Seconds a write waits for another process's lock before the store says it is locked
# (SQLite's busy_timeout, PostgreSQL's lock_timeout): the same patience on both.
LOCK_TIMEOUT = 5.0
@functools.lru_cache(maxsize=1024)
def _statement(sql: str):
    """The `text()` of a statement written with named binds (`:email`), made once."""
    return text(sql)


# The lists a statement may be given empty, typed: PostgreSQL is then given a typed empty set
# (an untyped one is an integer set, and a text column cannot be IN it). Emails stay untyped:
# a cast to VARCHAR would compare them case by case, not as the citext column folds them.
LIST_TYPES = {"goals": String, "ids": Integer}


@functools.lru_cache(maxsize=256)
def listing(sql: str, *lists: str):
    """A statement whose named lists (`IN :goals`, `IN :ids`) each take a sequence, one bind
    per item (SQLAlchemy's expanding binds), made once."""
    return text(sql).bindparams(*(
        bindparam(name, expanding=True, type_=LIST_TYPES[name]() if name in LIST_TYPES else None)
        for name in lists))


class Connection:
    """One autocommit connection: `execute(sql, params)` with named parameters, and write
    transactions opened explicitly."""

    def __init__(self, engine, url):
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name  # "sqlite" or "postgresql"
        self._conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._depth = 0
        if self.dialect == "postgresql":  # SQLite's is set as each connection is made
            self.raw(f"SET lock_timeout = {round(LOCK_TIMEOUT * 1000)}")

    @property
    def in_transaction(self) -> bool:
        """True while a transaction is open (ours, or a BEGIN someone sent by hand)."""
        dbapi = self._conn.connection.dbapi_connection
        if self.dialect == "sqlite":
            return bool(dbapi.in_transaction)
        return self._depth > 0 or dbapi.info.transaction_status != 0  # 0: idle

    def execute(self, sql: Any, params: Mapping[str, Any] | None = None):
        """Run one statement (SQL text with `:name` binds and a mapping, or a SQLAlchemy
        statement); the SQLAlchemy result."""
        statement = _statement(sql) if isinstance(sql, str) else sql
        return self._conn.execute(statement, params or {})

    def executemany(self, sql: Any, rows: Iterable[Mapping[str, Any]]) -> int:
        """Run one statement (SQL text or a SQLAlchemy statement) for each parameter set
        (nothing for none), a slice at a time so a generator of any length is never held
        whole; rows changed."""
        statement = _statement(sql) if isinstance(sql, str) else sql
        total, given = 0, iter(rows)
        while chunk := list(itertools.islice(given, 5000)):
            total += self._conn.execute(statement, chunk).rowcount
        return total

    @property
    def sqlalchemy(self):
        """The SQLAlchemy connection underneath, for tools that take one (Alembic)."""
        return self._conn

    def table_names(self) -> set[str]:
        """The names of the tables the store has."""
        return set(inspect(self._conn).get_table_names())

    def raw(self, sql: str) -> None:
        """A statement for the driver as written (transaction control, PRAGMA)."""
        self._conn.exec_driver_sql(sql)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction, committed on success and rolled back on any error; an inner
        one joins the outer."""
        if self._depth or self.in_transaction:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self.raw("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self.rollback_quietly()
            raise
        self._depth = 0
        self.raw("COMMIT")

    def rollback_quietly(self) -> None:
        """Roll back if a transaction is open (an error may already have ended it)."""
        try:
            self.raw("ROLLBACK")
        except Exception:  # noqa: BLE001 - nothing was open
            pass

    def read_only(self, on: bool) -> None:
        """Make the database refuse every write on this connection while `on` (SQLite's
        `PRAGMA query_only`, PostgreSQL's `default_transaction_read_only`)."""
        if self.dialect == "sqlite":
            self.execute(f"PRAGMA query_only = {1 if on else 0}")
        else:
            self.execute(f"SET default_transaction_read_only = {'on' if on else 'off'}")

    def close(self) -> None:
        """Give the connection back; safe to call twice."""
        self._conn.close()


def create_private(path: Path) -> None:
    """Create an empty database file that only its owner can read, unless it exists."""
    # SQLite gives the -wal and -shm files the database file's mode, so this covers them too;
    # left to SQLite, all three would follow the umask (often world-readable).
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


@functools.lru_cache(maxsize=16)
def engine_for(url_text: str):
    """One engine per store per process (its pool is shared by every Store opened)."""
    url = parse_url(url_text)
    if url.drivername == "sqlite":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        create_private(Path(url.database))
        # No pool: a Store's connection is closed with it, as sqlite3's always was (a pooled
        # one would keep its page cache, up to 64 MB, and must not cross a fork).
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": LOCK_TIMEOUT})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # transactions are ours to open
            for pragma in (f"busy_timeout = {round(LOCK_TIMEOUT * 1000)}", "journal_mode = WAL",
                           "foreign_keys = ON",
                           # The default 2 MB page cache thrashes on the email index during
                           # a 100k-row import; this is a ceiling, not an allocation.
                           "cache_size = -65536"):
                dbapi_connection.execute(f"PRAGMA {pragma}")
        return engine
    # A Store holds its connection for its life (serve: one per worker thread), so a pool
    # would only add connections that outlive a fork; each process connects for itself.
    return create_engine(url, poolclass=NullPool,
                         connect_args={"connect_timeout": 10, "application_name": "runletter"})


def connect(url_text: str) -> Connection:
    """A connection to the store at this URL; a one-line error naming the host and port (or
    the file) when it cannot be reached."""
    url = parse_url(url_text)
    where = url.database if url.drivername == "sqlite" else printable_url(url)
    try:
        return Connection(engine_for(url.render_as_string(hide_password=False)), url)
    except DatabaseError as exc:
        if url.drivername == "sqlite" and sqlite_disk_full(url.database, exc):
            raise no_space(url.database) from None
        if url.drivername != "sqlite" and isinstance(exc, OperationalError):
            raise RunletterError(unreachable(url, exc)) from None
        what = ("cannot open the subscriber store" if isinstance(exc, OperationalError)
                else "not a usable subscriber store")
        raise RunletterError(Finding(where, None, f"{what}: {first_line(exc)}")) from None
    except (SQLAlchemyError, OSError) as exc:
        raise RunletterError(Finding(where, None, "cannot open the subscriber store: "
                                     f"{first_line(exc)}")) from None


def sqlite_disk_full(path: str, exc: BaseException) -> bool:
    """A SQLite file that could not be written for want of space: SQLite says "database or
    disk is full", or, when even its -shm file cannot be made, only "disk I/O error"."""
    if is_disk_full(exc):
        return True
    try:
        full = os.statvfs(os.path.dirname(os.path.abspath(path))).f_bavail == 0
    except OSError:
        return False
    return full and "disk i/o error" in first_line(exc).lower()


# PostgreSQL's lock_not_available (lock_timeout ran out) and deadlock_detected (rolled back:
# trying again is the way out too).
BUSY_STATES = frozenset({"55P03", "40P01"})


def is_busy(exc: BaseException) -> bool:
    """A lock held by another process (SQLite's "database is locked", PostgreSQL's lock
    timeout or deadlock)."""
    orig = getattr(exc, "orig", exc)
    if not isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlstate", None) in BUSY_STATES
    text = str(orig).lower()
    return "locked" in text or "busy" in text


def no_space(where: str) -> RunletterError:
    """The one line for a store on a full disk."""
    return RunletterError(f"no space left on device writing {where}; free some space and "
                          "run again")


def unreachable(url, exc: BaseException) -> str:
    """One line for a store that cannot be reached."""
    if url.drivername == "sqlite":
        return f"{url.database}: cannot open the subscriber store: {first_line(exc)}"
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    return (f"cannot connect to the PostgreSQL store at {where} (database "
            f"'{url.database}', user '{url.username}'): {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    """The first line of a database error's message (the driver's own, when it has one)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
