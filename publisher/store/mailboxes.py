"""One mailbox, one reader: stores made before addresses had one canonical form
(`emails.canonical`) may hold a mailbox twice (`hans@bücher.example` and
`hans@xn--bcher-kva.example`). Migration 0007 rewrites every address to its canonical form
and merges the readers that collapse into one; `db upgrade` reports the merges from the
audit rows they leave."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

from sqlalchemy import text

from publisher.emails import canonical, mailbox_key
from publisher.store.changes import RANK
from publisher.store.records import now

MIGRATION = "schema upgrade 0007"
# Addresses that canonical() may change beyond the domain's ASCII case (which NOCASE and
# citext already ignore): anything non-ASCII, or an A-label that may be spelled otherwise.
_CANDIDATES = {"sqlite": "email GLOB '*[^ -~]*' OR lower(email) LIKE '%xn--%'",
               "postgresql": "email ~ '[^ -~]' OR email ILIKE '%xn--%'"}
# Which of two ledger rows for one post a merged reader keeps: the one nearest to sent, so
# nothing already sent (or maybe sent) is planned again.
_STATE_RANK = {"planned": 0, "failed": 1, "skipped": 2, "rejected": 3, "in-flight": 4,
               "sent": 5}
_READER = "SELECT id, email, status, consent_source, consent_at, consent_ip FROM subscribers"


class Merge(NamedTuple):
    """Readers that were one mailbox: how many, the address kept and the status kept."""

    readers: int
    email: str
    status: str


def strictness(status: str, reader_id: int) -> tuple:
    """How strongly a status keeps mail away, for choosing the reader a merge keeps.

    Leaving outranks joining as everywhere in the store (complained > bounced >
    unsubscribed); between the two joined statuses active wins over pending: pending is a
    question to the mailbox, and the same mailbox already answered it under its other
    spelling. The earliest reader wins a tie."""
    return (RANK[status], status == "active", -reader_id)


def merge_mailboxes(conn: Any) -> list[Merge]:
    """Give every stored address its canonical form and merge the readers that share one
    (a SQLAlchemy connection inside the migration's transaction); the merges done."""
    dialect = conn.dialect.name
    groups: dict[str, dict[int, tuple]] = defaultdict(dict)
    for row in conn.execute(text(f"{_READER} WHERE {_CANDIDATES[dialect]}")).fetchall():
        groups[mailbox_key(row[1])][row[0]] = tuple(row)
    merges = []
    for readers in groups.values():
        wanted = canonical(next(iter(readers.values()))[1])
        for row in conn.execute(text(f"{_READER} WHERE email = :e"), {"e": wanted}):
            readers.setdefault(row[0], tuple(row))
        kept = max(readers.values(), key=lambda r: strictness(r[2], r[0]))
        wanted = canonical(kept[1])  # the kept reader's local part, as they spelled it
        others = [r for r in readers.values() if r[0] != kept[0]]
        for other in others:
            _move(conn, other[0], kept[0])
            conn.execute(text("INSERT INTO merged_readers(id, into_id, email) VALUES "
                              "(:i, :k, :e)"), {"i": other[0], "k": kept[0], "e": other[1]})
            conn.execute(text("INSERT INTO audit(subscriber_id, email, old_status, new_status, "
                              "reason, at) VALUES (:i, :e, :s, 'merged', :r, :a)"),
                         {"i": other[0], "e": wanted, "s": other[2],
                          "r": f"merged into {wanted} (kept: {kept[2]}) by {MIGRATION}",
                          "a": now()})
        consent = _earliest_consent([kept, *others])
        conn.execute(text("UPDATE subscribers SET email = :e, consent_source = :s, "
                          "consent_at = :a, consent_ip = :p WHERE id = :i"),
                     {"e": wanted, "s": consent[3], "a": consent[4], "p": consent[5],
                      "i": kept[0]})
        if others:
            merges.append(Merge(len(readers), wanted, kept[2]))
    _canonical_audit(conn, dialect)
    return merges


def _earliest_consent(readers: list[tuple]) -> tuple:
    """The reader row whose consent is the earliest known; a pending reader's signup is not
    consent yet, so it counts only when no reader of the mailbox ever consented."""
    consented = [r for r in readers if r[4] and r[2] != "pending"] or \
        [r for r in readers if r[4]] or readers
    return min(consented, key=lambda r: r[4] or "")


def _move(conn: Any, gone: int, kept: int) -> None:
    """Hand a merged-away reader's ledger rows, ready steps and enrolments to the kept one
    (one row per post: the nearer to sent), then delete the merged-away reader."""
    theirs = dict(conn.execute(text("SELECT post, state FROM deliveries WHERE "
                                    "subscriber_id = :i"), {"i": kept}).fetchall())
    for post, state in conn.execute(text("SELECT post, state FROM deliveries WHERE "
                                         "subscriber_id = :i"), {"i": gone}).fetchall():
        if post in theirs:
            if _STATE_RANK[state] <= _STATE_RANK[theirs[post]]:
                continue
            conn.execute(text("DELETE FROM deliveries WHERE subscriber_id = :i AND post = :p"),
                         {"i": kept, "p": post})
        conn.execute(text("UPDATE deliveries SET subscriber_id = :k WHERE subscriber_id = :i "
                          "AND post = :p"), {"k": kept, "i": gone, "p": post})
    for table, key in (("ready", "step"), ("enrolments", "sequence")):
        conn.execute(text(f"UPDATE {table} SET subscriber_id = :k WHERE subscriber_id = :i "
                          f"AND {key} NOT IN (SELECT {key} FROM {table} WHERE "
                          "subscriber_id = :k)"), {"k": kept, "i": gone})
    for table in ("deliveries", "ready", "enrolments", "subscribers"):
        column = "id" if table == "subscribers" else "subscriber_id"
        conn.execute(text(f"DELETE FROM {table} WHERE {column} = :i"), {"i": gone})


def _canonical_audit(conn: Any, dialect: str) -> None:
    """Audit rows name the mailbox canonically too, so a reader's history is all of it."""
    for (email,) in conn.execute(text(f"SELECT DISTINCT email FROM audit WHERE "
                                      f"{_CANDIDATES[dialect]}")).fetchall():
        if canonical(email) != email:
            conn.execute(text("UPDATE audit SET email = :c WHERE email = :e"),
                         {"c": canonical(email), "e": email})


def merged_reader(conn: Any, subscriber_id: int) -> tuple[int, str] | None:
    """(the reader it became, the spelling its links are bound to) for a reader id merged
    away by migration 0007, or None (a store Connection)."""
    row = conn.execute("SELECT into_id, email FROM merged_readers WHERE id = :id",
                       {"id": subscriber_id}).fetchone()
    return (row[0], row[1]) if row else None


def recorded_merges(conn: Any) -> list[Merge]:
    """The merges migration 0007 did, from its audit rows (a store Connection)."""
    rows = conn.execute("SELECT email, reason FROM audit WHERE new_status = 'merged' AND "
                        "reason LIKE :by ORDER BY id", {"by": f"%by {MIGRATION}"}).fetchall()
    counted: dict[tuple[str, str], int] = defaultdict(lambda: 1)
    for email, reason in rows:
        status = reason.rsplit("(kept: ", 1)[1].split(")", 1)[0]
        counted[(email, status)] += 1
    return [Merge(n, email, status) for (email, status), n in counted.items()]
