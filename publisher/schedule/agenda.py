"""What is due: scheduled posts and sequence steps decided per reader against the store,
and the decision written to the ledger (planned and skipped rows) and the enrolments.

Deciding reads; `apply` writes, each item in its own transaction with ON CONFLICT DO NOTHING
on the ledger's (item, reader) key, so two runs deciding at once still make one row per reader and
item, and the ledger's claim (`Ledger.mark_in_flight`) lets only one of them send it.

`enrolments` remembers, per reader and sequence, when to look again and on what basis (race
date, zone, the sequence's timing); an hour when nothing is due reads only the readers whose
time has come or whose basis changed. The statements are in `publisher.store.agenda`.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from publisher.config import Config
from publisher.content.sequences import Sequence
from publisher.content.when import RACE, SIGNUP, zone
from publisher.model import Post
from publisher.schedule.rules import (
    Reader,
    StepState,
    Upcoming,
    enrolled,
    is_stale,
    post_due,
    post_window,
    walk,
)
from publisher.store import Store
from publisher.store.agenda import AgendaQueries

# What computing one reader's dates can raise on data stored before dates were bounded (a
# race in year 9999 overflows) or written around the store's checks: that reader is left
# out and named, and the run goes on for everyone else.
UNREADABLE = (OverflowError, ValueError)


@dataclass
class ItemDecision:
    """One item's readers to plan now and to record as skipped."""

    item: str
    send: list[tuple[int, str]] = field(default_factory=list)  # (reader id, goal)
    skip: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Decision:
    """Everything one run would do, before anything is written."""

    at: dt.datetime
    items: dict[str, ItemDecision] = field(default_factory=dict)
    enrolments: list[tuple[str, int, str, float | None, str | None]] = field(default_factory=list)
    unskip: list[tuple[int, str]] = field(default_factory=list)  # (reader, sequence) re-timed
    unreadable: dict[int, str] = field(default_factory=dict)  # reader id -> why left out

    def item(self, key: str) -> ItemDecision:
        """The decision for one item, made on first use."""
        return self.items.setdefault(key, ItemDecision(key))


def reader_times(config: Config, signup: str, race_date: str | None, timezone: str) -> Reader:
    """A stored reader's times, parsed (a naive stored time is UTC)."""
    when = dt.datetime.fromisoformat(signup)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    race = dt.date.fromisoformat(race_date) if race_date else None
    return Reader(signup=when, race_date=race, tz=zone(timezone, config.schedule.timezone))


def _basis(race_date: str | None, timezone: str, sequence: Sequence) -> str:
    return f"{race_date or ''}|{timezone}|{sequence.fingerprint}"


