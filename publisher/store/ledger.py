"""The ledger: table `deliveries`, one row per post and reader, written before and after
every batch, so a publish is safe to re-run and never sends twice; and what providers report
afterwards (a bounce, a complaint, an unsubscribe), noted on the row it is about.

Rows go planned → in-flight → sent | rejected | failed. A re-run sends only planned or
transiently failed rows; rows left in-flight by a crash are reported and sent again only
when the author asks (at most once, by default).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from publisher.delivery.providers.base import ACCEPTED, REJECTED, Receipt
from publisher.delivery.retry import call_backoff
from publisher.store import Store, now
from publisher.store.database import listing

_PLAN = listing(
    "INSERT INTO deliveries(post, subscriber_id, email, goal, state, attempts, updated_at) "
    "SELECT :post, id, email, goal, 'planned', 0, :stamp FROM subscribers "
    "WHERE status = 'active' AND goal IN :goals ON CONFLICT DO NOTHING", "goals")
_FRESH_TRIES = ("UPDATE deliveries SET attempts = 0, next_attempt_at = NULL "
                "WHERE post = :post AND state = 'failed'")
_PREVIEW = listing(
    "SELECT s.goal, d.state, COUNT(*) FROM subscribers s LEFT JOIN deliveries d "
    "ON d.subscriber_id = s.id AND d.post = :post "
    "WHERE s.status = 'active' AND s.goal IN :goals GROUP BY s.goal, d.state", "goals")
_NEXT_RETRY = listing(
    "SELECT MIN(COALESCE(next_attempt_at, 0)) FROM deliveries WHERE post = :post AND "
    "goal IN :goals AND state IN ('planned', 'failed') AND attempts < :max_attempts", "goals")

# Settling, before a mark, the rows of readers who left since they were read. SQLite's
# planner would walk every unsent row of the post through an index led by (post, …) (O(list)
# per call: a 1M-reader publish slowed threefold); '+post' and '+state' leave it
# (subscriber_id, post): one lookup per row of the call.
_REJECT_LEFT = {dialect: listing(
    "UPDATE deliveries SET state = 'rejected', updated_at = :stamp, error = 'reader is ' "
    "|| (SELECT status FROM subscribers s WHERE s.id = subscriber_id) "
    f"WHERE {post} = :post AND {state} IN ('planned', 'failed') AND subscriber_id IN :ids "
    "AND EXISTS (SELECT 1 FROM subscribers s WHERE s.id = subscriber_id "
    "AND s.status != 'active')", "ids")
    for dialect, post, state in (("sqlite", "+post", "+state"),
                                 ("postgresql", "post", "state"))}

# Marking a call's rows in flight: only rows still sendable, of readers still active. On
# SQLite the write transaction is the lock (BEGIN IMMEDIATE); on PostgreSQL each row is
# locked as it is claimed and a row another process holds is skipped, not waited for, so
# two publishes on one post share it out instead of queueing on each other. The unary '+'
# keeps SQLite on the (subscriber_id, post) index, as in _REJECT_LEFT.
_CLAIM = {
    "sqlite": listing(
        "UPDATE deliveries SET state = 'in-flight', attempts = attempts + 1, updated_at = :stamp "
        "WHERE +post = :post AND +state IN ('planned', 'failed') AND subscriber_id IN :ids "
        # Correlated on the primary key: `IN (SELECT id … WHERE status = 'active')` would
        # list every active reader of the store for each call.
        "AND EXISTS (SELECT 1 FROM subscribers s WHERE s.id = subscriber_id "
        "AND s.status = 'active') RETURNING subscriber_id", "ids"),
    "postgresql": listing(
        "UPDATE deliveries SET state = 'in-flight', attempts = attempts + 1, updated_at = :stamp "
        "WHERE post = :post AND subscriber_id IN (SELECT subscriber_id FROM deliveries "
        "WHERE post = :post AND state IN ('planned', 'failed') AND subscriber_id IN :ids "
        "AND EXISTS (SELECT 1 FROM subscribers s WHERE s.id = subscriber_id "
        "AND s.status = 'active') FOR UPDATE SKIP LOCKED) RETURNING subscriber_id", "ids"),
}

# Every post in the ledger by index seeks on its primary key (post, subscriber_id), then that
# reader's row of each: O(posts x log rows). Filtering on subscriber_id alone, which no index
# leads with, would scan the whole ledger for every webhook event.
_READER_ROWS = """
WITH RECURSIVE posts(post) AS (
    SELECT MIN(post) FROM deliveries
    UNION ALL
    SELECT (SELECT MIN(post) FROM deliveries WHERE post > posts.post) FROM posts
    WHERE posts.post IS NOT NULL
)
SELECT d.post, d.state, d.provider_id, d.updated_at, d.sent_at FROM posts
JOIN deliveries d ON d.post = posts.post AND d.subscriber_id = :subscriber_id
"""
OUR_MESSAGE_ID = re.compile(r"^(.+)\.(\d+)@[^@]+$")  # <post.reader@domain>


@dataclass(frozen=True)
class Delivery:
    """One row of the ledger: one reader's copy of one post."""

    post: str
    subscriber_id: int
    email: str
    goal: str
    state: str
    attempts: int
    first_name: str = ""
    race_date: str | None = None
    race_name: str = ""
    timezone: str = ""


