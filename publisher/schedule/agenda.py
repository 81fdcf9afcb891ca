"""What is due: scheduled posts and sequence steps decided per reader against the store,
and the decision written to the ledger (planned and skipped rows) and the enrolments.

Deciding reads; `apply` writes, each item in its own transaction with INSERT OR IGNORE on the
ledger's (item, reader) key, so two runs deciding at once still make one row per reader and
item, and the ledger's claim (`Ledger.mark_in_flight`) lets only one of them send it.

`enrolments` remembers, per reader and sequence, when to look again and on what basis (race
date, zone, the sequence's timing); an hour when nothing is due reads only the readers whose
time has come or whose basis changed.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from publisher.config import Config
from publisher.content.sequences import Sequence
from publisher.content.when import SIGNUP, zone
from publisher.model import Post
from publisher.schedule.rules import (
    Reader,
    Row,
    Upcoming,
    enrolled,
    is_stale,
    post_due,
    post_window,
    walk,
)
from publisher.store import Store, now

BATCH = 500
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


def _joined(sequence: Sequence) -> tuple[str, str]:
    """The SQL for when a reader joined a sequence, and the condition that they did: a signup
    sequence counts from `enrolled_at` (NULL for a reader imported without --enrol, who is
    never in one); a race sequence needs a race date."""
    if sequence.anchor == "race":
        return "COALESCE(s.consent_at, s.created_at)", "AND s.race_date IS NOT NULL "
    return "s.enrolled_at", "AND s.enrolled_at IS NOT NULL "


def _marks(values: Iterable) -> str:
    return ",".join("?" * len(list(values)))


def _in_sequence(store: Store, column: str) -> str:
    """SQL for "`column` is a step of a sequence", with "<slug>/" and "<slug>0" as parameters.
    SQLite compares text byte by byte, where '/' comes just before '0'; PostgreSQL compares by
    the database's collation, which may not (en_US ignores the '/') unless told "C"."""
    if store.dialect == "postgresql":
        column = f'{column} COLLATE "C"'
    return f"{column} >= ? AND {column} < ?"


