"""The ledger: table `deliveries`, one row per post and reader, written before and after
every batch, so a publish is safe to re-run and never sends twice; and what providers report
afterwards (a bounce, a complaint, an unsubscribe), noted on the row it is about.

Rows go planned → in-flight → sent | rejected | failed. A re-run sends only planned or
transiently failed rows; rows left in-flight by a crash are reported and sent again only
when the author asks (at most once, by default).
"""

from __future__ import annotations

import json
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
# A call's rows put back as they were read: planned, or failed when tried before.
_PUT_BACK = ("UPDATE deliveries SET state = CASE WHEN attempts > 1 THEN 'failed' "
             "ELSE 'planned' END, attempts = attempts - 1, call_id = NULL "
             "WHERE post = :post AND state = 'in-flight' AND call_id = :call")
_NEXT_RETRY = listing(
    "SELECT MIN(COALESCE(next_attempt_at, 0)) FROM deliveries WHERE post = :post AND "
    "goal IN :goals AND state IN ('planned', 'failed') AND attempts < :max_attempts", "goals")

# The next sendable rows of a goal, retries ('failed') first: each state its own range of
# the deliveries_claim index (post, goal, state, subscriber_id), read in order and cut at the
# limit. One walk with `state IN (…)` could not be read in that order, so it would filter
# every row of the goal, sent ones too: O(list) per call, and a drained goal the worst.
# A run reads fresh rows past the last one it read (`after`): on PostgreSQL the rows it has
# claimed leave dead index entries at the front of the 'planned' range until vacuum, which
# a read from the start would step over again each call.
_PEEK_STATE = ("SELECT * FROM (SELECT subscriber_id, email, attempts, state FROM deliveries "
               "WHERE post = :post AND goal = :goal AND state = '{state}' "
               "AND attempts < :max_attempts "
               "AND (next_attempt_at IS NULL OR next_attempt_at <= :at) {past}"
               "ORDER BY subscriber_id LIMIT :limit) AS {state}")
_PEEK = ("SELECT d.subscriber_id, d.email, d.attempts, d.state, s.first_name, s.status, "
         "s.race_date, s.race_name, s.timezone FROM ("
         + _PEEK_STATE.format(state="failed", past="") + " UNION ALL "
         + _PEEK_STATE.format(state="planned", past="AND subscriber_id > :after ")
         + ") AS d "
         "JOIN subscribers s ON s.id = d.subscriber_id "
         "ORDER BY d.state, d.subscriber_id LIMIT :limit")

# Marking a call's rows in flight, in one statement whatever the call's size: rows still
# sendable whose reader is still active and was read so (`sending`) go in flight; rows whose
# reader has left since the plan (read so or not) are settled as rejected. Ids come as one
# JSON array, so the statement, and its plan, is the same for every call.
#
# On SQLite the write transaction is the lock (BEGIN IMMEDIATE). The unary '+' keeps its
# planner on the (subscriber_id, post) index: one lookup per row of the call, where an
# index led by (post, …) would walk every unsent row of the post (O(list) per call: a
# 1M-reader publish once slowed threefold).
#
# On PostgreSQL each row is locked as it is claimed and a row another process holds is
# skipped, not waited for, so two publishes on one post share it out instead of queueing
# on each other; rows are found by the primary key (post, subscriber_id) from the array.
_CLAIM = {
    "sqlite": """
UPDATE deliveries SET
    state = CASE WHEN s.status = 'active' THEN 'in-flight' ELSE 'rejected' END,
    attempts = attempts + (s.status = 'active'),
    error = CASE WHEN s.status = 'active' THEN error ELSE 'reader is ' || s.status END,
    call_id = :call,
    updated_at = :stamp
FROM subscribers s
WHERE deliveries.subscriber_id IN (SELECT value FROM json_each(:ids))
    AND +deliveries.post = :post AND +deliveries.state IN ('planned', 'failed')
    AND s.id = deliveries.subscriber_id
    AND (s.status != 'active'
         OR deliveries.subscriber_id IN (SELECT value FROM json_each(:sending)))
RETURNING deliveries.subscriber_id, deliveries.state
""",
    "postgresql": """
WITH wanted AS (
    SELECT d.subscriber_id, s.status,
        d.subscriber_id = ANY(ARRAY(SELECT CAST(value AS integer)
                                    FROM json_array_elements_text(CAST(:sending AS json))))
            AS read_active
    FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
    WHERE d.post = :post AND d.subscriber_id = ANY(ARRAY(
            SELECT CAST(value AS integer) FROM json_array_elements_text(CAST(:ids AS json))))
        AND d.state IN ('planned', 'failed')
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries d SET
    state = CASE WHEN w.status = 'active' THEN 'in-flight' ELSE 'rejected' END,
    attempts = d.attempts + CASE WHEN w.status = 'active' THEN 1 ELSE 0 END,
    error = CASE WHEN w.status = 'active' THEN d.error ELSE 'reader is ' || w.status END,
    call_id = :call,
    updated_at = :stamp
FROM wanted w
WHERE d.post = :post AND d.subscriber_id = w.subscriber_id
    AND (w.status != 'active' OR w.read_active)
RETURNING d.subscriber_id, d.state
""",
}

