"""Deliver a post: plan one Delivery per reader in the ledger, then send in batches.

The ledger (table `deliveries`, one row per post and reader) is written before and after
every batch: rows go planned → in-flight → sent | rejected | failed. A re-run sends only
planned or transiently failed rows; rows left in-flight by a crash are reported and sent
again only when the author asks (at most once, by default).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from .address import Addresser, Compiled
from .model import Goal, Resolved
from .providers.base import (
    ACCEPTED,
    FAILED,
    REJECTED,
    Batch,
    Provider,
    ProviderConfigError,
    Receipt,
)
from .render import EmailRenderer
from .store import Store, now

STATES = ("planned", "in-flight", "sent", "rejected", "failed")
# The longest Retry-After a publish sits out ([delivery] retry_after_max); a provider asking
# for more stops the run, which says when to run it again.
RETRY_AFTER_MAX = 900.0


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


@dataclass
class Outcome:
    """What one publish run did, per goal and state."""

    sent: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    batches: int = 0
    # Set when the provider asked to wait longer than retry_after_max and the run stopped:
    # how long it asked, and the clock's time after which a re-run may send.
    wait_asked: float | None = None
    resume_at: float | None = None


def backoff(attempt: int, base: float, cap: float, retry_after: float | None,
            rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the next try: exponential with jitter, capped at `cap`; a
    longer Retry-After wins, uncapped (the provider said when it will take calls again)."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = delay * (0.5 + rng() / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def told_to_wait(receipts: Iterable[Receipt]) -> float | None:
    """The longest Retry-After among a call's failed receipts, or None when none said one."""
    return max((r.retry_after for r in receipts
                if r.status == FAILED and r.retry_after is not None), default=None)


def call_backoff(receipts: Sequence[Receipt], attempts: dict[int, int], base: float,
                 cap: float) -> float:
    """One wait for all of a call's failed rows, so they come back together in full calls
    (a jitter each would scatter a 1,000-reader call into many small ones)."""
    tries = max((attempts.get(r.subscriber_id, 1) for r in receipts if r.status == FAILED),
                default=1)
    return backoff(tries, base, cap, told_to_wait(receipts))


@dataclass
class Pause:
    """The provider's own Retry-After, kept for every goal and row: no call goes before
    `until`, however many rows are due meanwhile (each would only burn an attempt)."""

    clock: Callable[[], float]
    sleep: Callable[[float], None]
    label: str  # the provider, as the notice names it
    notice: Callable[[str], None] | None = None
    until: float = 0.0
    asked: float = 0.0

    def heed(self, receipts: Sequence[Receipt], at: float) -> None:
        """Take a call's longest Retry-After, counted from `at` (when its answer came)."""
        asked = told_to_wait(receipts)
        if asked is not None and at + asked > self.until:
            self.until, self.asked = at + asked, asked

    def sit_out(self) -> bool:
        """Sleep until the provider's wait has passed, saying so meanwhile; False when it
        already had."""
        if self.clock() >= self.until:
            return False
        if self.notice:
            self.notice(f"{self.label} asked to wait {math.ceil(self.asked)} s")
        while (left := self.until - self.clock()) > 0:
            self.sleep(left)
        if self.notice:
            self.notice("")
        return True


