"""The subscriber store: readers, their consent, the delivery ledger and an audit trail, in SQLite.

One file, stdlib `sqlite3` only. The schema is versioned: `MIGRATIONS` are applied in order,
each in its own transaction, so an old database is upgraded in place and never dropped.
Every status change writes an `audit` row in the same transaction as the change itself.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import string
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from .errors import Finding, RunletterError, display_path, suggest
from .model import EVERYONE, Goals

STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
LEFT = frozenset({"unsubscribed", "bounced", "complained"})  # readers who chose or had to go
MAX_EMAIL = 254  # RFC 5321 path limit
MAX_NAME = 100
MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1
MAX_LABEL = 63  # RFC 1035 2.3.4

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
]
LATEST = len(MIGRATIONS)

_COLUMNS = ("id, email, first_name, goal, tags, status, consent_source, consent_at, consent_ip, "
            "created_at, updated_at")
_GOAL_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1 (NEL), LS, PS
_SPACE_RE = re.compile(r"\s")
# Cells spreadsheets may run as formulas (OWASP CSV injection), behind any quotes we added.
_FORMULA_CELL_RE = re.compile(r"'*[=+\-@\t\r]")
_NEUTRALISED_CELL_RE = re.compile(r"'+[=+\-@\t\r]")
# atext of RFC 5322 3.2.3 plus the dot: the unquoted local parts providers accept.
_NOT_ATEXT_RE = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")
_NOT_HOSTNAME_RE = re.compile(r"[^A-Za-z0-9.-]")
# SQLite's NOCASE folds ASCII only; fold the same way so "seen in this file" agrees with UNIQUE.
_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

IMPORT_COLUMNS = ("email", "first_name", "goal", "tags", "status")
# Written by export_csv; accepted and ignored on import so an export can be imported back.
EXPORT_ONLY_COLUMNS = ("consent_source", "consent_at", "created_at")
EXPORT_COLUMNS = ("email", "first_name", "goal", "tags", "status", "consent_source",
                  "consent_at", "created_at")


def now() -> str:
    """The current time as an ISO-8601 UTC string, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Subscriber:
    """One reader as stored."""

    id: int
    email: str
    first_name: str
    goal: str
    tags: tuple[str, ...]
    status: str
    consent_source: str
    consent_at: str | None
    consent_ip: str | None
    created_at: str
    updated_at: str

    @property
    def is_active(self) -> bool:
        """Only active readers are sent posts."""
        return self.status == "active"


@dataclass(frozen=True)
class AuditEntry:
    """One status change, as the audit trail recorded it."""

    subscriber_id: int | None
    email: str
    old_status: str | None
    new_status: str
    reason: str
    at: str


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


def validate_email(text: str) -> str | None:
    """Why `text` is not a usable email address, or None when it is."""
    if "\r" in text or "\n" in text:
        return "it contains a line break"
    email = text.strip()
    if not email:
        return "it is empty"
    if len(email) > MAX_EMAIL:
        return f"it is {len(email)} characters long; the limit is {MAX_EMAIL}"
    if _CONTROL_RE.search(email):
        return "it contains a control character"
    if _SPACE_RE.search(email):
        return "it contains a space"
    at = email.count("@")
    if at == 0:
        return "it has no '@'"
    if at > 1:
        return "it has more than one '@'"
    local, domain = email.split("@")
    return _local_problem(local) or _domain_problem(domain)


def _local_problem(local: str) -> str | None:
    """Why the part before the '@' is not a dot-atom (RFC 5322 3.4.1), or None."""
    if not local:
        return "nothing before the '@'"
    if not local.isascii():
        # Non-ASCII mailbox names need SMTPUTF8 end to end, which few providers offer.
        return "the part before the '@' has non-ASCII letters, which most providers refuse"
    # Quoted local parts are valid RFC 5322 but no provider takes them, and their specials
    # (quotes, commas, angle brackets, backslashes) are what breaks a To: header.
    bad = _NOT_ATEXT_RE.search(local)
    if bad:
        return f"the part before the '@' contains {bad.group()!r}, which mail providers refuse"
    if local.startswith(".") or local.endswith("."):
        return "the part before the '@' starts or ends with a dot"
    if ".." in local:
        return "the part before the '@' has two dots in a row"
    if len(local) > MAX_LOCAL:
        return f"the part before the '@' is {len(local)} characters long; the limit is {MAX_LOCAL}"
    return None


