"""A reader's plan as an iCalendar feed (RFC 5545, written by the icalendar library): their
race day as an all-day event, and each upcoming sequence step at the time it is sent."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from icalendar import Calendar, Event

from publisher import clock
from publisher.config import Config
from publisher.store import Subscriber

RACE_DAY = "Race day"  # the race event's title when the reader gave no race name


class Step(Protocol):
    """An upcoming sequence step, as the scheduler's reader_plan describes one."""

    item: str  # "<sequence>/<step file stem>"
    subject: str
    at: datetime | None  # aware; None while the step waits at a gate
    waiting: bool


def reader_calendar(config: Config, reader: Subscriber, upcoming: Iterable[Step],
                    stamp: datetime) -> bytes:
    """The feed for one reader at `stamp`: their race day (if they gave a date) and each
    upcoming step with a send time; a step waiting at a gate has no time, so no event."""
    calendar = Calendar()
    calendar.add("prodid", "-//Runletter//Reader plan//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", config.name)
    # Calendar apps that subscribe to the feed poll it; once a day follows the plan.
    calendar.add("refresh-interval", timedelta(days=1), parameters={"VALUE": "DURATION"})
    domain = config.sender_email.rpartition("@")[2]
    if day := _race_day(reader.race_date):
        race = _event(f"race-day.{reader.id}@{domain}", reader.race_name or RACE_DAY, stamp)
        race.add("dtstart", day)
        race.add("dtend", day + timedelta(days=1))  # all-day: the end is exclusive
        calendar.add_component(race)
    for step in upcoming:
        if step.at is None:
            continue
        # The UID is the reader's and the step's, so a calendar updates an event on
        # the next fetch rather than adding it again.
        event = _event(f"{step.item}.{reader.id}@{domain}", step.subject, stamp)
        event.add("dtstart", step.at.astimezone(UTC))
        event.add("description", f"An email from {config.name} reaches your inbox.")
        calendar.add_component(event)
    return calendar.to_ical()


def _race_day(race_date: str | None) -> date | None:
    """The race's date, None when there is none or it is one (stored before race dates were
    bounded) that no calendar can be computed with."""
    try:
        day = date.fromisoformat(race_date) if race_date else None
        if day is not None:
            clock.check_in_range(day, "race_date")
    except ValueError:  # OutOfRange is one
        return None
    return day


def _event(uid: str, summary: str, stamp: datetime) -> Event:
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("summary", summary)
    return event