class Agenda:
    """Decides what is due for a newsletter's scheduled posts and sequences."""

    def __init__(self, config: Config, store: Store, sequences: Iterable[Sequence],
                 posts: Iterable[Post], goals: Iterable[str]):
        self.config = config
        self.settings = config.schedule
        self.queries = AgendaQueries(store)
        self.sequences = tuple(sequences)
        self.posts = tuple(p for p in posts if p.send_at is not None and not p.is_draft)
        self.goals = tuple(goals)
        self.unreadable: dict[int, str] = {}  # readers whose dates could not be computed

    def _left_out(self, subscriber_id: int, exc: Exception) -> None:
        """Note a reader whose items cannot be computed (UNREADABLE), once per reader."""
        self.unreadable.setdefault(subscriber_id, f"{type(exc).__name__}: {exc}")

    def audience(self, audience: tuple[str, ...] | None) -> tuple[str, ...]:
        """Goal slugs an item reaches (the listed ones that exist, or every goal)."""
        return tuple(g for g in self.goals if audience is None or g in audience)

    # -- deciding --------------------------------------------------------------------------

    def decide(self, at: dt.datetime) -> Decision:
        """What is due at `at`: readers to plan and to skip per item, enrolments to note."""
        decision = Decision(at)
        for post in self.posts:
            self._decide_post(post, decision)
        for sequence in self.sequences:
            self._decide_sequence(sequence, decision)
        decision.unreadable = dict(self.unreadable)
        return decision

    def _decide_post(self, post: Post, decision: Decision) -> None:
        first, last = post_window(post, self.settings)
        at = decision.at
        if not first <= at <= last:
            return
        goals = self.audience(post.audience)
        rows = self.queries.unsent_readers(post.slug, goals)
        dated = not isinstance(post.send_at, dt.datetime)
        for sid, goal, timezone, signup in (row for page in rows for row in page):
            try:
                reader = reader_times(self.config, signup, None, timezone)
                due = post_due(post, reader, self.settings)
            except UNREADABLE as exc:
                self._left_out(sid, exc)
                continue
            if due > at or reader.signup > due:  # not yet, or joined after it went out
                continue
            target = decision.item(post.slug)
            if is_stale(due, at, dated, self.settings):
                target.skip.append((sid, goal))
            else:
                target.send.append((sid, goal))

    def _candidates(self, sequence: Sequence, at: dt.datetime) -> Iterator[list[tuple]]:
        """Readers of a sequence to look at: new, changed, or whose time has come."""
        return self.queries.candidates(sequence.slug, sequence.anchor == RACE,
                                       self.audience(sequence.audience), at.timestamp(),
                                       sequence.fingerprint)

    def history(self, sequence: Sequence, ids: list[int]
                ) -> tuple[dict[int, dict[str, StepState]], dict[int, dict[str, dt.datetime]]]:
        """The ledger rows and "ready"s of these readers in a sequence."""
        rows: dict[int, dict[str, StepState]] = {}
        for sid, item, state, sent_at in self.queries.step_rows(sequence.slug, ids):
            sent = dt.datetime.fromisoformat(sent_at) if sent_at else None
            rows.setdefault(sid, {})[item] = StepState(state, sent)
        ready: dict[int, dict[str, dt.datetime]] = {}
        for sid, step, said in self.queries.ready_rows(sequence.slug, ids):
            ready.setdefault(sid, {})[step] = dt.datetime.fromisoformat(said)
        return rows, ready

    def _decide_sequence(self, sequence: Sequence, decision: Decision) -> None:
        at = decision.at
        for batch in self._candidates(sequence, at):
            rows, ready = self.history(sequence, [r[0] for r in batch])
            for sid, goal, race_date, timezone, signup, basis in batch:
                try:
                    self._decide_reader(sequence, decision, (sid, goal, race_date, timezone,
                                                             signup, basis),
                                        rows.get(sid, {}), ready.get(sid, {}))
                except UNREADABLE as exc:
                    self._left_out(sid, exc)

    def _decide_reader(self, sequence: Sequence, decision: Decision, row: tuple,
                       mine: dict[str, StepState], ready: dict[str, dt.datetime]) -> None:
        """One reader's step of a sequence into the decision; nothing is added to it when
        their dates raise (UNREADABLE), since everything is worked out before it is."""
        sid, goal, race_date, timezone, signup, basis = row
        reader = reader_times(self.config, signup, race_date, timezone)
        retimed = basis is not None and not basis.startswith(f"{race_date or ''}|{timezone}|")
        if retimed:  # the race date or zone changed: what was skipped is timed afresh
            mine = {k: r for k, r in mine.items() if r.state != "skipped"}
        new_basis = _basis(race_date, timezone, sequence)
        if not enrolled(sequence, reader, goal):
            step = None
        else:
            step = walk(sequence, reader, mine, ready, decision.at, self.settings,
                        look_ahead=False, fresh=basis is None)
        if retimed:
            decision.unskip.append((sid, sequence.slug))
        if step is None:
            decision.enrolments.append((sequence.slug, sid, new_basis, None, None))
            return
        for key in step.skip:
            decision.item(key).skip.append((sid, goal))
        if step.send:
            decision.item(step.send).send.append((sid, goal))
        decision.enrolments.append((sequence.slug, sid, new_basis,
                                    step.next_at.timestamp() if step.next_at else None,
                                    step.waiting))

    # -- writing ---------------------------------------------------------------------------

    def apply(self, decision: Decision, held: Iterable[str] = ()) -> None:
        """Write a decision: skipped and planned rows (none planned for `held` items, which
        could not be sent; their readers are looked at again next run), then enrolments."""
        held = set(held)
        looked_again: set[tuple[str, int]] = set()
        self.queries.unskip(decision.unskip)
        for item in decision.items.values():
            if item.item in held:
                looked_again.update((item.item.split("/")[0], sid) for sid, _ in item.send)
            self.queries.record(item.item, [sid for sid, _ in item.skip],
                                [] if item.item in held else [sid for sid, _ in item.send])
        soon = decision.at.timestamp()
        self.queries.enrol([(seq, sid, basis, soon if (seq, sid) in looked_again else next_at,
                             waiting)
                            for seq, sid, basis, next_at, waiting in decision.enrolments])

    def in_flight(self) -> dict[str, int]:
        """Items with rows left in flight by a run that stopped (they may have gone out)."""
        found = {}
        for key in self._keys():
            count = self.queries.count_in_flight(key)
            if count:
                found[key] = count
        return found

    def _keys(self) -> list[str]:
        return [p.slug for p in self.posts] + [s.key for q in self.sequences for s in q.steps]

    def unsettled(self) -> list[str]:
        """Items with rows still to send (planned, or failed and to be tried again)."""
        return [key for key in self._keys() if self.queries.has_unsettled(key)]

    # -- looking ahead ---------------------------------------------------------------------

    def reader_plan(self, subscriber_id: int, at: dt.datetime) -> list[Upcoming]:
        """One reader's items ahead of `at` (scheduled posts and steps), soonest first."""
        row = self.queries.reader(subscriber_id)
        if row is None or row[4] != "active":
            return []
        try:
            return self._reader_plan(subscriber_id, row, at)
        except UNREADABLE as exc:
            self._left_out(subscriber_id, exc)
            return []

    def _reader_plan(self, subscriber_id: int, row: tuple, at: dt.datetime) -> list[Upcoming]:
        goal, race_date, timezone, signup, _, joined = row
        reader = reader_times(self.config, signup, race_date, timezone)
        found: list[Upcoming] = []
        for post in self.posts:
            due = post_due(post, reader, self.settings)
            if (goal in self.audience(post.audience) and due > at
                    and not self.queries.has_row(post.slug, subscriber_id)):
                found.append(Upcoming(post.slug, post.subject, due))
        for sequence in self.sequences:
            timed = reader
            if sequence.anchor == SIGNUP:  # counted from when they joined signup sequences
                if joined is None:
                    continue
                timed = reader_times(self.config, joined, race_date, timezone)
            if goal not in self.audience(sequence.audience) or not enrolled(sequence, timed,
                                                                          goal):
                continue
            rows, ready = self.history(sequence, [subscriber_id])
            fresh = not self.queries.is_enrolled(sequence.slug, subscriber_id)
            step = walk(sequence, timed, rows.get(subscriber_id, {}),
                        ready.get(subscriber_id, {}), at, self.settings, fresh=fresh)
            found.extend(u for u in step.upcoming if u.at is None or u.at >= at)
        far = dt.datetime.max.replace(tzinfo=dt.UTC)
        return sorted(found, key=lambda u: (u.at or far, u.item))

    def forecast(self, at: dt.datetime, until: dt.datetime) -> dict[str, Counter]:
        """Per item, how many readers it reaches on each date (in [schedule] timezone) from
        `at` up to `until` (readers waiting at a gate are not counted)."""
        tz = zone("", self.settings.timezone)
        table: dict[str, Counter] = {}
        for post in self.posts:
            goals = self.audience(post.audience)
            pages = self.queries.unsent_times(post.slug, goals)
            for sid, timezone, signup in (row for page in pages for row in page):
                try:
                    due = post_due(post, reader_times(self.config, signup, None, timezone),
                                   self.settings)
                except UNREADABLE as exc:
                    self._left_out(sid, exc)
                    continue
                if at < due <= until:
                    table.setdefault(post.slug, Counter())[due.astimezone(tz).date()] += 1
        for sequence in self.sequences:
            for batch in self._everyone(sequence):
                rows, ready = self.history(sequence, [r[0] for r in batch])
                for sid, goal, race_date, timezone, signup in batch:
                    try:
                        reader = reader_times(self.config, signup, race_date, timezone)
                        step = walk(sequence, reader, rows.get(sid, {}), ready.get(sid, {}),
                                    at, self.settings) if enrolled(sequence, reader, goal) else None
                    except UNREADABLE as exc:
                        self._left_out(sid, exc)
                        continue
                    for upcoming in step.upcoming if step else ():
                        if upcoming.at is not None and at < upcoming.at <= until:
                            table.setdefault(upcoming.item, Counter())[
                                upcoming.at.astimezone(tz).date()] += 1
        return table

    def _everyone(self, sequence: Sequence) -> Iterator[list[tuple]]:
        return self.queries.everyone(sequence.anchor == RACE, self.audience(sequence.audience))

    def waiting(self, sequence: Sequence) -> Counter:
        """Readers waiting at each gated step of a sequence."""
        return self.queries.waiting(sequence.slug)
