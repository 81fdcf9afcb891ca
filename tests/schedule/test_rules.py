"""The pure schedule: when each `when` names for a reader in their zone, and what a walk
through a sequence sends, skips and waits for (no store, no files written)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from publisher.config import Schedule
from publisher.content.posts import read_post
from publisher.content.sequences import read_sequence
from publisher.content.when import parse_when
from publisher.schedule.rules import Reader, Row, due_at, enrolled, post_due, walk
from tests.helpers.support import utc
from tests.samples import AFTER_GATE, FIXTURE, FIXTURE_SLUG, GATE, GOALS, REPO, SEQUENCES

SETTINGS = Schedule()  # UTC, send_hour 6, grace_days 2
RACE_PLAN = read_sequence(SEQUENCES / "race-plan", SEQUENCES, GOALS)
COMEBACK = read_sequence(SEQUENCES / "comeback", SEQUENCES, GOALS)
WELCOME = read_sequence(SEQUENCES / "welcome", SEQUENCES, GOALS)
# The sample's comeback: its first step is gated ("1 day after signup", then ready).
SAMPLE_COMEBACK = read_sequence(REPO / "content" / "sequences" / "comeback", REPO, GOALS)


def reader(zone: str = "UTC", signup: str = "2027-01-01T09:00",
           race: str | None = "2027-03-28") -> Reader:
    """A reader's times: signup as a UTC instant, their race date, their zone."""
    return Reader(signup=utc(signup), race_date=dt.date.fromisoformat(race) if race else None,
                  tz=ZoneInfo(zone))


def sent(*items: tuple[str, str]) -> dict[str, Row]:
    """Ledger rows for steps sent at these UTC instants."""
    return {key: Row("sent", utc(at)) for key, at in items}


# (when, zone, signup, race date, previous step's local date, expected UTC instant).
# The instants are worked out by hand from the zone's offset on that date: each is 06:00
# local, on either side of the 2027 clock changes (US 14 March, EU 28 March and 31 October,
# New Zealand 4 April).
DUE = [
    ("on signup", "Pacific/Auckland", "2027-01-05T22:30", None, None, "2027-01-05T22:30"),
    # Signed up on 6 January in Auckland (still the 5th in UTC): counted from the 6th.
    ("3 days after signup", "Pacific/Auckland", "2027-01-05T22:30", None, None,
     "2027-01-08T17:00"),
    # Signed up on 28 February in Los Angeles (1 March in UTC); lands on the first PDT day.
    ("2 weeks after signup", "America/Los_Angeles", "2027-03-01T03:00", None, None,
     "2027-03-14T13:00"),
    ("12 weeks before race", "UTC", "2027-01-01T09:00", "2027-03-28", None, "2027-01-03T06:00"),
    ("10 days before race", "America/New_York", "2027-01-01T09:00", "2027-03-24", None,
     "2027-03-14T10:00"),
    ("1 day before race", "Europe/Madrid", "2027-01-01T09:00", "2027-03-28", None,
     "2027-03-27T05:00"),
    ("race day", "Europe/Madrid", "2027-01-01T09:00", "2027-03-28", None, "2027-03-28T04:00"),
    ("race day", "Pacific/Auckland", "2027-01-01T09:00", "2027-04-04", None,
     "2027-04-03T18:00"),
    ("3 days after race", "America/Los_Angeles", "2027-01-01T09:00", "2027-03-11", None,
     "2027-03-14T13:00"),
    ("2 weeks after race", "Europe/Madrid", "2027-01-01T09:00", "2027-10-17", None,
     "2027-10-31T05:00"),
    ("1 week after previous", "America/New_York", "2027-01-01T09:00", None, "2027-03-07",
     "2027-03-14T10:00"),
    ("1 day after previous", "Europe/Madrid", "2027-01-01T09:00", None, "2027-03-27",
     "2027-03-28T04:00"),
    ("3 days after previous", "UTC", "2027-01-01T09:00", None, "2027-03-26", "2027-03-29T06:00"),
    ("2 weeks after previous", "Pacific/Auckland", "2027-01-01T09:00", None, "2027-03-21",
     "2027-04-03T18:00"),
]


@pytest.mark.parametrize(("when", "zone", "signup", "race", "previous", "expected"), DUE)
def test_each_when_form_names_send_hour_on_the_readers_local_date(when, zone, signup, race,
                                                                   previous, expected):
    at = due_at(parse_when(when), reader(zone, signup, race),
                dt.date.fromisoformat(previous) if previous else None, SETTINGS)
    assert at == utc(expected)


def test_a_send_hour_in_a_spring_forward_gap_goes_out_when_the_clock_has_jumped():
    # 02:00 does not happen in New York on 14 March 2027; 03:00 EDT (07:00 UTC) does.
    at = due_at(parse_when("race day"), reader("America/New_York", race="2027-03-14"), None,
                Schedule(send_hour=2))
    assert at == utc("2027-03-14T07:00")


def test_one_day_and_one_week_are_understood_in_the_singular():
    assert (parse_when("1 day after previous").days, parse_when("1 week after previous").days,
            parse_when("1 week before race").days) == (1, 7, -7)


