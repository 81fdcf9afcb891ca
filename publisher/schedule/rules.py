"""When each item reaches each reader: pure functions over a reader's times, what the ledger
holds for them and the clock, with no I/O (the store side is in `agenda`).

An item is a scheduled post or a sequence step. A dated item goes out at `send_hour` on its
local date in the reader's zone; one more than `grace_days` late is skipped, never sent. A
step after a gate waits for the reader's "ready" and is never skipped as stale.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from publisher.config import Schedule
from publisher.content.sequences import Sequence, Step
from publisher.content.when import PREVIOUS, RACE, SIGNUP, When, at_send_hour, local_date
from publisher.model import Post

# A row left in flight is never sent again (a crash's call may have gone out), so it counts
# as settled: were it in progress, the reader's later steps would wait for it forever.
SETTLED = ("sent", "rejected", "skipped", "in-flight")
# A gate is passed only once its step reached the reader (in flight: it may have) and they
# said ready; a gated step skipped or refused never carried a "ready" link, so what comes
# after it never goes out.
REACHED = ("sent", "in-flight")
NEVER_REACHED = ("skipped", "rejected")


@dataclass(frozen=True)
class Reader:
    """What times a reader's items: when they signed up, their race, their zone."""

    signup: dt.datetime  # aware
    race_date: dt.date | None
    tz: ZoneInfo


@dataclass(frozen=True)
class StepState:
    """What the ledger holds for one reader at one step of a sequence: its state, and when
    it was sent."""

    state: str
    sent_at: dt.datetime | None = None


@dataclass(frozen=True)
class Upcoming:
    """One item still ahead of a reader: its time, or None while it waits at a gate."""

    item: str
    subject: str
    at: dt.datetime | None
    waiting: bool = False


@dataclass
class Walk:
    """What a run should do for one reader in one sequence, and when to look again."""

    skip: list[str] = field(default_factory=list)
    send: str | None = None
    next_at: dt.datetime | None = None  # None: nothing to do until the reader changes
    waiting: str | None = None  # the gated step whose "ready" the reader owes
    upcoming: list[Upcoming] = field(default_factory=list)


def enrolled(sequence: Sequence, reader: Reader, goal: str) -> bool:
    """Whether a reader belongs in a sequence at all (audience, race date, `since`)."""
    if sequence.audience is not None and goal not in sequence.audience:
        return False
    if sequence.anchor == RACE:
        return reader.race_date is not None
    if sequence.since is not None:
        return local_date(reader.signup, reader.tz) >= sequence.since
    return True


def due_at(when: When, reader: Reader, previous: dt.date | None,
           settings: Schedule) -> dt.datetime | None:
    """The instant a `when` names for this reader (None: it cannot be timed for them)."""
    if when.instant:
        return reader.signup
    if when.anchor == SIGNUP:
        day = local_date(reader.signup, reader.tz)
    elif when.anchor == RACE:
        day = reader.race_date
    else:
        day = previous
    if day is None:
        return None
    return at_send_hour(day + dt.timedelta(days=when.days), reader.tz, settings.send_hour)


def held_at_gate(gate: Step | None, step: Step, rows: Mapping[str, StepState],
                 ready: Mapping[str, dt.datetime], skipped: list[str]) -> str | None:
    """Whether a step after `gate` (None: it follows no gate) is held: "waits" for the
    reader's ready, "ends" the sequence (the gated step never reached them); None: not held
    (or already under way: a row of its own)."""
    if gate is None or step.key in rows:
        return None
    state = getattr(rows.get(gate.key), "state", None)
    if gate.key in skipped or state in NEVER_REACHED:
        return "ends"
    if ready.get(gate.key) is None or state not in REACHED:
        return "waits"
    return None


def due_since_joining(reader: Reader, due: dt.datetime) -> bool:
    """Whether an item's local date is on or after the reader's local signup date (it became
    due while they were a reader, rather than before they came)."""
    return local_date(due, reader.tz) >= local_date(reader.signup, reader.tz)


def is_stale(due: dt.datetime, now: dt.datetime, dated: bool, settings: Schedule) -> bool:
    """A dated item more than grace_days late."""
    return dated and now - due > dt.timedelta(days=settings.grace_days)


