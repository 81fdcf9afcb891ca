"""Bringing a store to the newest schema in place, never dropping it: a SQLite store made
before Alembic through its own numbered migrations (`MIGRATIONS`, up to version 6), then
Alembic's revisions in `migrations/`, all in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from publisher.errors import Finding, RunletterError
from publisher.store.database import Connection

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
HEAD = "0012"  # Alembic's newest revision; a revision id is the schema version, zero-padded
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


def version_of(conn: Connection) -> int | None:
    """The schema version of a store (None for an empty database)."""
    tables = conn.table_names()
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
    except SQLAlchemyError:  # no such table yet: look closer below
        pass
    version = version_of(conn)
    if version is not None and version > head:
        raise RunletterError(Finding(shown, None, f"the subscriber store is at schema version "
                                     f"{version}, newer than this runletter knows ({head}); "
                                     "upgrade runletter"))
    _alembic(conn, legacy=version is not None and not any(
        "alembic" in name for name in conn.table_names()))
    return head


def _alembic(conn: Connection, legacy: bool) -> None:
    """Run Alembic to head in one transaction (an old store first brought to version 6 and
    stamped), holding the write lock so two processes do not both migrate."""
    # why: Alembic is heavy and needed only when a store is behind; most runs never load it.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with conn.transaction():
        if conn.dialect == "postgresql":
            conn.execute("SELECT pg_advisory_xact_lock(:lock)", {"lock": _LOCK})
        config.attributes["connection"] = conn.sqlalchemy
        if legacy and "alembic_version" not in conn.table_names():
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
        conn.execute("UPDATE schema_version SET version = :version", {"version": target})