# Settling a call from its receipts, in one statement: each row's new state, provider id,
# error and whether it was tried come as one JSON array of [id, state, provider_id, error,
# untried]; the failed rows share one retry time. An answer that says the message was never
# tried gives its attempt back. On SQLite the '+' leaves the planner one way: the array
# outside, each row found through (subscriber_id, post), not the post's rows outside.
_SETTLE_SET = """
    state = v.state,
    provider_id = CASE WHEN v.state = 'sent' THEN v.provider_id ELSE {d}provider_id END,
    error = v.error,
    next_attempt_at = CASE WHEN v.state = 'failed' THEN :next_attempt_at
                      ELSE {d}next_attempt_at END,
    attempts = {d}attempts - v.untried,
    updated_at = :stamp,
    sent_at = CASE WHEN v.state = 'sent' THEN :stamp ELSE {d}sent_at END
"""
_SETTLE = {
    "sqlite": "UPDATE deliveries SET " + _SETTLE_SET.format(d="deliveries.") + """
FROM (SELECT value ->> 0 AS id, value ->> 1 AS state, value ->> 2 AS provider_id,
             value ->> 3 AS error, value ->> 4 AS untried FROM json_each(:rows)) AS v
WHERE +deliveries.post = :post AND deliveries.subscriber_id = v.id
""",
    "postgresql": "UPDATE deliveries d SET " + _SETTLE_SET.format(d="d.") + """
FROM (SELECT CAST(r ->> 0 AS integer) AS id, r ->> 1 AS state, r ->> 2 AS provider_id,
             r ->> 3 AS error, CAST(r ->> 4 AS integer) AS untried
      FROM json_array_elements(CAST(:rows AS json)) AS e(r)) AS v
WHERE d.post = :post AND d.subscriber_id = v.id
""",
}
_ROW_STATE = {ACCEPTED: "sent", REJECTED: "rejected"}  # any other receipt: failed

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
    status: str = "active"  # the reader's, when the row was read: not active means left