@dataclass(frozen=True)
class PublishPreview:
    """What a publish would do, per goal: readers to send to now, and what is settled."""

    post: str
    to_send: dict[str, int]  # goal -> planned or retryable
    done: dict[str, int]  # goal -> already sent
    in_flight: int
    unmatched: dict[str, int]  # active readers whose goal is not in goals.toml

    @property
    def total(self) -> int:
        """Readers a publish would send to now."""
        return sum(self.to_send.values())


class Ledger:
    """The deliveries table: what was planned, what is in flight, what is settled, and what
    providers report afterwards."""

    def __init__(self, store: Store):
        self.store = store
        self.conn = store.conn

    def plan(self, post: str, goals: Sequence[str]) -> int:
        """Add a planned row for every active reader in these goals not yet in the ledger."""
        with self.store.transaction() as conn:
            cursor = conn.execute(_PLAN, {"post": post, "stamp": now(), "goals": list(goals)})
            # A new run gives transiently failed rows a fresh set of tries.
            conn.execute(_FRESH_TRIES, {"post": post})
        return cursor.rowcount

    def retry_failed(self, post: str) -> None:
        """Give an item's transiently failed rows a fresh set of tries (a new run)."""
        with self.store.transaction() as conn:
            conn.execute(_FRESH_TRIES, {"post": post})

    def preview(self, post: str, goals: Sequence[str], known: Iterable[str]) -> PublishPreview:
        """What a publish would do, without writing anything (for --dry-run and the
        confirmation prompt)."""
        rows = self.conn.execute(_PREVIEW, {"post": post, "goals": list(goals)}).fetchall()
        to_send: Counter = Counter()
        done: Counter = Counter()
        for goal, state, count in rows:
            if state in (None, "planned", "failed"):
                to_send[goal] += count
            elif state == "sent":
                done[goal] += count
        known = set(known)
        unmatched = {goal: count for goal, count in self.conn.execute(
            "SELECT goal, COUNT(*) FROM subscribers WHERE status = 'active' GROUP BY goal")
            if goal not in known}
        return PublishPreview(post=post, to_send={g: to_send[g] for g in goals},
                              done={g: done[g] for g in goals},
                              in_flight=self.count(post, "in-flight"), unmatched=unmatched)

    def count(self, post: str, state: str) -> int:
        """Rows of a post in one state."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM deliveries WHERE post = :post AND state = :state",
            {"post": post, "state": state}).fetchone()[0]

    def in_flight_ids(self, post: str) -> list[int]:
        """The readers of a post whose row is in flight."""
        return [row[0] for row in self.conn.execute(
            "SELECT subscriber_id FROM deliveries WHERE post = :post AND state = 'in-flight'",
            {"post": post})]

    def release_in_flight(self, post: str) -> int:
        """Make in-flight rows planned again (only when the author asks to resend them)."""
        with self.store.transaction() as conn:
            return conn.execute("UPDATE deliveries SET state = 'planned', updated_at = :stamp "
                                "WHERE post = :post AND state = 'in-flight'",
                                {"stamp": now(), "post": post}).rowcount

    def peek(self, post: str, goal: str, limit: int, max_attempts: int, at: float,
             skip: frozenset[int] = frozenset()) -> list[Delivery]:
        """Up to `limit` sendable rows of a goal, not yet marked (readers who left since the
        plan are settled as rejected on the way)."""
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT d.subscriber_id, d.email, d.attempts, s.first_name, s.status, "
                "s.race_date, s.race_name, s.timezone "
                "FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
                "WHERE d.post = :post AND d.goal = :goal AND d.state IN ('planned', 'failed') "
                "AND d.attempts < :max_attempts "
                "AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= :at) "
                # By state first so the planner walks the deliveries_claim index, not every
                # row of the post; retries ('failed') then come before fresh rows.
                "ORDER BY d.state, d.subscriber_id LIMIT :limit",
                {"post": post, "goal": goal, "max_attempts": max_attempts, "at": at,
                 "limit": limit + len(skip)}).fetchall()
            stamp = now()
            found: list[Delivery] = []
            for sid, addr, attempts, first_name, status, race_date, race_name, tz in rows:
                if sid in skip or len(found) == limit:
                    continue
                if status != "active":  # left (or bounced) after the plan was made
                    # Only while still unclaimed: on PostgreSQL another publish may have
                    # marked the row in flight since it was read (this waits on its lock).
                    conn.execute("UPDATE deliveries SET state = 'rejected', error = :error, "
                                 "updated_at = :stamp WHERE post = :post "
                                 "AND subscriber_id = :subscriber_id "
                                 "AND state IN ('planned', 'failed')",
                                 {"error": f"reader is {status}", "stamp": stamp, "post": post,
                                  "subscriber_id": sid})
                    continue
                found.append(Delivery(post, sid, addr, goal, "in-flight", attempts + 1,
                                      first_name, race_date, race_name, tz))
        return found

    def mark_in_flight(self, post: str, rows: Iterable[Delivery]) -> set[int]:
        """Mark rows in-flight (committed before they are sent); the ids actually marked.

        Rows are read while the previous call is out, so a reader may have left since: the
        status is checked in the same transaction as the mark, and their row is settled
        as rejected instead.
        """
        ids = [d.subscriber_id for d in rows]
        if not ids:
            return set()
        given = {"stamp": now(), "post": post, "ids": ids}
        with self.store.transaction() as conn:
            conn.execute(_REJECT_LEFT[self.store.dialect], given)
            marked = conn.execute(_CLAIM[self.store.dialect], given).fetchall()
        return {row[0] for row in marked}

    def claim(self, post: str, goal: str, limit: int, max_attempts: int,
              at: float) -> list[Delivery]:
        """Mark up to `limit` sendable rows in-flight and return them (committed first)."""
        rows = self.peek(post, goal, limit, max_attempts, at)
        marked = self.mark_in_flight(post, rows)
        return [d for d in rows if d.subscriber_id in marked]

    def record(self, post: str, receipts: Iterable[Receipt], attempts: dict[int, int],
               base: float, cap: float, at: float) -> None:
        """Settle a batch's rows from its receipts; a rejection about the reader's address
        marks them bounced (a complaint, stricter, stays); the failed rows share one retry
        time."""
        stamp = now()
        receipts = list(receipts)
        wait = call_backoff(receipts, attempts, base, cap)
        sent, rejected, failed = [], [], []
        bounced = []  # only an answer about the reader's address (see providers.verdicts)
        for r in receipts:
            row = {"post": post, "subscriber_id": r.subscriber_id, "stamp": stamp}
            if r.status == ACCEPTED:
                sent.append({**row, "provider_id": r.provider_id})
            elif r.status == REJECTED:
                rejected.append({**row, "error": r.reason[:500]})
                if r.bounce:
                    bounced.append((r.subscriber_id, r.reason[:500]))
            else:
                failed.append({**row, "error": r.reason[:500], "next_attempt_at": at + wait,
                               "untried": int(not r.tried)})
        with self.store.transaction() as conn:
            conn.executemany("UPDATE deliveries SET state = 'sent', provider_id = :provider_id, "
                             "error = NULL, updated_at = :stamp, sent_at = :stamp "
                             "WHERE post = :post AND subscriber_id = :subscriber_id", sent)
            conn.executemany("UPDATE deliveries SET state = 'rejected', error = :error, "
                             "updated_at = :stamp "
                             "WHERE post = :post AND subscriber_id = :subscriber_id", rejected)
            # An answer that says the message was never tried gives its attempt back.
            conn.executemany("UPDATE deliveries SET state = 'failed', error = :error, "
                             "next_attempt_at = :next_attempt_at, updated_at = :stamp, "
                             "attempts = attempts - :untried "
                             "WHERE post = :post AND subscriber_id = :subscriber_id", failed)
            for sid, reason in bounced:
                self.store.report(sid, "bounced", f"rejected by provider: {reason}")

    def unclaim(self, post: str, rows: Iterable[Delivery]) -> None:
        """Put claimed rows back as they were, when a batch provably never left."""
        with self.store.transaction() as conn:
            conn.executemany(
                "UPDATE deliveries SET state = CASE WHEN attempts > 1 THEN 'failed' "
                "ELSE 'planned' END, attempts = attempts - 1 WHERE post = :post AND "
                "subscriber_id = :subscriber_id AND state = 'in-flight'",
                [{"post": post, "subscriber_id": d.subscriber_id} for d in rows])

    def next_retry(self, post: str, goals: Sequence[str], max_attempts: int) -> float | None:
        """When the earliest unsent row of these goals may be tried, or None when none is."""
        row = self.conn.execute(_NEXT_RETRY, {"post": post, "goals": list(goals),
                                              "max_attempts": max_attempts}).fetchone()
        return row[0]

    def report(self, post: str) -> dict[str, Counter]:
        """Rows per goal and state."""
        table: dict[str, Counter] = {}
        for goal, state, count in self.conn.execute(
                "SELECT goal, state, COUNT(*) FROM deliveries WHERE post = :post "
                "GROUP BY goal, state ORDER BY goal", {"post": post}):
            table.setdefault(goal, Counter())[state] = count
        return table

    def row_for_event(self, subscriber_id: int,
                      message_ids: tuple[str, ...]) -> tuple[str, str] | None:
        """(post, state) of the reader's row a provider's event is about: the one whose
        provider id is among the event's message ids (angle brackets ignored), else the one
        our own Message-ID names, else their most recent sent row; None when they have none."""
        rows = self.conn.execute(_READER_ROWS, {"subscriber_id": subscriber_id}).fetchall()
        if not rows:
            return None
        # Rows of the same second: the later sent, then the later post (slugs start with
        # their date). Both databases order these alike; SQLite's rowid has no PostgreSQL twin.
        newest_first = sorted(rows, key=lambda r: (r[3], r[4] or "", r[0]), reverse=True)
        clean = {m.strip().strip("<>") for m in message_ids if m and m.strip("<> ")}
        for post, state, provider_id, _, _ in newest_first:
            if provider_id and provider_id.strip().strip("<>") in clean:
                return post, state
        for candidate in clean:
            match = OUR_MESSAGE_ID.match(candidate)
            if match and int(match.group(2)) == subscriber_id:
                for post, state, *_ in rows:
                    if post == match.group(1):
                        return post, state
        return next(((post, state) for post, state, *_ in newest_first if state == "sent"),
                    None)

    def apply_event(self, subscriber_id: int, message_ids: tuple[str, ...], kind: str,
                    note: str) -> bool:
        """Note a provider's event on the row it is about; a bounce of a sent row makes it
        rejected (it was not delivered). False when the reader has no row to note it on."""
        row = self.row_for_event(subscriber_id, message_ids)
        if row is None:
            return False
        post, state = row
        new_state = "rejected" if kind == "bounce" and state == "sent" else state
        with self.store.transaction() as conn:
            conn.execute("UPDATE deliveries SET state = :state, error = :error, "
                         "updated_at = :stamp WHERE post = :post "
                         "AND subscriber_id = :subscriber_id",
                         {"state": new_state, "error": note[:500], "stamp": now(), "post": post,
                          "subscriber_id": subscriber_id})
        return True