class Ledger:
    """The deliveries table: what was planned, what is in flight, what is settled."""

    def __init__(self, store: Store):
        self.store = store
        self.conn = store.conn

    def plan(self, post: str, goals: Sequence[str]) -> int:
        """Add a planned row for every active reader in these goals not yet in the ledger."""
        marks = ",".join("?" * len(goals))
        with self.store.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO deliveries(post, subscriber_id, email, goal, state, "
                "attempts, updated_at) SELECT ?, id, email, goal, 'planned', 0, ? "
                f"FROM subscribers WHERE status = 'active' AND goal IN ({marks})",
                (post, now(), *goals))
            # A new run gives transiently failed rows a fresh set of tries.
            conn.execute("UPDATE deliveries SET attempts = 0, next_attempt_at = NULL "
                         "WHERE post = ? AND state = 'failed'", (post,))
        return cursor.rowcount

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
                "SELECT d.subscriber_id, d.email, d.attempts, s.first_name, s.status "
                "FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
                "WHERE d.post = ? AND d.goal = ? AND d.state IN ('planned', 'failed') "
                "AND d.attempts < ? AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?) "
                # By state first so the planner walks the deliveries_claim index, not every
                # row of the post; retries ('failed') then come before fresh rows.
                "ORDER BY d.state, d.subscriber_id LIMIT ?",
                (post, goal, max_attempts, at, limit + len(skip))).fetchall()
            stamp = now()
            found: list[Delivery] = []
            for sid, addr, attempts, first_name, status in rows:
                if sid in skip or len(found) == limit:
                    continue
                if status != "active":  # left (or bounced) after the plan was made
                    conn.execute("UPDATE deliveries SET state = 'rejected', error = ?, "
                                 "updated_at = ? WHERE post = ? AND subscriber_id = ?",
                                 (f"reader is {status}", stamp, post, sid))
                    continue
                found.append(Delivery(post, sid, addr, goal, "in-flight", attempts + 1,
                                      first_name))
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
        stamp = now()
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE deliveries SET state = 'rejected', updated_at = ?, error = 'reader is ' "
                "|| (SELECT status FROM subscribers s WHERE s.id = subscriber_id) "
                f"WHERE post = ? AND state IN ('planned', 'failed') {these} AND subscriber_id "
                "IN (SELECT id FROM subscribers WHERE status != 'active')",
                (stamp, post, *ids))
            marked = conn.execute(
                "UPDATE deliveries SET state = 'in-flight', attempts = attempts + 1, "
                f"updated_at = ? WHERE post = ? AND state IN ('planned', 'failed') {these} "
                "AND subscriber_id IN (SELECT id FROM subscribers WHERE status = 'active') "
                "RETURNING subscriber_id",
                (stamp, post, *ids)).fetchall()
        return {row[0] for row in marked}

    def claim(self, post: str, goal: str, limit: int, max_attempts: int,
              at: float) -> list[Delivery]:
        """Mark up to `limit` sendable rows in-flight and return them (committed first)."""
        rows = self.peek(post, goal, limit, max_attempts, at)
        marked = self.mark_in_flight(post, rows)
        return [d for d in rows if d.subscriber_id in marked]

    def record(self, post: str, receipts: Iterable[Receipt], attempts: dict[int, int],
               base: float, cap: float, at: float) -> None:
        """Settle a batch's rows from its receipts; a rejection marks the reader bounced;
        the failed rows share one retry time."""
        stamp = now()
        receipts = list(receipts)
        wait = call_backoff(receipts, attempts, base, cap)
        sent, rejected, failed = [], [], []
        for r in receipts:
            if r.status == ACCEPTED:
                sent.append((r.provider_id, stamp, post, r.subscriber_id))
            elif r.status == REJECTED:
                rejected.append((r.reason[:500], stamp, post, r.subscriber_id))
            else:
                failed.append((r.reason[:500], at + wait, stamp, int(not r.tried), post,
                               r.subscriber_id))
        with self.store.transaction() as conn:
            conn.executemany("UPDATE deliveries SET state = 'sent', provider_id = ?, error = NULL, "
                             "updated_at = ? WHERE post = ? AND subscriber_id = ?", sent)
            conn.executemany("UPDATE deliveries SET state = 'rejected', error = ?, updated_at = ? "
                             "WHERE post = ? AND subscriber_id = ?", rejected)
            conn.executemany("UPDATE deliveries SET state = 'failed', error = ?, "
                             "next_attempt_at = ?, updated_at = ?, attempts = attempts - ? "
                             "WHERE post = ? AND subscriber_id = ?", failed)
            for reason, _, _, sid in rejected:
                self.store.set_status(sid, "bounced", f"rejected by provider: {reason}")

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


@dataclass(frozen=True)
class Call:
    """The rows of one provider call, by goal, with their batches built."""

    parts: tuple[tuple[Goal, tuple[Delivery, ...]], ...]
    batches: tuple[Batch, ...]

    @property
    def rows(self) -> list[Delivery]:
        """Every row of the call."""
        return [d for _, rows in self.parts for d in rows]


