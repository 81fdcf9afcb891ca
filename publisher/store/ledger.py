"""The ledger: table `deliveries`, one row per post and reader, written before and after
every batch, so a publish is safe to re-run and never sends twice.

Rows go planned → in-flight → sent | rejected | failed. A re-run sends only planned or
transiently failed rows; rows left in-flight by a crash are reported and sent again only
when the author asks (at most once, by default).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from publisher.delivery.providers.base import ACCEPTED, REJECTED, Receipt
from publisher.delivery.retry import call_backoff
from publisher.store import Store, now
from publisher.store.ledger_events import LedgerEvents

# Marking a call's rows in flight: only rows still sendable, of readers still active. On
# SQLite the write transaction is the lock (BEGIN IMMEDIATE); on PostgreSQL each row is
# locked as it is claimed and a row another process holds is skipped, not waited for, so
# two publishes on one post share it out instead of queueing on each other. Both take the
# same parameters (the SQLite form names the post twice). The unary '+' keeps SQLite on the
# (subscriber_id, post) index: see mark_in_flight.
_CLAIM = {
    "sqlite": (
        "UPDATE deliveries SET state = 'in-flight', attempts = attempts + 1, updated_at = ? "
        "WHERE +post = ? AND +post = ? AND +state IN ('planned', 'failed') {these} "
        # Correlated on the primary key: `IN (SELECT id … WHERE status = 'active')` would
        # list every active reader of the store for each call.
        "AND EXISTS (SELECT 1 FROM subscribers s WHERE s.id = subscriber_id "
        "AND s.status = 'active') RETURNING subscriber_id"),
    "postgresql": (
        "UPDATE deliveries SET state = 'in-flight', attempts = attempts + 1, updated_at = ? "
        "WHERE post = ? AND subscriber_id IN (SELECT subscriber_id FROM deliveries "
        "WHERE post = ? AND state IN ('planned', 'failed') {these} AND EXISTS ("
        "SELECT 1 FROM subscribers s WHERE s.id = subscriber_id AND s.status = 'active') "
        "FOR UPDATE SKIP LOCKED) RETURNING subscriber_id"),
}

STATES = ("planned", "in-flight", "sent", "rejected", "failed", "skipped")


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
class Plan:
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


class Ledger(LedgerEvents):
    """The deliveries table: what was planned, what is in flight, what is settled (and, in
    `ledger_events`, what providers report afterwards)."""

    def __init__(self, store: Store):
        self.store = store
        self.conn = store.conn

    def plan(self, post: str, goals: Sequence[str]) -> int:
        """Add a planned row for every active reader in these goals not yet in the ledger."""
        marks = ",".join("?" * len(goals))
        with self.store.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO deliveries(post, subscriber_id, email, goal, state, "
                "attempts, updated_at) SELECT ?, id, email, goal, 'planned', 0, ? "
                f"FROM subscribers WHERE status = 'active' AND goal IN ({marks}) "
                "ON CONFLICT DO NOTHING",
                (post, now(), *goals))
            # A new run gives transiently failed rows a fresh set of tries.
            conn.execute("UPDATE deliveries SET attempts = 0, next_attempt_at = NULL "
                         "WHERE post = ? AND state = 'failed'", (post,))
        return cursor.rowcount

    def retry_failed(self, post: str) -> None:
        """Give an item's transiently failed rows a fresh set of tries (a new run)."""
        with self.store.transaction() as conn:
            conn.execute("UPDATE deliveries SET attempts = 0, next_attempt_at = NULL "
                         "WHERE post = ? AND state = 'failed'", (post,))

    def preview(self, post: str, goals: Sequence[str], known: Iterable[str]) -> Plan:
        """The plan without writing anything (for --dry-run and the confirmation prompt)."""
        marks = ",".join("?" * len(goals))
        rows = self.conn.execute(
            "SELECT s.goal, d.state, COUNT(*) FROM subscribers s LEFT JOIN deliveries d "
            "ON d.subscriber_id = s.id AND d.post = ? "
            f"WHERE s.status = 'active' AND s.goal IN ({marks}) GROUP BY s.goal, d.state",
            (post, *goals)).fetchall()
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
        return Plan(post=post, to_send={g: to_send[g] for g in goals},
                    done={g: done[g] for g in goals}, in_flight=self.count(post, "in-flight"),
                    unmatched=unmatched)

    def count(self, post: str, state: str) -> int:
        """Rows of a post in one state."""
        return self.conn.execute("SELECT COUNT(*) FROM deliveries WHERE post = ? AND state = ?",
                                 (post, state)).fetchone()[0]

    def in_flight_ids(self, post: str) -> list[int]:
        """The readers of a post whose row is in flight."""
        return [row[0] for row in self.conn.execute(
            "SELECT subscriber_id FROM deliveries WHERE post = ? AND state = 'in-flight'",
            (post,))]

    def release_in_flight(self, post: str) -> int:
        """Make in-flight rows planned again (only when the author asks to resend them)."""
        with self.store.transaction() as conn:
            return conn.execute("UPDATE deliveries SET state = 'planned', updated_at = ? "
                                "WHERE post = ? AND state = 'in-flight'",
                                (now(), post)).rowcount

    def peek(self, post: str, goal: str, limit: int, max_attempts: int, at: float,
             skip: frozenset[int] = frozenset()) -> list[Delivery]:
        """Up to `limit` sendable rows of a goal, not yet marked (readers who left since the
        plan are settled as rejected on the way)."""
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT d.subscriber_id, d.email, d.attempts, s.first_name, s.status, "
                "s.race_date, s.race_name, s.timezone "
                "FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
                "WHERE d.post = ? AND d.goal = ? AND d.state IN ('planned', 'failed') "
                "AND d.attempts < ? AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?) "
                # By state first so the planner walks the deliveries_claim index, not every
                # row of the post; retries ('failed') then come before fresh rows.
                "ORDER BY d.state, d.subscriber_id LIMIT ?",
                (post, goal, max_attempts, at, limit + len(skip))).fetchall()
            stamp = now()
            found: list[Delivery] = []
            for sid, addr, attempts, first_name, status, race_date, race_name, tz in rows:
                if sid in skip or len(found) == limit:
                    continue
                if status != "active":  # left (or bounced) after the plan was made
                    # Only while still unclaimed: on PostgreSQL another publish may have
                    # marked the row in flight since it was read (this waits on its lock).
                    conn.execute("UPDATE deliveries SET state = 'rejected', error = ?, "
                                 "updated_at = ? WHERE post = ? AND subscriber_id = ? "
                                 "AND state IN ('planned', 'failed')",
                                 (f"reader is {status}", stamp, post, sid))
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
        these = f"AND subscriber_id IN ({','.join('?' * len(ids))})"
        # SQLite's planner would walk every unsent row of the post through an index led by
        # (post, …) (O(list) per call: a 1M-reader publish slowed threefold); '+post' and
        # '+state' leave it (subscriber_id, post): one lookup per row of the call.
        post_col, state = (("+post", "+state") if self.store.dialect == "sqlite"
                           else ("post", "state"))
        stamp = now()
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE deliveries SET state = 'rejected', updated_at = ?, error = 'reader is ' "
                "|| (SELECT status FROM subscribers s WHERE s.id = subscriber_id) "
                f"WHERE {post_col} = ? AND {state} IN ('planned', 'failed') {these} AND EXISTS ("
                "SELECT 1 FROM subscribers s WHERE s.id = subscriber_id AND s.status != 'active')",
                (stamp, post, *ids))
            marked = conn.execute(_CLAIM[self.store.dialect].format(these=these),
                                  (stamp, post, post, *ids)).fetchall()
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
            if r.status == ACCEPTED:
                sent.append((r.provider_id, stamp, stamp, post, r.subscriber_id))
            elif r.status == REJECTED:
                rejected.append((r.reason[:500], stamp, post, r.subscriber_id))
                if r.bounce:
                    bounced.append((r.subscriber_id, r.reason[:500]))
            else:
                failed.append((r.reason[:500], at + wait, stamp, int(not r.tried), post,
                               r.subscriber_id))
        with self.store.transaction() as conn:
            conn.executemany("UPDATE deliveries SET state = 'sent', provider_id = ?, error = NULL, "
                             "updated_at = ?, sent_at = ? WHERE post = ? AND subscriber_id = ?",
                             sent)
            conn.executemany("UPDATE deliveries SET state = 'rejected', error = ?, updated_at = ? "
                             "WHERE post = ? AND subscriber_id = ?", rejected)
            conn.executemany("UPDATE deliveries SET state = 'failed', error = ?, "
                             "next_attempt_at = ?, updated_at = ?, attempts = attempts - ? "
                             "WHERE post = ? AND subscriber_id = ?", failed)
            for sid, reason in bounced:
                self.store.report(sid, "bounced", f"rejected by provider: {reason}")

    def unclaim(self, post: str, rows: Iterable[Delivery]) -> None:
        """Put claimed rows back as they were, when a batch provably never left."""
        with self.store.transaction() as conn:
            conn.executemany(
                "UPDATE deliveries SET state = CASE WHEN attempts > 1 THEN 'failed' "
                "ELSE 'planned' END, attempts = attempts - 1 WHERE post = ? AND "
                "subscriber_id = ? AND state = 'in-flight'",
                [(post, d.subscriber_id) for d in rows])

    def next_retry(self, post: str, goals: Sequence[str], max_attempts: int) -> float | None:
        """When the earliest unsent row of these goals may be tried, or None when none is."""
        marks = ",".join("?" * len(goals))
        row = self.conn.execute(
            "SELECT MIN(COALESCE(next_attempt_at, 0)) FROM deliveries WHERE post = ? AND "
            f"goal IN ({marks}) AND state IN ('planned', 'failed') AND attempts < ?",
            (post, *goals, max_attempts)).fetchone()
        return row[0]

    def report(self, post: str) -> dict[str, Counter]:
        """Rows per goal and state."""
        table: dict[str, Counter] = {}
        for goal, state, count in self.conn.execute(
                "SELECT goal, state, COUNT(*) FROM deliveries WHERE post = ? "
                "GROUP BY goal, state ORDER BY goal", (post,)):
            table.setdefault(goal, Counter())[state] = count
        return table
