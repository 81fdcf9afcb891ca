"""Deliver a post: send the rows the ledger plans, in full provider calls, pipelined.

The ledger (`ledger.py`) is written before and after every call; the retry policy
(`retry.py`) decides when a failed call goes again. Rows left in flight by a crash are
reported and sent again only when the author asks (at most once, by default).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from .address import Addresser, Compiled
from .ledger import STATES, Delivery, Ledger, Plan
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
from .retry import RETRY_AFTER_MAX, Pause, backoff


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
