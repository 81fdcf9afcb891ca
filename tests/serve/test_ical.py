"""A reader's plan as an iCalendar feed, parsed back with icalendar: the race day as an
all-day event, each upcoming step at its send time, UIDs stable per reader and item."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import pytest
from icalendar import Calendar

from publisher.config import load_config
from publisher.serve.ical import reader_calendar
from publisher.store import Subscriber
from tests.samples import GATED, REPO

STAMP = datetime(2027, 1, 10, 5, 30, tzinfo=UTC)
READER = Subscriber(id=7, email="ran@example.com", first_name="Ran", goal="marathon", tags=(),
                    status="active", consent_source="cli", consent_at=None, consent_ip=None,
                    created_at="2026-12-01T00:00:00+00:00",
                    updated_at="2026-12-01T00:00:00+00:00", race_date="2027-03-28",
                    race_name="Rome Marathon")


@dataclass(frozen=True)
class Planned:
    """An upcoming step as the scheduler's reader_plan describes one."""

    item: str
    subject: str
    at: datetime | None
    waiting: bool = False


UPCOMING = (Planned("marathon-build/02-base", "Base weeks", datetime(2027, 1, 17, 6, tzinfo=UTC)),
            Planned(GATED, "Your first long run", datetime(2027, 1, 24, 6, tzinfo=UTC)),
            Planned("marathon-build/04-peak", "Peak weeks", None, waiting=True))


@pytest.fixture(scope="module")
def config():
    return load_config(REPO)


def events(feed: bytes) -> dict[str, tuple[str, object]]:
    """UID -> (summary, start) of each VEVENT, from the feed parsed back."""
    return {str(e["UID"]): (str(e["SUMMARY"]), e.decoded("DTSTART"))
            for e in Calendar.from_ical(feed).walk("VEVENT")}


def test_the_feed_is_a_version_2_calendar_named_after_the_newsletter(config):
    calendar = Calendar.from_ical(reader_calendar(config, READER, (), STAMP))
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["PRODID"]).startswith("-//Runletter//")
    assert str(calendar["X-WR-CALNAME"]) == "Run Freely"


def test_the_race_day_is_an_all_day_event_named_after_the_readers_race(config):
    [race] = Calendar.from_ical(reader_calendar(config, READER, (), STAMP)).walk("VEVENT")
    assert (str(race["SUMMARY"]), race.decoded("DTSTART")) == ("Rome Marathon", date(2027, 3, 28))
    assert race["DTSTART"].params["VALUE"] == "DATE"
    assert race.decoded("DTEND") == date(2027, 3, 29)
    assert race.decoded("DTSTAMP") == STAMP


def test_a_race_without_a_name_is_called_race_day(config):
    feed = reader_calendar(config, replace(READER, race_name=""), (), STAMP)
    assert [summary for summary, _ in events(feed).values()] == ["Race day"]


def test_a_reader_without_a_race_date_has_no_race_day_event(config):
    feed = reader_calendar(config, replace(READER, race_date=None), (), STAMP)
    assert events(feed) == {}


def test_each_upcoming_step_is_an_event_at_its_send_time(config):
    feed = reader_calendar(config, replace(READER, race_date=None), UPCOMING[:2], STAMP)
    assert events(feed) == {
        "marathon-build/02-base.7@runfreely.example.org": (
            "Base weeks", datetime(2027, 1, 17, 6, tzinfo=UTC)),
        f"{GATED}.7@runfreely.example.org": ("Your first long run",
                                         datetime(2027, 1, 24, 6, tzinfo=UTC))}


def test_a_step_waiting_at_a_gate_has_no_event(config):
    feed = reader_calendar(config, replace(READER, race_date=None), UPCOMING[2:], STAMP)
    assert events(feed) == {}


def test_uids_stay_the_same_from_one_fetch_to_the_next_and_differ_between_readers(config):
    first = events(reader_calendar(config, READER, UPCOMING, STAMP))
    later = events(reader_calendar(config, READER, UPCOMING, datetime(2027, 2, 1, tzinfo=UTC)))
    other = events(reader_calendar(config, replace(READER, id=8), UPCOMING, STAMP))
    assert first.keys() == later.keys()
    assert first.keys().isdisjoint(other.keys())