def test_a_reader_who_joins_five_weeks_before_the_race_skips_the_twelve_and_eight_week_steps():
    step = walk(RACE_PLAN, reader(signup="2027-02-21T10:00"), {}, {}, utc("2027-02-21T10:00"),
                SETTINGS)
    assert (step.skip, step.send) == (["race-plan/01-twelve-weeks", "race-plan/02-eight-weeks"],
                                      None)


def test_a_reader_who_joins_five_weeks_before_the_race_gets_the_four_week_step_on_its_day():
    step = walk(RACE_PLAN, reader(signup="2027-02-21T10:00"), {}, {}, utc("2027-02-21T10:00"),
                SETTINGS)
    assert (step.upcoming[0].item, step.next_at) == ("race-plan/03-four-weeks",
                                                     utc("2027-02-28T06:00"))


EARLY_STEPS = (("race-plan/01-twelve-weeks", "2027-01-03T06:00"),
               ("race-plan/02-eight-weeks", "2027-01-31T06:00"))


def test_a_step_three_days_late_with_two_days_grace_is_skipped():
    step = walk(RACE_PLAN, reader(), sent(*EARLY_STEPS), {}, utc("2027-03-03T06:00"), SETTINGS)
    assert (step.skip, step.send) == (["race-plan/03-four-weeks"], None)


def test_a_step_one_day_late_is_sent():
    step = walk(RACE_PLAN, reader(), sent(*EARLY_STEPS), {}, utc("2027-03-01T06:00"), SETTINGS)
    assert (step.skip, step.send) == ([], "race-plan/03-four-weeks")


def test_a_step_exactly_grace_days_late_is_still_sent():
    step = walk(RACE_PLAN, reader(), sent(*EARLY_STEPS), {}, utc("2027-03-02T06:00"), SETTINGS)
    assert step.send == "race-plan/03-four-weeks"


def test_a_step_after_previous_counts_from_the_day_the_previous_one_went_out():
    # "3 days after race" went out a day late (1 April, not 31 March): "1 week after previous"
    # is 8 April, not 7 April.
    rows = sent(*EARLY_STEPS, ("race-plan/03-four-weeks", "2027-02-28T06:00"),
                ("race-plan/04-ten-days", "2027-03-18T06:00"),
                ("race-plan/05-race-day", "2027-03-28T06:00"),
                ("race-plan/06-three-days-after", "2027-04-01T06:00"))
    step = walk(RACE_PLAN, reader(), rows, {}, utc("2027-04-01T07:00"), SETTINGS)
    assert (step.upcoming[0].item, step.next_at) == ("race-plan/07-one-week-on",
                                                     utc("2027-04-08T06:00"))


def test_a_step_left_in_flight_by_a_crash_does_not_hold_back_the_next_one():
    rows = {"race-plan/01-twelve-weeks": Row("in-flight")}  # never re-sent, never settled
    step = walk(RACE_PLAN, reader(), rows, {}, utc("2027-01-31T06:00"), SETTINGS)
    assert step.send == "race-plan/02-eight-weeks"


COMEBACK_SENT = (("comeback/01-welcome", "2027-01-04T09:00"),
                 ("comeback/02-phase-one", "2027-01-07T06:00"))


def test_the_step_after_a_gate_waits_for_ready_and_is_not_skipped_weeks_later():
    step = walk(COMEBACK, reader(signup="2027-01-04T09:00"), sent(*COMEBACK_SENT), {},
                utc("2027-03-15T06:00"), SETTINGS)
    assert (step.skip, step.send, step.waiting, step.next_at) == ([], None, GATE, None)


def test_a_ready_before_the_steps_own_when_holds_it_until_then():
    # Ready on 10 January; "2 weeks after previous" is 21 January.
    step = walk(COMEBACK, reader(signup="2027-01-04T09:00"), sent(*COMEBACK_SENT),
                {GATE: utc("2027-01-10T12:00")}, utc("2027-01-10T12:00"), SETTINGS)
    assert (step.send, step.next_at) == (None, utc("2027-01-21T06:00"))


def test_the_step_after_a_gate_goes_out_on_its_own_when_once_ready():
    step = walk(COMEBACK, reader(signup="2027-01-04T09:00"), sent(*COMEBACK_SENT),
                {GATE: utc("2027-01-10T12:00")}, utc("2027-01-21T06:00"), SETTINGS)
    assert step.send == AFTER_GATE


def test_the_step_after_a_gate_counts_its_when_from_the_day_the_gated_step_was_sent():
    late = (COMEBACK_SENT[0], (GATE, "2027-01-08T18:00"))  # sent a day and a half late
    step = walk(COMEBACK, reader(signup="2027-01-04T09:00"), sent(*late),
                {GATE: utc("2027-01-10T12:00")}, utc("2027-01-21T06:00"), SETTINGS)
    assert (step.send, step.next_at) == (None, utc("2027-01-22T06:00"))


