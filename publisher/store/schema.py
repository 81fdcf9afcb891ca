"""The store's schema: versioned migrations, applied in order, each in its own transaction,
so an old database is upgraded in place and never dropped."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from publisher.errors import Finding, RunletterError

if TYPE_CHECKING:
    from publisher.store.database import Connection
    from publisher.store.readers import Store

MIGRATIONS: list[str] = [
    # 1: readers
    """
    CREATE TABLE subscribers (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        first_name TEXT NOT NULL DEFAULT '',
        goal TEXT NOT NULL DEFAULT 'general',
        tags TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL
            CHECK(status IN ('pending','active','unsubscribed','bounced','complained')),
        consent_source TEXT NOT NULL DEFAULT '',
        consent_at TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX subscribers_status_goal ON subscribers(status, goal);
    """,
    # 2: the delivery ledger and the audit trail
    """
    CREATE TABLE deliveries (
        post TEXT NOT NULL,
        subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        email TEXT NOT NULL,
        goal TEXT NOT NULL,
        state TEXT NOT NULL CHECK(state IN ('planned','in-flight','sent','rejected','failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        provider_id TEXT,
        error TEXT,
        next_attempt_at REAL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY(post, subscriber_id)
    );
    CREATE INDEX deliveries_post_state_goal ON deliveries(post, state, goal);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        subscriber_id INTEGER,
        email TEXT NOT NULL,
        old_status TEXT,
        new_status TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX audit_email ON audit(email COLLATE NOCASE);
    """,
    # 3: where consent came from, for the record a regulator may ask to see
    """
    ALTER TABLE subscribers ADD COLUMN consent_ip TEXT;
    """,
    # 4: claiming a batch finds sendable rows of one goal in id order without walking the
    # rows already sent (publish slowed down batch by batch without it)
    """
    CREATE INDEX deliveries_claim ON deliveries(post, goal, state, subscriber_id);
    """,
    # 5: for `runletter serve`: the signup rate limit's window, and webhook tokens already
    # seen (replays). IF NOT EXISTS: stores from before this migration may have them.
    """
    CREATE TABLE IF NOT EXISTS serve_signups (ip TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX IF NOT EXISTS serve_signups_ip_at ON serve_signups(ip, at);
    CREATE TABLE IF NOT EXISTS serve_webhook_seen (
        provider TEXT NOT NULL, token TEXT NOT NULL, at REAL NOT NULL,
        PRIMARY KEY(provider, token)
    );
    """,
    # 6: time. Readers' race and time zone; the ledger learns 'skipped' (a dated item more
    # than grace_days late) and when each copy was sent ("N days after previous" counts from
    # it); a reader's "ready" at a gated step; and where each reader stands in each sequence,
    # so an hour when nothing is due is decided without reading the whole ledger. The
    # deliveries table is rebuilt because SQLite cannot change a CHECK in place.
    """
    ALTER TABLE subscribers ADD COLUMN race_date TEXT;
    ALTER TABLE subscribers ADD COLUMN race_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE subscribers ADD COLUMN timezone TEXT NOT NULL DEFAULT '';
    CREATE TABLE deliveries_new (
        post TEXT NOT NULL,
        subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        email TEXT NOT NULL,
        goal TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK(state IN ('planned','in-flight','sent','rejected','failed','skipped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        provider_id TEXT,
        error TEXT,
        next_attempt_at REAL,
        updated_at TEXT NOT NULL,
        sent_at TEXT,
        PRIMARY KEY(post, subscriber_id)
    );
    INSERT INTO deliveries_new(post, subscriber_id, email, goal, state, attempts, provider_id,
        error, next_attempt_at, updated_at, sent_at)
        SELECT post, subscriber_id, email, goal, state, attempts, provider_id, error,
               next_attempt_at, updated_at, CASE WHEN state = 'sent' THEN updated_at END
        FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_new RENAME TO deliveries;
    CREATE INDEX deliveries_post_state_goal ON deliveries(post, state, goal);
    CREATE INDEX deliveries_claim ON deliveries(post, goal, state, subscriber_id);
    CREATE INDEX deliveries_reader ON deliveries(subscriber_id, post);
    CREATE TABLE ready (
        subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        step TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY(subscriber_id, step)
    );
    CREATE TABLE enrolments (
        sequence TEXT NOT NULL,
        subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        basis TEXT NOT NULL,
        next_at REAL,
        waiting TEXT,
        PRIMARY KEY(sequence, subscriber_id)
    );
    CREATE INDEX enrolments_next ON enrolments(sequence, next_at);
    """,
]
LATEST = len(MIGRATIONS)  # the schema version Alembic's baseline revision ("0006") is
BASELINE = "0006"  # the revision a store the old migrations brought to version 6 is at
HEAD = "0010"  # Alembic's newest revision; a revision id is the schema version, zero-padded
_LOCK = 0x52756E6C  # PostgreSQL advisory lock taken while migrating ("Runl")


def statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (a ';' inside a string literal stays put)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                yield buffer
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        yield buffer


def create_private(path: Path) -> None:
    """Create an empty database file that only its owner can read, unless it exists."""
    # SQLite gives the -wal and -shm files the database file's mode, so this covers them too;
    # left to SQLite, all three would follow the umask (often world-readable).
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass



def migrate(store: Store) -> None:
    """Apply each pending migration in its own transaction."""
    with store.transaction() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")
        if conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
            conn.execute("INSERT INTO schema_version(version) VALUES (0)")
    version = store.schema_version
    if version > LATEST:
        raise RunletterError(Finding(str(store.path), None, "the subscriber store is at "
                                     f"schema version {version}, newer than this "
                                     f"runletter knows ({LATEST}); upgrade runletter"))
    for target in range(version + 1, LATEST + 1):
        with store.transaction() as conn:
            # Another process may have migrated while we waited for the write lock.
            if store.schema_version >= target:
                continue
            for statement in statements(MIGRATIONS[target - 1]):
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (target,))


def version_of(conn: Connection) -> int | None:
    """The schema version of a store (None for an empty database)."""
    from sqlalchemy import inspect

    tables = set(inspect(conn._conn).get_table_names())
    if "alembic_version" in tables:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return int(row[0]) if row else 0
    if "schema_version" in tables:
        return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
    return None


def upgrade(conn: Connection, shown: str) -> int:
    """Bring a store to the newest schema: an old SQLite store through the migrations that
    predate Alembic, then Alembic's revisions; the version it is at afterwards."""
    head = int(HEAD)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        if row and row[0] == HEAD:
            return head  # the common case: one query, Alembic never imported
    except Exception:  # noqa: BLE001 - no such table yet: look closer below
        pass
    version = version_of(conn)
    if version is not None and version > head:
        raise RunletterError(Finding(shown, None, f"the subscriber store is at schema version "
                                     f"{version}, newer than this runletter knows ({head}); "
                                     "upgrade runletter"))
    _alembic(conn, legacy=version is not None and "alembic" not in _tables(conn))
    return head


def _tables(conn: Connection) -> str:
    from sqlalchemy import inspect

    return " ".join(inspect(conn._conn).get_table_names())


def _alembic(conn: Connection, legacy: bool) -> None:
    """Run Alembic to head in one transaction (an old store first brought to version 6 and
    stamped), holding the write lock so two processes do not both migrate."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with conn.transaction():
        if conn.dialect == "postgresql":
            conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK})")
        config.attributes["connection"] = conn._conn
        if legacy and "alembic_version" not in _tables(conn):
            _legacy(conn)
            # Version 6 is the baseline revision; the revisions after it are still to run.
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")


def _legacy(conn: Connection) -> None:
    """The migrations of stores made before Alembic (SQLite only), up to version 6."""
    version = int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
    for target in range(version + 1, LATEST + 1):
        for statement in statements(MIGRATIONS[target - 1]):
            conn.raw(statement)
        conn.execute("UPDATE schema_version SET version = ?", (target,))
