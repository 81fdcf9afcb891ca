"""Deliver a post: send the editions rendered once to every reader planned in the ledger,
call by call, settling each call in the ledger (see `ledger`) and waiting as `retry` says.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

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
from publisher.store.ledger import Claim, Delivery, Ledger


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
    """The rows of one provider call, by goal, marked in flight, with their batches built
    and made ready to go by the provider."""

    parts: tuple[tuple[Goal, tuple[Delivery, ...]], ...]
    id: int | None  # in the ledger's calls
    prepared: Any  # what Provider.prepare made of the call's batches

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
    network), the next is read from the ledger, marked in flight in the transaction that
    settles the call before, addressed and built (`Provider.prepare`), so it goes the
    moment the one out comes back. So two calls can have rows in flight at once, but only
    the one on the wire is in doubt: a claimed call turns 'out' in the ledger (one small
    commit) just before it is sent, the next run puts back the rows of a call a crash left
    only claimed, and every stop the run sees (an error, Ctrl-C, a Retry-After) puts such a
    call back at once.

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
    """One publish run: each call claimed, addressed and made ready while the one before it
    is on the wire, so it goes the moment that one comes back; answers settled in the next
    call's claiming transaction."""

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
    # The call that came back and is not yet settled in the ledger (at most one: the next
    # claim settles it): its rows are still in flight there, as a crash should leave them.
    answered: tuple[Call, list[Receipt], float] | None = None

    @property
    def post(self) -> str:
        return self.rendered.resolved.slug

    @property
    def goals(self) -> list[Goal]:
        return [r.goal for r in self.rendered.renditions]

    def run(self) -> Outcome:
        """Claim the next call while the last one is out; stop when nothing is left to try."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="send") as worker:
            out: tuple[Call, Future[list[Receipt]]] | None = None
            ready: Call | None = None
            self.ledger.take_back_unsent(self.post)
            try:
                while True:
                    if out is None:
                        self.pause.sit_out()  # nothing is claimed while the provider waits
                        ready = ready or self.claim_next()
                        if ready is None:
                            self.settle_answered()
                            if not self.wait_for_retry():
                                break
                            continue
                        out, ready = self.submit(ready, worker), None
                        continue
                    if ready is None:
                        ready = self.claim_next()
                    call, future = out
                    out = None
                    self.collect(call, future)
                    if self.pause.asked > self.retry_after_max:
                        self.outcome.wait_asked = self.pause.asked
                        self.outcome.resume_at = self.pause.until
                        break
                    if ready is not None and self.clock() >= self.pause.until:
                        out, ready = self.submit(ready, worker), None
                    elif ready is not None:  # the provider asked to wait: it goes after
                        self.put_back(ready)
                        ready = None
            except BaseException:
                # Whatever stops the run, a call claimed but never sent goes back as it was,
                # and the answers already in are kept; the call on the wire stays in flight.
                self.put_back(ready)
                raise
            self.put_back(ready)
        for goal_slug, states in self.ledger.report(self.post).items():
            if states["failed"]:
                self.outcome.failed[goal_slug] = states["failed"]
        return self.outcome

    def claim_next(self) -> Call | None:
        """The next call: its rows read, marked in flight (in the transaction that settles
        the answers in) and addressed; None when none is due now."""
        parts = self.next_rows()
        if not parts and self.drained:
            # A retry may have come due in a goal read empty before, or a row another
            # publish held may be planned again: one more pass, from the start.
            self.drained.clear()
            self.read_past.clear()
            parts = self.next_rows()
        rows = [d for _, goal_rows in parts for d in goal_rows]
        claim = self.settle_answered(then_mark=rows)
        if claim.call is None:
            return None
        parts = [(goal, kept) for goal, goal_rows in parts
                 if (kept := tuple(d for d in goal_rows if d.subscriber_id in claim.ids))]
        try:
            batches = tuple(_batch(self.compiled_for(goal), list(goal_rows), self.addresser,
                                   self.post) for goal, goal_rows in parts)
            # Built here, while the call before is on the wire, not after it comes back.
            return Call(tuple(parts), claim.call, self.provider.prepare(batches))
        except BaseException:
            # Claimed but never built: it goes back now, not at the next run's take-back.
            self.ledger.unclaim(self.post, claim.call)
            self.reread()
            raise

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

    def submit(self, call: Call, worker: ThreadPoolExecutor
               ) -> tuple[Call, Future[list[Receipt]]] | None:
        """Turn a claimed call 'out' in the ledger and send it on the worker (None: another
        run took it back meanwhile, and it is not ours to send)."""
        if call.id is None or not self.ledger.call_goes_out(call.id):
            self.reread()
            return None
        return call, worker.submit(self.provider.send_prepared, call.prepared)

    def collect(self, call: Call, future: Future[list[Receipt]]) -> None:
        """Wait for a call's answer and keep it for the next settle; heed any Retry-After.
        A config error settles what went out before it, puts the rest back and is raised."""
        try:
            receipts = future.result()
        except ProviderConfigError as exc:
            # What went out before a stop is settled; the rest never left: no trace of the try.
            self.settle_answered()
            if getattr(exc, "receipts", ()):
                self.settle(call, list(exc.receipts), self.clock(), done=False)
            self.ledger.unclaim(self.post, call.id)
            raise
        at = self.clock()
        self.pause.heed(receipts, at)
        self.answered = (call, receipts, at)

    def put_back(self, call: Call | None) -> None:
        """Settle the answers in and return a claimed call that never went (if any) to the
        state it was read in."""
        self.settle_answered()
        if call is not None:
            self.ledger.unclaim(self.post, call.id)
            self.reread()

    def reread(self) -> None:
        """Read every goal from the start again (rows put back are behind the reads)."""
        self.drained.clear()
        self.read_past.clear()

    def settle_answered(self, then_mark: list[Delivery] | None = None) -> Claim:
        """Record the answers in the ledger and the outcome; with `then_mark`, mark those
        rows in flight for the next call in the same transaction."""
        if self.answered is None:
            return (self.ledger.mark_in_flight(self.post, then_mark) if then_mark
                    else Claim(None, frozenset()))
        (call, receipts, at), self.answered = self.answered, None
        return self.settle(call, receipts, at, then_mark)

    def settle(self, call: Call, receipts: list[Receipt], at: float,
               then_mark: list[Delivery] | None = None, done: bool = True) -> Claim:
        """Record a call's receipts in the ledger and the outcome (`done`: the call is over,
        its row goes); with `then_mark`, claim those rows in the same transaction."""
        attempts = {d.subscriber_id: d.attempts for d in call.rows}
        marked = self.ledger.record(self.post, receipts, attempts, self.backoff_base,
                                    self.backoff_max, at, then_mark=then_mark or (),
                                    call=call.id if done else None)
        self.outcome.batches += 1
        goal_of = {d.subscriber_id: goal.slug for goal, rows in call.parts for d in rows}
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


def _batch(compiled: Compiled, rows: list[Delivery], addresser: Addresser,
           post: str) -> Batch:
    """A Batch of one edition; a recipient the provider gives no receipt for may or may not
    have been sent: its row is not settled, so it stays in-flight and is reported."""
    recipients = tuple(addresser.recipient(post, d.subscriber_id, d.email, d.first_name,
                                           reader=d, needs=compiled.needs)
                       for d in rows)
    return Batch(edition=compiled.edition, compiled=compiled, recipients=recipients)