@dataclass(frozen=True)
class Claim:
    """Rows marked in flight for one call (`call`: its id in `calls`), not yet sent: the
    call goes only once `Ledger.call_goes_out` says so."""

    call: int | None
    ids: frozenset[int]


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
        self.store.analyze(("deliveries", "subscribers"), written=cursor.rowcount)
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
            conn.execute("DELETE FROM calls WHERE post = :post", {"post": post})
            return conn.execute("UPDATE deliveries SET state = 'planned', call_id = NULL, "
                                "updated_at = :stamp WHERE post = :post "
                                "AND state = 'in-flight'",
                                {"stamp": now(), "post": post}).rowcount

    def take_back_unsent(self, post: str | None = None) -> int:
        """Put back the rows of calls claimed that never went out (a run that died between
        claiming a call and sending it), of one post or all; the rows put back. Run before
        anything is decided from the ledger, so those rows count as to send, not in doubt."""
        with self.store.transaction() as conn:
            # The calls go first, each locked and gone before its rows move: a publish
            # about to send one finds it gone (call_goes_out) and leaves it.
            taken = conn.execute(
                "DELETE FROM calls WHERE state = 'claimed' AND (post = :post OR :all) "
                "RETURNING post, id", {"post": post or "", "all": post is None}).fetchall()
            return sum(conn.execute(_PUT_BACK, {"post": item, "call": call}).rowcount
                       for item, call in taken)

    def peek(self, post: str, goal: str, limit: int, max_attempts: int, at: float,
             after: int = 0) -> list[Delivery]:
        """Up to `limit` sendable rows of a goal, not yet marked: retries first, then planned
        rows of readers past `after` (an id). A row whose reader has left since the plan
        comes with their status, for the mark to settle; `attempts` is what the row will
        have once marked."""
        rows = self.conn.execute(_PEEK, {"post": post, "goal": goal,
                                         "max_attempts": max_attempts, "at": at,
                                         "limit": limit, "after": after}).fetchall()
        return [Delivery(post, sid, addr, goal, state, attempts + 1, first_name, race_date,
                         race_name, tz, status)
                for sid, addr, attempts, state, first_name, status, race_date, race_name, tz
                in rows]

    def mark_in_flight(self, post: str, rows: Iterable[Delivery]) -> Claim:
        """Mark rows in-flight for one call, committed; the call goes once `call_goes_out`.

        Rows are read while the previous call is out, so a reader may have left since: the
        status is checked in the same statement as the mark, and their row is settled as
        rejected instead (so is a row read as left, unless its reader is back).
        """
        rows = list(rows)
        if not rows:
            return Claim(None, frozenset())
        with self.store.transaction() as conn:
            return self._mark(conn, post, rows)

    def _mark(self, conn, post: str, rows: Sequence[Delivery]) -> Claim:
        """The claiming statements, in the caller's transaction: a new call, and its rows."""
        stamp = now()
        call = conn.execute("INSERT INTO calls(post, state, at) VALUES (:post, 'claimed', "
                            ":stamp) RETURNING id", {"post": post, "stamp": stamp}
                            ).fetchone()[0]
        marked = conn.execute(_CLAIM[self.store.dialect], {
            "stamp": stamp, "post": post, "call": call,
            "ids": json.dumps([d.subscriber_id for d in rows]),
            "sending": json.dumps([d.subscriber_id for d in rows if d.status == "active"]),
        }).fetchall()
        ids = frozenset(sid for sid, state in marked if state == "in-flight")
        if not ids:
            conn.execute("DELETE FROM calls WHERE id = :call", {"call": call})
            return Claim(None, ids)
        return Claim(call, ids)

    def call_goes_out(self, call: int) -> bool:
        """Commit that a claimed call is being sent, just before it is (one row); False when
        it was taken back meanwhile (`take_back_unsent` in another run): do not send it."""
        with self.store.transaction() as conn:
            return conn.execute("UPDATE calls SET state = 'out' WHERE id = :call "
                                "AND state = 'claimed'", {"call": call}).rowcount == 1

    def claim(self, post: str, goal: str, limit: int, max_attempts: int,
              at: float) -> list[Delivery]:
        """Mark up to `limit` sendable rows in-flight, gone out, and return them."""
        rows = self.peek(post, goal, limit, max_attempts, at)
        claim = self.mark_in_flight(post, rows)
        if claim.call is None or not self.call_goes_out(claim.call):
            return []
        return [d for d in rows if d.subscriber_id in claim.ids]

    def record(self, post: str, receipts: Iterable[Receipt], attempts: dict[int, int],
               base: float, cap: float, at: float, then_mark: Sequence[Delivery] = (),
               call: int | None = None) -> Claim:
        """Settle a batch's rows from its receipts; a rejection about the reader's address
        marks them bounced (a complaint, stricter, stays); the failed rows share one retry
        time. `call`: the settled call's id, whose row goes (its rows without a receipt stay
        in flight, in doubt). With `then_mark`, the next call's rows are marked in flight in
        the same transaction (one commit per call)."""
        stamp = now()
        receipts = list(receipts)
        wait = call_backoff(receipts, attempts, base, cap)
        rows = [[r.subscriber_id, _ROW_STATE.get(r.status, "failed"),
                 r.provider_id if r.status == ACCEPTED else None,
                 None if r.status == ACCEPTED else r.reason[:500],
                 int(r.status not in _ROW_STATE and not r.tried)] for r in receipts]
        # Only an answer about the reader's address bounces them (see providers.verdicts).
        bounced = [(r.subscriber_id, r.reason[:500]) for r in receipts
                   if r.status == REJECTED and r.bounce]
        with self.store.transaction() as conn:
            if rows:
                conn.execute(_SETTLE[self.store.dialect], {
                    "post": post, "rows": json.dumps(rows), "stamp": stamp,
                    "next_attempt_at": at + wait})
            for sid, reason in bounced:
                self.store.report(sid, "bounced", f"rejected by provider: {reason}")
            if call is not None:
                conn.execute("DELETE FROM calls WHERE id = :call", {"call": call})
            return self._mark(conn, post, then_mark) if then_mark else Claim(None, frozenset())

    def unclaim(self, post: str, call: int | None) -> None:
        """Put a call's rows still in flight back as they were, when they provably never
        left (its rows already settled stay settled)."""
        if call is None:
            return
        with self.store.transaction() as conn:
            # Gone already: another run took it back (and its rows may be that run's now).
            if conn.execute("DELETE FROM calls WHERE id = :call RETURNING id",
                            {"call": call}).fetchone() is not None:
                conn.execute(_PUT_BACK, {"post": post, "call": call})

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