def _domain_problem(domain: str) -> str | None:
    """Why the part after the '@' is not a host name (letters, digits, hyphens), or None."""
    if not domain:
        return "nothing after the '@'"
    if "." not in domain:
        return f"the domain '{domain}' has no dot"
    if any(not label for label in domain.split(".")):
        return f"the domain '{domain}' has an empty part"
    ascii_domain = domain
    if not domain.isascii():
        try:
            ascii_domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return f"the domain '{domain}' is not a valid international domain name"
    # Checked in the form headers carry (xn--…), so an IDN cannot smuggle in what ASCII can't.
    bad = _NOT_HOSTNAME_RE.search(ascii_domain)
    if bad:
        return f"the domain '{domain}' contains {bad.group()!r}"
    labels = ascii_domain.split(".")
    if any(label.startswith("-") or label.endswith("-") for label in labels):
        return f"the domain '{domain}' has a part that starts or ends with a hyphen"
    if any(len(label) > MAX_LABEL for label in labels):
        return f"the domain '{domain}' has a part longer than {MAX_LABEL} characters"
    return None


def normalize_email(text: str) -> str:
    """The stored form of an address: trimmed, with the domain lowercased."""
    local, _, domain = text.strip().rpartition("@")
    return f"{local}@{domain.lower()}" if local else text.strip()


def _check_email(text: str) -> str:
    """The normalized address, or a one-line RunletterError saying why it is invalid."""
    reason = validate_email(text)
    if reason:
        raise RunletterError(f"invalid email {_show(text)}: {reason}")
    return normalize_email(text)


def _name_problem(name: str) -> str | None:
    """Why a first name cannot be stored, or None."""
    # The name is merged into subjects and headers; a line break there injects headers.
    if "\r" in name or "\n" in name:
        return "first_name contains a line break (refused: it could inject email headers)"
    if _CONTROL_RE.search(name):
        return "first_name contains a control character (refused: it could inject email headers)"
    if len(name) > MAX_NAME:
        return f"first_name is {len(name)} characters long; the limit is {MAX_NAME}"
    return None


def _tags(items: Iterable[str]) -> tuple[str, ...]:
    """Tags split on ';', trimmed, empties and repeats dropped, order kept."""
    out: list[str] = []
    for item in items:
        for tag in str(item).split(";"):
            tag = tag.strip()
            if tag and tag not in out:
                out.append(tag)
    return tuple(out)


def _fold(email: str) -> str:
    """The address as SQLite's NOCASE compares it."""
    return email.lower() if email.isascii() else email.translate(_ASCII_FOLD)