class Agenda:
    """Decides what is due for a newsletter's scheduled posts and sequences."""

    def __init__(self, config: Config, store: Store, sequences: Iterable[Sequence],
                 posts: Iterable[Post], goals: Iterable[str]):
        self.config = config
        self.settings = config.schedule
        self.store = store
        self.conn = store.conn
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
        rows = self._pages(
            "SELECT s.id, s.goal, s.timezone, COALESCE(s.consent_at, s.created_at) "
            f"FROM subscribers s WHERE s.status = 'active' AND s.goal IN ({_marks(goals)}) "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.post = ? "
            "AND d.subscriber_id = s.id)", (*goals, post.slug))
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
        goals = self.audience(sequence.audience)
        joined, only = _joined(sequence)
        yield from self._pages(
            f"SELECT s.id, s.goal, s.race_date, s.timezone, {joined}, e.basis "
            "FROM subscribers s "
            "LEFT JOIN enrolments e ON e.sequence = ? AND e.subscriber_id = s.id "
            f"WHERE s.status = 'active' AND s.goal IN ({_marks(goals)}) {only}"
            "AND (e.subscriber_id IS NULL OR e.next_at <= ? OR e.basis != "
            "COALESCE(s.race_date, '') || '|' || s.timezone || '|' || ?)",
            (sequence.slug, *goals, at.timestamp(), sequence.fingerprint))

    def _pages(self, sql: str, params: tuple) -> Iterator[list[tuple]]:
        """The rows of a SELECT of readers (`s.id` first, a WHERE clause last), BATCH at a
        time, never all held at once: SQLite's cursor streams as it is read; psycopg's would
        fetch the whole result, so PostgreSQL is read a page at a time by reader id."""
        if self.store.dialect == "sqlite":
            cursor = self.conn.execute(sql, params)
            while batch := cursor.fetchmany(BATCH):
                yield batch
            return
        last = 0
        while batch := self.conn.execute(f"{sql} AND s.id > ? ORDER BY s.id LIMIT {BATCH}",
                                         (*params, last)).fetchall():
            yield batch
            last = batch[-1][0]

    def history(self, sequence: Sequence, ids: list[int]
                ) -> tuple[dict[int, dict[str, Row]], dict[int, dict[str, dt.datetime]]]:
        """The ledger rows and "ready"s of these readers in a sequence."""
        rows: dict[int, dict[str, Row]] = {}
        prefix = f"{sequence.slug}/"
        for sid, item, state, sent_at in self.conn.execute(
                "SELECT subscriber_id, post, state, sent_at FROM deliveries WHERE "
                f"subscriber_id IN ({_marks(ids)}) AND {_in_sequence(self.store, 'post')}",
                (*ids, prefix, prefix[:-1] + "0")):
            sent = dt.datetime.fromisoformat(sent_at) if sent_at else None
            rows.setdefault(sid, {})[item] = Row(state, sent)
        ready: dict[int, dict[str, dt.datetime]] = {}
        for sid, step, said in self.conn.execute(
                f"SELECT subscriber_id, step, at FROM ready WHERE subscriber_id IN "
                f"({_marks(ids)}) AND {_in_sequence(self.store, 'step')}",
                (*ids, prefix, prefix[:-1] + "0")):
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
                       mine: dict[str, Row], ready: dict[str, dt.datetime]) -> None:
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
        stamp = now()
        looked_again: set[tuple[str, int]] = set()
        with self.store.transaction() as conn:
            for sid, sequence in decision.unskip:
                conn.execute("DELETE FROM deliveries WHERE subscriber_id = ? AND "
                             f"{_in_sequence(self.store, 'post')} AND state = 'skipped'",
                             (sid, f"{sequence}/", f"{sequence}0"))
        for item in decision.items.values():
            with self.store.transaction() as conn:
                conn.executemany(
                    "INSERT INTO deliveries(post, subscriber_id, email, goal, state, "
                    "attempts, updated_at) SELECT ?, id, email, goal, 'skipped', 0, ? "
                    "FROM subscribers WHERE id = ? ON CONFLICT DO NOTHING",
                    [(item.item, stamp, sid) for sid, _ in item.skip])
                if item.item in held:
                    looked_again.update((item.item.split("/")[0], sid) for sid, _ in item.send)
                    continue
                conn.executemany(
                    "INSERT INTO deliveries(post, subscriber_id, email, goal, state, "
                    "attempts, updated_at) SELECT ?, id, email, goal, 'planned', 0, ? "
                    "FROM subscribers WHERE id = ? AND status = 'active' ON CONFLICT DO NOTHING",
                    [(item.item, stamp, sid) for sid, _ in item.send])
        soon = decision.at.timestamp()
        rows = [(seq, sid, basis, soon if (seq, sid) in looked_again else next_at, waiting)
                for seq, sid, basis, next_at, waiting in decision.enrolments]
        for start in range(0, len(rows), 5000):
            with self.store.transaction() as conn:
                conn.executemany(
                    "INSERT INTO enrolments(sequence, subscriber_id, basis, next_at, waiting) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(sequence, subscriber_id) DO UPDATE SET "
                    "basis = excluded.basis, next_at = excluded.next_at, "
                    "waiting = excluded.waiting", rows[start:start + 5000])

    def in_flight(self) -> dict[str, int]:
        """Items with rows left in flight by a run that stopped (they may have gone out)."""
        found = {}
        for key in self._keys():
            count = self.conn.execute("SELECT COUNT(*) FROM deliveries WHERE post = ? AND "
                                      "state = 'in-flight'", (key,)).fetchone()[0]
            if count:
                found[key] = count
        return found

    def _keys(self) -> list[str]:
        return [p.slug for p in self.posts] + [s.key for q in self.sequences for s in q.steps]

    def unsettled(self) -> list[str]:
        """Items with rows still to send (planned, or failed and to be tried again)."""
        return [key for key in self._keys() if self.conn.execute(
            "SELECT 1 FROM deliveries WHERE post = ? AND state IN ('planned', 'failed') LIMIT 1",
            (key,)).fetchone()]

    # -- looking ahead ---------------------------------------------------------------------

    def reader_plan(self, subscriber_id: int, at: dt.datetime) -> list[Upcoming]:
        """One reader's items ahead of `at` (scheduled posts and steps), soonest first."""
        row = self.conn.execute(
            "SELECT goal, race_date, timezone, COALESCE(consent_at, created_at), status, "
            "enrolled_at FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
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
                    and not self._has_row(post.slug, subscriber_id)):
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
            fresh = self.conn.execute("SELECT 1 FROM enrolments WHERE sequence = ? AND "
                                      "subscriber_id = ?", (sequence.slug, subscriber_id)
                                      ).fetchone() is None
            step = walk(sequence, timed, rows.get(subscriber_id, {}),
                        ready.get(subscriber_id, {}), at, self.settings, fresh=fresh)
            found.extend(u for u in step.upcoming if u.at is None or u.at >= at)
        far = dt.datetime.max.replace(tzinfo=dt.UTC)
        return sorted(found, key=lambda u: (u.at or far, u.item))

    def _has_row(self, item: str, subscriber_id: int) -> bool:
        return self.conn.execute("SELECT 1 FROM deliveries WHERE post = ? AND subscriber_id = ?",
                                 (item, subscriber_id)).fetchone() is not None

    def forecast(self, at: dt.datetime, until: dt.datetime) -> dict[str, Counter]:
        """Per item, how many readers it reaches on each date (in [schedule] timezone) from
        `at` up to `until` (readers waiting at a gate are not counted)."""
        tz = zone("", self.settings.timezone)
        table: dict[str, Counter] = {}
        for post in self.posts:
            goals = self.audience(post.audience)
            pages = self._pages(
                "SELECT s.id, s.timezone, COALESCE(s.consent_at, s.created_at) FROM "
                f"subscribers s WHERE s.status = 'active' AND s.goal IN ({_marks(goals)}) AND "
                "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.post = ? AND "
                "d.subscriber_id = s.id)", (*goals, post.slug))
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
        goals = self.audience(sequence.audience)
        joined, only = _joined(sequence)
        yield from self._pages(
            f"SELECT s.id, s.goal, s.race_date, s.timezone, {joined} FROM subscribers s "
            f"WHERE s.status = 'active' AND s.goal IN ({_marks(goals)}) {only.strip()}", goals)

    def waiting(self, sequence: Sequence) -> Counter:
        """Readers waiting at each gated step of a sequence."""
        return Counter(dict(self.conn.execute(
            "SELECT waiting, COUNT(*) FROM enrolments e JOIN subscribers s ON s.id = "
            "e.subscriber_id WHERE e.sequence = ? AND e.waiting IS NOT NULL AND "
            "s.status = 'active' GROUP BY waiting", (sequence.slug,)).fetchall()))