def test_a_ready_given_weeks_after_the_steps_when_sends_it_at_once_not_as_stale():
    step = walk(COMEBACK, reader(signup="2027-01-04T09:00"), sent(*COMEBACK_SENT),
                {GATE: utc("2027-03-15T12:00")}, utc("2027-03-15T12:00"), SETTINGS)
    assert (step.skip, step.send) == ([], AFTER_GATE)


def test_a_gated_step_skipped_as_late_never_lets_the_next_one_out():
    # Phase one (7 January) was 4 days late when a run came: skipped, so its "ready" link
    # never reached the reader, and phase two must not go out without it.
    rows = {**sent(COMEBACK_SENT[0]), GATE: Row("skipped")}
    step = walk(COMEBACK, reader(signup="2027-01-04T09:00"), rows, {}, utc("2027-01-21T06:00"),
                SETTINGS)
    assert (step.send, step.skip, step.waiting, step.next_at) == (None, [], None, None)


def test_a_run_that_skips_a_gated_step_times_nothing_after_it():
    step = walk(COMEBACK, reader(signup="2027-01-04T09:00"), sent(COMEBACK_SENT[0]), {},
                utc("2027-01-11T06:00"), SETTINGS)
    assert (step.skip, step.send, step.waiting, step.next_at) == ([GATE], None, None, None)


def test_a_ready_without_the_gated_step_sent_does_not_let_the_next_one_out():
    rows = {**sent(COMEBACK_SENT[0]), GATE: Row("rejected")}
    step = walk(COMEBACK, reader(signup="2027-01-04T09:00"), rows,
                {GATE: utc("2027-01-10T12:00")}, utc("2027-01-21T06:00"), SETTINGS)
    assert step.send is None


def test_a_just_enrolled_readers_first_step_goes_out_late_rather_than_skipped():
    # A gated first step, due 8 January, and the first run a week later.
    step = walk(SAMPLE_COMEBACK, reader(signup="2027-01-07T09:00"), {}, {},
                utc("2027-01-15T06:00"), SETTINGS, fresh=True)
    assert (step.skip, step.send) == ([], "comeback/01-phase-one-walk")


def test_a_first_step_due_before_the_reader_joined_is_still_skipped_as_late():
    # Joined five weeks before the race: the twelve-week step was never theirs.
    step = walk(RACE_PLAN, reader(signup="2027-02-21T09:00"), {}, {}, utc("2027-02-21T10:00"),
                SETTINGS, fresh=True)
    assert step.skip == ["race-plan/01-twelve-weeks", "race-plan/02-eight-weeks"]


def test_after_a_late_first_step_the_next_run_still_skips_a_later_step_as_late():
    # Enrolled in December; the first run, on 3 February, sent the twelve-week step a month
    # late. The eight-week step (31 January) is then three days late: skipped.
    rows = sent(("race-plan/01-twelve-weeks", "2027-02-03T06:00"))
    step = walk(RACE_PLAN, reader(signup="2026-12-01T09:00"), rows, {},
                utc("2027-02-03T07:00"), SETTINGS)
    assert step.skip == ["race-plan/02-eight-weeks"]


def test_since_enrols_a_reader_whose_local_signup_date_is_on_or_after_it():
    # 31 December in UTC, but already 1 January in Auckland.
    assert enrolled(WELCOME, reader("Pacific/Auckland", "2026-12-31T12:00", None), "5k")


def test_since_leaves_out_a_reader_whose_local_signup_date_is_before_it():
    # 1 January in UTC, still 31 December in Los Angeles.
    assert not enrolled(WELCOME, reader("America/Los_Angeles", "2027-01-01T05:00", None), "5k")


def test_a_sequence_leaves_out_readers_whose_goal_is_not_in_its_audience():
    assert not enrolled(WELCOME, reader(signup="2027-02-01T09:00", race=None), "marathon")


def test_a_reader_without_a_race_date_is_not_enrolled_in_a_race_sequence():
    assert not enrolled(RACE_PLAN, reader(race=None), "marathon")


SCHEDULED = replace(read_post(FIXTURE / "content" / "posts" / f"{FIXTURE_SLUG}.md", FIXTURE),
                    send_at=dt.date(2027, 3, 28))


@pytest.mark.parametrize(("zone", "expected"), [
    ("Pacific/Auckland", "2027-03-27T17:00"), ("Europe/Madrid", "2027-03-28T04:00"),
    ("UTC", "2027-03-28T06:00"), ("America/Los_Angeles", "2027-03-28T13:00")])
def test_a_post_sent_at_a_date_reaches_each_reader_at_send_hour_in_their_zone(zone, expected):
    assert post_due(SCHEDULED, reader(zone), SETTINGS) == utc(expected)


def test_a_post_sent_at_an_instant_reaches_every_zone_at_that_instant():
    post = replace(SCHEDULED, send_at=utc("2027-03-28T09:30"))
    assert {post_due(post, reader(zone), SETTINGS)
            for zone in ("Pacific/Auckland", "Europe/Madrid", "America/New_York")} == {
        utc("2027-03-28T09:30")}