def _show(value: str, limit: int = 60) -> str:
    """A value quoted for a one-line message, with line breaks visible and long text cut."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _row(row: tuple) -> Subscriber:
    """A Subscriber from a row selected with _COLUMNS."""
    (id_, email, first_name, goal, tags, status, consent_source, consent_at, consent_ip,
     created_at, updated_at) = row
    return Subscriber(id=id_, email=email, first_name=first_name, goal=goal,
                      tags=tuple(t for t in tags.split(";") if t), status=status,
                      consent_source=consent_source, consent_at=consent_at,
                      consent_ip=consent_ip, created_at=created_at, updated_at=updated_at)


def _statements(script: str) -> Iterator[str]:
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


def _create_private(path: Path) -> None:
    """Create an empty database file that only its owner can read, unless it exists."""
    # SQLite gives the -wal and -shm files the database file's mode, so this covers them too;
    # left to SQLite, all three would follow the umask (often world-readable).
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


class Store:
    """The subscriber database. Open with `Store.open(path)`; use as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self._conn = conn
        self.path = path

    # -- opening and schema -------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating if needed) the database at `path` and bring its schema up to date."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(path)
            # Autocommit mode: transactions are opened explicitly in `transaction()`.
            conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise RunletterError(Finding(str(path), None,
                                         f"cannot open the subscriber store: {exc}")) from None
        store = cls(conn, path)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            # The default 2 MB page cache thrashes on the email index during a 100k-row
            # import; this is a ceiling, not an allocation.
            conn.execute("PRAGMA cache_size = -65536")
            store._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                raise store._busy() from None
            raise RunletterError(Finding(str(path), None,
                                         f"not a usable subscriber store: {exc}")) from None
        except BaseException:
            conn.close()
            raise
        return store

    def _migrate(self) -> None:
        """Apply each pending migration in its own transaction."""
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")
            if conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
                conn.execute("INSERT INTO schema_version(version) VALUES (0)")
        version = self.schema_version
        if version > LATEST:
            raise RunletterError(Finding(str(self.path), None, "the subscriber store is at "
                                         f"schema version {version}, newer than this "
                                         f"runletter knows ({LATEST}); upgrade runletter"))
        for target in range(version + 1, LATEST + 1):
            with self.transaction() as conn:
                # Another process may have migrated while we waited for the write lock.
                if self.schema_version >= target:
                    continue
                for statement in _statements(MIGRATIONS[target - 1]):
                    conn.execute(statement)
                conn.execute("UPDATE schema_version SET version = ?", (target,))

    @property
    def schema_version(self) -> int:
        """The schema version the database is at."""
        return int(self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    @property
    def conn(self) -> sqlite3.Connection:
        """The underlying connection (autocommit; use `transaction()` to write)."""
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any error; nests by joining."""
        if self._conn.in_transaction:
            yield self._conn
            return
        try:
            # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
            # instead of one failing later when it tries to upgrade a read lock.
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise self._busy() from None
            raise
        try:
            yield self._conn
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _busy(self) -> RunletterError:
        return RunletterError(Finding(str(self.path), None, "the subscriber store is locked by "
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
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM subscribers WHERE email = ?",
                                 (normalize_email(email),)).fetchone()
        return _row(row) if row else None

    def _get_id(self, subscriber_id: int) -> Subscriber | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM subscribers WHERE id = ?",
                                 (subscriber_id,)).fetchone()
        return _row(row) if row else None

    def _require(self, email_or_id: str | int) -> Subscriber:
        found = (self._get_id(email_or_id) if isinstance(email_or_id, int)
                 else self.get(email_or_id))
        if found is None:
            shown = f"#{email_or_id}" if isinstance(email_or_id, int) else _show(email_or_id)
            raise RunletterError(f"no subscriber {shown}")
        return found

    def _audit(self, subscriber_id: int | None, email: str, old: str | None, new: str,
               reason: str, at: str) -> None:
        self._conn.execute("INSERT INTO audit(subscriber_id, email, old_status, new_status, "
                           "reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                           (subscriber_id, email, old, new, reason, at))

    def add(self, email: str, *, goal: str = EVERYONE, first_name: str = "",
            tags: Iterable[str] = (), status: str = "active", consent_source: str = "cli",
            consent_ip: str | None = None) -> Subscriber:
        """Add a new reader; a RunletterError says why when the row is invalid or present."""
        address = _check_email(email)
        goal = _check_goal(goal)
        first_name = _check_name(first_name)
        _check_status(status)
        stamp = now()
        with self.transaction() as conn:
            existing = self.get(address)
            if existing is not None:
                raise RunletterError(f"{existing.email} is already a subscriber "
                                     f"(status {existing.status})")
            cursor = conn.execute(
                "INSERT INTO subscribers(email, first_name, goal, tags, status, consent_source, "
                "consent_at, consent_ip, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (address, first_name, goal, ";".join(_tags(tags)), status, consent_source,
                 stamp, consent_ip, stamp, stamp))
            self._audit(cursor.lastrowid, address, None, status, f"added ({consent_source})",
                        stamp)
            added = self._get_id(cursor.lastrowid)
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
        _check_status(status)
        with self.transaction() as conn:
            found = self._require(email_or_id)
            if found.status == status:
                return found
            stamp = now()
            conn.execute("UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ?",
                         (status, stamp, found.id))
            self._audit(found.id, found.email, found.status, status, reason, stamp)
            changed = self._get_id(found.id)
        assert changed is not None
        return changed

    def update(self, email: str, *, goal: str | None = None, first_name: str | None = None,
               tags: Iterable[str] | None = None) -> Subscriber:
        """Change a reader's goal, first name or tags (None leaves a field as it is)."""
        with self.transaction() as conn:
            found = self._require(email)
            new_goal = found.goal if goal is None else _check_goal(goal)
            new_name = found.first_name if first_name is None else _check_name(first_name)
            new_tags = found.tags if tags is None else _tags(tags)
            if (new_goal, new_name, new_tags) == (found.goal, found.first_name, found.tags):
                return found
            conn.execute("UPDATE subscribers SET goal = ?, first_name = ?, tags = ?, "
                         "updated_at = ? WHERE id = ?",
                         (new_goal, new_name, ";".join(new_tags), now(), found.id))
            changed = self._get_id(found.id)
        assert changed is not None
        return changed

    def history(self, email: str) -> tuple[AuditEntry, ...]:
        """Every recorded status change for an address, oldest first."""
        rows = self._conn.execute(
            "SELECT subscriber_id, email, old_status, new_status, reason, at FROM audit "
            "WHERE email = ? COLLATE NOCASE ORDER BY id", (normalize_email(email),))
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
        after: str | None = None
        while True:
            clauses = [*where, "email > ?"] if after is not None else where
            sql = (f"SELECT {_COLUMNS} FROM subscribers"
                   + (" WHERE " + " AND ".join(clauses) if clauses else "")
                   + " ORDER BY email LIMIT ?")
            rows = self._conn.execute(
                sql, [*params, *([after] if after is not None else []), batch_size]).fetchall()
            yield from (_row(r) for r in rows)
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
        sql = (f"SELECT {_COLUMNS} FROM subscribers WHERE +status = 'active' "
               f"AND goal IN ({marks}) AND id > ? ORDER BY id LIMIT ?")
        last = 0
        while True:
            rows = self._conn.execute(sql, (*wanted, last, batch_size)).fetchall()
            if not rows:
                return
            yield [_row(r) for r in rows]
            if len(rows) < batch_size:
                return
            last = rows[-1][0]

    def export_csv(self, out: TextIO, goal: str | None = None,
                   status: str | None = None) -> int:
        """Write readers as CSV (header first); return how many rows were written."""
        # Every cell quoted: a spreadsheet that splits on ';' or tabs keeps "Bo;=1" whole.
        writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(EXPORT_COLUMNS)
        count = 0
        for sub in self.list(goal=goal, status=status):
            writer.writerow([neutralise_cell(cell) for cell in (
                sub.email, sub.first_name, sub.goal, ";".join(sub.tags), sub.status,
                sub.consent_source, sub.consent_at or "", sub.created_at)])
            count += 1
        return count

    # -- CSV import ------------------------------------------------------------------------

    def import_csv(self, path: Path, goals: Goals, *,
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
        select_sql = f"SELECT {_COLUMNS} FROM subscribers WHERE email = ?"
        audit_rows: list[tuple] = []
        with self.transaction() as conn:
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
                    key = _fold(row.email)
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
                existing = _row(conn.execute(select_sql, (row.email,)).fetchone())
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


# -- helpers for import and single-reader writes ---------------------------------------------


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
        problems.append(f"invalid email {_show(raw_email)}: {reason}")
    first_name = value("first_name")
    if first_name is not None:
        first_name = first_name.strip()
        problem = _name_problem(first_name)
        if problem:
            problems.append(problem)
    goal = value("goal")
    if goal is not None:
        goal = goal.strip().lower() or EVERYONE
        if goal not in slugs:
            problems.append(f"unknown goal {_show(goal)}" + suggest(goal, slugs)
                            + f"; goals: {', '.join(slugs)}")
    status = value("status")
    if status is not None:
        status = status.strip().lower()
        if status and status not in STATUSES:
            problems.append(f"unknown status {_show(status)}" + suggest(status, STATUSES)
                            + f"; use one of: {', '.join(STATUSES)}")
    raw_tags = value("tags")
    tags = _tags([raw_tags]) if raw_tags is not None else None
    if reason:
        return None, problems
    return _ImportRow(email=normalize_email(raw_email), first_name=first_name, goal=goal,
                      tags=tags, status=status or None), problems


def _check_goal(goal: str) -> str:
    goal = goal.strip().lower() or EVERYONE
    if not _GOAL_RE.match(goal):
        raise RunletterError(f"goal {_show(goal)} is not a slug "
                             "(lowercase letters, digits and hyphens)")
    return goal


def _check_name(name: str) -> str:
    name = name.strip()
    problem = _name_problem(name)
    if problem:
        raise RunletterError(problem)
    return name


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise RunletterError(f"unknown status {_show(status)}" + suggest(status, STATUSES)
                             + f"; use one of: {', '.join(STATUSES)}")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