def send_post(resolved: Resolved, ledger: Ledger, provider: Provider, renderer: EmailRenderer,
              addresser: Addresser, *, max_attempts: int = 5, backoff_base: float = 1.0,
              backoff_max: float = 60.0, progress: Callable[[int], None] | None = None,
              sleep: Callable[[float], None] = time.sleep,
              clock: Callable[[], float] = time.time,
              retry_after_max: float = RETRY_AFTER_MAX,
              notice: Callable[[str], None] | None = None) -> Outcome:
    """Send every planned row of a post, call by call; settle each call in the ledger.

    A call takes up to the provider's limit of rows, goal by goal; a provider that can mix
    editions in one call gets the next goal's rows to fill a goal's last, partial one.
    While one call is out (on a worker thread, waiting on the network), the next is read
    from the ledger and addressed; it is marked in-flight only once the previous call is
    settled and just before it goes, so a crash leaves at most one call in doubt.

    A Retry-After holds back every call (all goals, all rows) until it has passed, and
    `notice` is told so; one longer than `retry_after_max` stops the run (Outcome.resume_at).
    """
    outcome = Outcome()
    prepared = renderer.prepare(resolved)
    post = resolved.slug
    goals = list(resolved.audience)
    compiled: dict[str, Compiled] = {}  # a goal's edition is rendered once, when first needed
    pause = Pause(clock, sleep, getattr(provider, "label", "") or provider.name, notice)

    def next_call(skip: frozenset[int]) -> Call | None:
        parts: list[tuple[Goal, tuple[Delivery, ...]]] = []
        room = provider.max_batch
        for goal in goals:
            rows = ledger.peek(post, goal.slug, room, max_attempts, clock(), skip)
            if rows:
                parts.append((goal, tuple(rows)))
                room -= len(rows)
            if room == 0 or (parts and not provider.mixes_editions):
                break
        if not parts:
            return None
        batches = []
        for goal, rows in parts:
            if goal.slug not in compiled:
                compiled[goal.slug] = addresser.compile(renderer.edition(prepared, goal))
            batches.append(_batch(compiled[goal.slug], rows, addresser, post))
        return Call(tuple(parts), tuple(batches))

    def settle(call: Call, receipts: list[Receipt]) -> None:
        attempts = {d.subscriber_id: d.attempts for d in call.rows}
        at = clock()
        ledger.record(post, receipts, attempts, backoff_base, backoff_max, at)
        pause.heed(receipts, at)
        outcome.batches += 1
        goal_of = {d.subscriber_id: goal.slug for goal, rows in call.parts for d in rows}
        for r in receipts:
            if r.status == ACCEPTED:
                outcome.sent[goal_of[r.subscriber_id]] += 1
            elif r.status == REJECTED:
                outcome.rejected[goal_of[r.subscriber_id]] += 1
            if progress and r.status != FAILED:
                progress(1)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="send") as worker:
        out: tuple[Call, Future[list[Receipt]]] | None = None
        while True:
            upcoming = next_call(frozenset(d.subscriber_id for d in out[0].rows)
                                 if out else frozenset())
            if out is not None:
                call, future = out
                out = None
                try:
                    receipts = future.result()
                except ProviderConfigError:
                    ledger.unclaim(post, call.rows)  # nothing went out: no trace of the try
                    raise
                settle(call, receipts)
                if pause.asked > retry_after_max:  # the call read meanwhile is not marked
                    outcome.wait_asked, outcome.resume_at = pause.asked, pause.until
                    break
            if upcoming is None:
                if out is None:
                    retry_at = ledger.next_retry(post, [g.slug for g in goals], max_attempts)
                    if retry_at is None:
                        break
                    if not pause.sit_out():
                        sleep(max(0.0, min(retry_at - clock(), backoff_max)))
                continue
            pause.sit_out()
            marked = ledger.mark_in_flight(post, upcoming.rows)
            upcoming = _only(upcoming, marked)
            if upcoming.rows:
                out = (upcoming, worker.submit(provider.send_many, list(upcoming.batches)))
    for goal_slug, states in ledger.report(post).items():
        if states["failed"]:
            outcome.failed[goal_slug] = states["failed"]
    return outcome


def _only(call: Call, marked: set[int]) -> Call:
    """The call without rows someone else settled between reading and marking them."""
    if len(marked) == len(call.rows):
        return call
    parts = tuple((g, tuple(d for d in rows if d.subscriber_id in marked))
                  for g, rows in call.parts)
    batches = tuple(Batch(b.edition, b.compiled,
                          tuple(r for r in b.recipients if r.subscriber_id in marked))
                    for b in call.batches)
    return Call(tuple(p for p in parts if p[1]), tuple(b for b in batches if b.recipients))


def _batch(compiled: Compiled, rows: list[Delivery], addresser: Addresser,
           post: str) -> Batch:
    """A Batch of one edition; a recipient the provider gives no receipt for may or may not
    have been sent: its row is not settled, so it stays in-flight and is reported."""
    recipients = tuple(addresser.recipient(post, d.subscriber_id, d.email, d.first_name)
                       for d in rows)
    return Batch(edition=compiled.edition, compiled=compiled, recipients=recipients)


__all__ = ["RETRY_AFTER_MAX", "STATES", "Ledger", "Pause", "Plan", "backoff", "send_post"]
