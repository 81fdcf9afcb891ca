"""Deliver a post: send the editions rendered once to every reader planned in the ledger,
call by call, settling each call in the ledger (see `ledger`) and waiting as `retry` says.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from publisher.delivery.address import Addresser, Compiled
from publisher.delivery.providers.base import (
    ACCEPTED,
    FAILED,
    REJECTED,
    Batch,
    Provider,
    ProviderConfigError,
    Receipt,
)
from publisher.delivery.retry import RETRY_AFTER_MAX, Pause
from publisher.model import Goal, Resolved
from publisher.render.email import EmailRenderer, Rendered
from publisher.store.ledger import Delivery, Ledger


@dataclass
class Outcome:
    """What one publish run did, per goal and state."""

    sent: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    # Rows this run left in flight: the provider may have taken their call but gave no
    # answer we could read. Never retried by the run; the command must say so (exit 1).
    in_flight: Counter = field(default_factory=Counter)
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
    marked: bool = False  # its rows are in flight in the ledger (only those it still has)

    @property
    def rows(self) -> list[Delivery]:
        """Every row of the call."""
        return [d for _, rows in self.parts for d in rows]


def send_rendered(rendered: Rendered, ledger: Ledger, provider: Provider, addresser: Addresser,
                  *, max_attempts: int = 5, backoff_base: float = 1.0,
                  backoff_max: float = 60.0, progress: Callable[[int], None] | None = None,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.time,
                  retry_after_max: float = RETRY_AFTER_MAX,
                  notice: Callable[[str], None] | None = None) -> Outcome:
    """Send every planned row of a post, call by call; settle each call in the ledger.

    The editions are `rendered`'s, made once before (the ones check looked at); per reader
    only slots and headers are filled. A call takes up to the provider's limit of rows, goal
    by goal; a provider that can mix editions in one call gets the next goal's rows to fill
    a goal's last, partial one. While one call is out (on a worker thread, waiting on the
    network), the next is read from the ledger and addressed; it is marked in-flight only
    once the previous call is settled and just before it goes, so a crash leaves at most one
    call in doubt.

    A Retry-After holds back every call (all goals, all rows) until it has passed, and
    `notice` is told so; one longer than `retry_after_max` stops the run (Outcome.resume_at).
    """
    run = _Run(rendered, ledger, provider, addresser, max_attempts=max_attempts,
               backoff_base=backoff_base, backoff_max=backoff_max, progress=progress,
               sleep=sleep, clock=clock, retry_after_max=retry_after_max,
               pause=Pause(clock, sleep, getattr(provider, "label", "") or provider.name,
                           notice))
    return run.run()


def send_post(resolved: Resolved, ledger: Ledger, provider: Provider, renderer: EmailRenderer,
              addresser: Addresser, **options) -> Outcome:
    """Render every edition of a post once and send them (options as `send_rendered`'s)."""
    return send_rendered(renderer.render(resolved), ledger, provider, addresser, **options)


@dataclass
class _Run:
    """One publish run: calls read from the ledger, sent one at a time, settled in turn."""

    rendered: Rendered
    ledger: Ledger
    provider: Provider
    addresser: Addresser
    max_attempts: int
    backoff_base: float
    backoff_max: float
    progress: Callable[[int], None] | None
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    retry_after_max: float
    pause: Pause
    outcome: Outcome = field(default_factory=Outcome)
    compiled: dict[str, Compiled] = field(default_factory=dict)  # per goal, when first needed
    # Goals whose last read came back short: nothing more is due in them until a retry is,
    # so they are read again only once every goal is (a drained goal costs a query a call).
    drained: set[str] = field(default_factory=set)
    read_past: dict[str, int] = field(default_factory=dict)  # goal -> last planned id read

    @property
    def post(self) -> str:
        return self.rendered.resolved.slug

    @property
    def goals(self) -> list[Goal]:
        return [r.goal for r in self.rendered.renditions]

    def run(self) -> Outcome:
        """Read the next call while the last one is out; stop when nothing is left to try."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="send") as worker:
            out: tuple[Call, Future[list[Receipt]]] | None = None
            while True:
                upcoming = self.next_call()
                if out is not None:
                    done, out = out, None
                    upcoming, stop = self.collect(*done, upcoming)
                    if stop:
                        break
                    if upcoming is not None and upcoming.marked:
                        out = self.submit(upcoming, worker)
                        continue
                if upcoming is None:
                    if out is None and not self.wait_for_retry():
                        break
                    continue
                out = self.launch(upcoming, worker)
        for goal_slug, states in self.ledger.report(self.post).items():
            if states["failed"]:
                self.outcome.failed[goal_slug] = states["failed"]
        return self.outcome

    def next_call(self) -> Call | None:
        """The next call's rows and batches, read but not yet marked (None: none is due).
        Rows of readers read as gone are in the call, for the mark to settle, but in no
        batch."""
        parts = self.next_rows()
        if not parts and self.drained:
            # A retry may have come due in a goal read empty before, or a row another
            # publish held may be planned again: one more pass, from the start.
            self.drained.clear()
            self.read_past.clear()
            parts = self.next_rows()
        if not parts:
            return None
        batches = tuple(_batch(self.compiled_for(goal), sending, self.addresser, self.post)
                        for goal, rows in parts
                        if (sending := [d for d in rows if d.status == "active"]))
        return Call(tuple(parts), batches)

    def next_rows(self) -> list[tuple[Goal, tuple[Delivery, ...]]]:
        """Up to a call's worth of sendable rows, goal by goal, past the goals read empty."""
        parts: list[tuple[Goal, tuple[Delivery, ...]]] = []
        room = self.provider.max_batch
        for goal in self.goals:
            if goal.slug in self.drained:
                continue
            rows = self.ledger.peek(self.post, goal.slug, room, self.max_attempts,
                                    self.clock(), self.read_past.get(goal.slug, 0))
            if len(rows) < room:
                self.drained.add(goal.slug)
            fresh = [d.subscriber_id for d in rows if d.state == "planned"]
            if fresh:
                self.read_past[goal.slug] = max(fresh)
            if rows:
                parts.append((goal, tuple(rows)))
                room -= len(rows)
            if room == 0 or (parts and not self.provider.mixes_editions):
                break
        return parts

    def compiled_for(self, goal: Goal) -> Compiled:
        """A goal's edition made ready for addressing, once."""
        if goal.slug not in self.compiled:
            self.compiled[goal.slug] = self.addresser.compile(
                self.rendered.editions[goal.slug])
        return self.compiled[goal.slug]

    def launch(self, call: Call, worker: ThreadPoolExecutor
               ) -> tuple[Call, Future[list[Receipt]]] | None:
        """Mark a call's rows in-flight (after any wait the provider asked for) and send it."""
        self.pause.sit_out()
        return self.submit(_only(call, self.ledger.mark_in_flight(self.post, call.rows)),
                           worker)

    def submit(self, call: Call, worker: ThreadPoolExecutor
               ) -> tuple[Call, Future[list[Receipt]]] | None:
        """Send a marked call on the worker (None when none of its rows was marked)."""
        if not call.batches:
            return None
        return call, worker.submit(self.provider.send_many, list(call.batches))

    def collect(self, call: Call, future: Future[list[Receipt]],
                upcoming: Call | None) -> tuple[Call | None, bool]:
        """Settle a call that was out and, in the same transaction, mark the upcoming one
        when it may go at once (no wait asked); the upcoming call as marked (or unmarked),
        and True when the provider asked to wait past the ceiling (the run stops; the call
        read meanwhile is not marked)."""
        try:
            receipts = future.result()
        except ProviderConfigError as exc:
            # What went out before a stop is settled; the rest never left: no trace of the try.
            if getattr(exc, "receipts", ()):
                self.settle(call, list(exc.receipts))
            self.ledger.unclaim(self.post, call.rows)
            raise
        at = self.clock()
        self.pause.heed(receipts, at)
        if self.pause.asked > self.retry_after_max:
            self.settle(call, receipts, at)
            self.outcome.wait_asked, self.outcome.resume_at = self.pause.asked, self.pause.until
            return None, True
        if upcoming is None or self.clock() < self.pause.until:
            self.settle(call, receipts, at)
            return upcoming, False
        marked = self.settle(call, receipts, at, then_mark=upcoming)
        return _only(upcoming, marked), False

    def settle(self, call: Call, receipts: list[Receipt], at: float | None = None,
               then_mark: Call | None = None) -> set[int]:
        """Record a call's receipts in the ledger and the outcome; with `then_mark`, mark
        that call's rows in the same transaction (the ids marked)."""
        attempts = {d.subscriber_id: d.attempts for d in call.rows}
        at = self.clock() if at is None else at
        marked = self.ledger.record(self.post, receipts, attempts, self.backoff_base,
                                    self.backoff_max, at,
                                    then_mark=then_mark.rows if then_mark else ())
        self.outcome.batches += 1
        goal_of = {d.subscriber_id: goal.slug for goal, rows in call.parts for d in rows
                   if d.status == "active"}
        answered = {r.subscriber_id for r in receipts}
        for sid, goal_slug in goal_of.items():
            if sid not in answered:
                self.outcome.in_flight[goal_slug] += 1
        for r in receipts:
            if r.status == ACCEPTED:
                self.outcome.sent[goal_of[r.subscriber_id]] += 1
            elif r.status == REJECTED:
                self.outcome.rejected[goal_of[r.subscriber_id]] += 1
            if self.progress and r.status != FAILED:
                self.progress(1)
        return marked

    def wait_for_retry(self) -> bool:
        """Nothing is due now: sleep until the earliest retry; False when nothing is left."""
        goals = [g.slug for g in self.goals]
        retry_at = self.ledger.next_retry(self.post, goals, self.max_attempts)
        if retry_at is None:
            return False
        if not self.pause.sit_out():
            self.sleep(max(0.0, min(retry_at - self.clock(), self.backoff_max)))
        return True


def _only(call: Call, marked: set[int]) -> Call:
    """The call as marked: only the rows marked in flight (others were settled, or taken,
    between reading and marking them)."""
    if len(marked) == len(call.rows):  # the usual case: every row is the call's
        return replace(call, marked=True)
    parts = tuple((g, tuple(d for d in rows if d.subscriber_id in marked))
                  for g, rows in call.parts)
    batches = tuple(Batch(b.edition, b.compiled,
                          tuple(r for r in b.recipients if r.subscriber_id in marked))
                    for b in call.batches)
    return Call(tuple(p for p in parts if p[1]), tuple(b for b in batches if b.recipients),
                marked=True)


def _batch(compiled: Compiled, rows: list[Delivery], addresser: Addresser,
           post: str) -> Batch:
    """A Batch of one edition; a recipient the provider gives no receipt for may or may not
    have been sent: its row is not settled, so it stays in-flight and is reported."""
    recipients = tuple(addresser.recipient(post, d.subscriber_id, d.email, d.first_name,
                                           reader=d, needs=compiled.needs)
                       for d in rows)
    return Batch(edition=compiled.edition, compiled=compiled, recipients=recipients)