def walk(sequence: Sequence, reader: Reader, rows: Mapping[str, StepState],
         ready: Mapping[str, dt.datetime], now: dt.datetime, settings: Schedule,
         look_ahead: bool = True, fresh: bool = False) -> Walk:
    """Go through a reader's steps in order: what is settled, what to skip, what is due now,
    and (with `look_ahead`) what is ahead, projected as if each step went out on time.

    `fresh`: no run has timed this reader in the sequence yet, so a first step due since
    they joined is sent however late the run is (once), never skipped as stale."""
    out = Walk()
    previous: dt.date | None = None  # the date "after previous" counts from
    ahead = False  # past the reader's current step: only projecting
    for i, step in enumerate(sequence.steps):
        if ahead and not look_ahead:
            break
        if step.post.is_draft:
            break  # a draft holds the sequence at that step: nothing after it is timed
        due = due_at(step.when, reader, previous, settings)
        if due is None:
            break
        gate = sequence.steps[i - 1] if i and sequence.steps[i - 1].gate else None
        held = held_at_gate(gate, step, rows, ready, out.skip)
        if held == "waits":
            out.waiting = out.waiting or (None if ahead or gate is None else gate.key)
            out.upcoming.append(Upcoming(step.key, step.post.subject, None, waiting=True))
        if held:
            break  # "ends": no "ready" can come, so nothing more goes out to this reader
        said = ready.get(gate.key) if gate is not None else None
        due = max(due, said) if said is not None else due
        row = rows.get(step.key)
        if row is not None and row.state in SETTLED:
            previous = local_date(row.sent_at or due, reader.tz)
            continue
        if row is not None or ahead:  # in progress (planned, failed) or projected
            if row is not None and not ahead:
                out.next_at, ahead = now, True
            out.upcoming.append(Upcoming(step.key, step.post.subject, max(due, now)))
            previous = local_date(max(due, now), reader.tz)
            continue
        if due > now:
            out.next_at, ahead = due, True
            out.upcoming.append(Upcoming(step.key, step.post.subject, due))
            previous = local_date(due, reader.tz)
        elif (gate is None and is_stale(due, now, step.when.dated, settings)
              and not (i == 0 and fresh and due_since_joining(reader, due))):
            out.skip.append(step.key)
            previous = local_date(due, reader.tz)
        else:
            out.send, out.next_at, ahead = step.key, now, True
            out.upcoming.append(Upcoming(step.key, step.post.subject, now))
            previous = local_date(now, reader.tz)
    return out


def post_due(post: Post, reader: Reader, settings: Schedule) -> dt.datetime:
    """When a scheduled post reaches this reader: send_hour on its date, or its instant."""
    send_at = post.send_at
    assert send_at is not None
    if isinstance(send_at, dt.datetime):
        return send_at
    return at_send_hour(send_at, reader.tz, settings.send_hour)


def published_at(post: Post, settings: Schedule) -> dt.datetime | None:
    """When a scheduled post joins the archive (and a plain publish may send it): its
    instant, or send_hour on its date in the newsletter's zone; None when not scheduled."""
    send_at = post.send_at
    if send_at is None:
        return None
    if isinstance(send_at, dt.datetime):
        return send_at
    return at_send_hour(send_at, ZoneInfo(settings.timezone), settings.send_hour)


def post_window(post: Post, settings: Schedule) -> tuple[dt.datetime, dt.datetime]:
    """From the first reader's moment anywhere on Earth to the last one's plus grace: the
    span in which runs look at a scheduled post."""
    send_at = post.send_at
    assert send_at is not None
    if isinstance(send_at, dt.datetime):
        first = last = send_at
    else:
        first = at_send_hour(send_at, ZoneInfo("Etc/GMT-14"), settings.send_hour)
        last = at_send_hour(send_at, ZoneInfo("Etc/GMT+12"), settings.send_hour)
    return first, last + dt.timedelta(days=settings.grace_days, hours=1)


def step_of(sequence: Sequence, key: str) -> Step | None:
    """A step of this sequence by key."""
    return next((s for s in sequence.steps if s.key == key), None)


__all__ = ["PREVIOUS", "Reader", "StepState", "Upcoming", "Walk", "due_at", "enrolled",
           "is_stale", "post_due", "post_window", "walk"]
