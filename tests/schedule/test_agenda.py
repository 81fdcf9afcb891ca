"""The agenda over a real store: what each run plans and records as skipped per reader, and
how enrolments, race changes and "ready" steer the next run."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.commands.due import agenda_for, scheduled
from publisher.project import open_project
from publisher.schedule.agenda import Agenda
from publisher.store import Store
from tests.helpers.support import (
    add_reader,
    mark_sent,
    move_race,
    project_store,
    punctuation_last,
    say_ready,
    scheduled_post,
    states,
    utc,
)
from tests.samples import AFTER_GATE, GATE, ON_BOTH_BACKENDS, RUNNER

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets


@pytest.fixture
def timed_store(timed_root):
    """The timed newsletter's store, open."""
    with project_store(timed_root) as store:
        yield store


def agenda(store: Store) -> Agenda:
    """The agenda of the newsletter in the current folder, over this store."""
    project = open_project(Path.cwd())
    return agenda_for(project, store, scheduled(project))


def run_at(store: Store, at: str) -> None:
    """Decide what is due at a UTC instant and write the decision, as a run does."""
    planner = agenda(store)
    planner.apply(planner.decide(utc(at)))


def late_joiner(store: Store) -> None:
    """A marathon reader who signs up five weeks before their race on 28 March 2027."""
    add_reader(store, RUNNER, "marathon", "2027-02-21T10:00", "2027-03-28", "Madrid Marathon",
               "Europe/Madrid")


def test_a_late_joiner_has_the_steps_already_past_recorded_as_skipped(timed_store):
    late_joiner(timed_store)
    run_at(timed_store, "2027-02-21T10:00")
    assert states(timed_store, RUNNER) == {"race-plan/01-twelve-weeks": "skipped",
                                           "race-plan/02-eight-weeks": "skipped"}


def test_a_late_joiner_is_planned_for_the_four_week_step_on_its_day(timed_store):
    late_joiner(timed_store)
    run_at(timed_store, "2027-02-21T10:00")
    run_at(timed_store, "2027-02-28T05:00")  # 06:00 in Madrid (CET)
    assert states(timed_store, RUNNER)["race-plan/03-four-weeks"] == "planned"


def test_nothing_is_planned_an_hour_before_send_hour_in_the_readers_zone(timed_store):
    late_joiner(timed_store)
    run_at(timed_store, "2027-02-21T10:00")
    run_at(timed_store, "2027-02-28T04:59")
    assert "race-plan/03-four-weeks" not in states(timed_store, RUNNER)


def test_a_race_moved_later_times_again_the_steps_it_had_skipped(timed_store):
    late_joiner(timed_store)
    run_at(timed_store, "2027-02-21T10:00")
    move_race(timed_store, RUNNER, "2027-05-16")  # the 12-week step is now today, 21 February
    run_at(timed_store, "2027-02-21T11:00")
    assert states(timed_store, RUNNER) == {"race-plan/01-twelve-weeks": "planned"}


def test_a_race_moved_later_never_plans_again_a_step_already_sent(timed_store):
    add_reader(timed_store, RUNNER, "marathon", "2027-01-01T09:00", "2027-03-28")
    run_at(timed_store, "2027-01-03T06:00")
    mark_sent(timed_store, "race-plan/01-twelve-weeks", "2027-01-03T06:00")
    move_race(timed_store, RUNNER, "2027-04-25")  # its 12-week step would be 31 January
    run_at(timed_store, "2027-01-31T06:00")
    assert states(timed_store, RUNNER) == {"race-plan/01-twelve-weeks": "sent"}


def test_a_race_moved_later_has_its_remaining_steps_on_the_new_dates(timed_store):
    add_reader(timed_store, RUNNER, "marathon", "2027-01-01T09:00", "2027-03-28")
    run_at(timed_store, "2027-01-03T06:00")
    mark_sent(timed_store, "race-plan/01-twelve-weeks", "2027-01-03T06:00")
    move_race(timed_store, RUNNER, "2027-04-25")
    run_at(timed_store, "2027-01-31T06:00")  # the old date of the 8-week step
    assert "race-plan/02-eight-weeks" not in states(timed_store, RUNNER)
    run_at(timed_store, "2027-02-28T06:00")  # 8 weeks before 25 April
    assert states(timed_store, RUNNER)["race-plan/02-eight-weeks"] == "planned"


def test_a_race_moved_earlier_skips_what_is_now_past_and_plans_what_is_due(timed_store):
    add_reader(timed_store, RUNNER, "marathon", "2027-01-01T09:00", "2027-03-28")
    run_at(timed_store, "2027-01-03T06:00")
    mark_sent(timed_store, "race-plan/01-twelve-weeks", "2027-01-03T06:00")
    move_race(timed_store, RUNNER, "2027-03-07")  # 8 weeks before: 10 January, long past
    run_at(timed_store, "2027-02-07T06:00")  # 4 weeks before 7 March
    assert states(timed_store, RUNNER) == {"race-plan/01-twelve-weeks": "sent",
                                           "race-plan/02-eight-weeks": "skipped",
                                           "race-plan/03-four-weeks": "planned"}


def comeback_through_the_gate(store: Store) -> None:
    """A comeback reader who signed up on 4 January and was sent the welcome and the gated
    phase one on time."""
    add_reader(store, RUNNER, "comeback", "2027-01-04T09:00")
    run_at(store, "2027-01-04T09:00")
    mark_sent(store, "comeback/01-welcome", "2027-01-04T09:00")
    run_at(store, "2027-01-07T06:00")
    mark_sent(store, GATE, "2027-01-07T06:00")


def test_a_reader_who_has_not_said_ready_waits_at_the_gate_weeks_later(timed_store):
    comeback_through_the_gate(timed_store)
    run_at(timed_store, "2027-03-15T06:00")
    assert states(timed_store, RUNNER) == {"comeback/01-welcome": "sent", GATE: "sent"}
    waiting = timed_store.conn.execute("SELECT waiting FROM enrolments").fetchall()
    assert waiting == [(GATE,)]


def test_ready_weeks_late_plans_the_next_step_at_the_next_run(timed_store):
    comeback_through_the_gate(timed_store)
    run_at(timed_store, "2027-03-15T06:00")
    say_ready(timed_store, RUNNER, GATE, "2027-03-15T12:00")
    run_at(timed_store, "2027-03-15T13:00")
    assert states(timed_store, RUNNER)["comeback/03-phase-two"] == "planned"


def test_ready_before_the_next_steps_own_when_plans_it_only_on_that_day(timed_store):
    comeback_through_the_gate(timed_store)
    say_ready(timed_store, RUNNER, GATE, "2027-01-10T12:00")
    run_at(timed_store, "2027-01-10T13:00")
    assert "comeback/03-phase-two" not in states(timed_store, RUNNER)
    run_at(timed_store, "2027-01-21T06:00")  # 2 weeks after phase one went out
    assert states(timed_store, RUNNER)["comeback/03-phase-two"] == "planned"


def test_a_sequence_walks_alike_whatever_the_databases_collation(timed_store):
    punctuation_last(timed_store)
    comeback_through_the_gate(timed_store)
    say_ready(timed_store, RUNNER, GATE, "2027-03-15T12:00")
    run_at(timed_store, "2027-03-15T13:00")
    assert states(timed_store, RUNNER) == {"comeback/01-welcome": "sent", GATE: "sent",
                                           AFTER_GATE: "planned"}


def test_a_signup_sequence_with_since_leaves_out_readers_who_signed_up_before(timed_store):
    add_reader(timed_store, RUNNER, "5k", "2026-12-30T09:00")
    run_at(timed_store, "2027-01-02T09:00")
    assert states(timed_store, RUNNER) == {}


def test_a_signup_sequence_with_since_welcomes_a_reader_who_signed_up_after(timed_store):
    add_reader(timed_store, RUNNER, "5k", "2027-01-02T09:00")
    run_at(timed_store, "2027-01-02T09:00")
    assert states(timed_store, RUNNER) == {"welcome/01-hello": "planned"}


def test_a_sequence_plans_nothing_for_a_goal_outside_its_audience(timed_store):
    add_reader(timed_store, RUNNER, "ultra", "2027-01-02T09:00")  # no race date: no race plan
    add_reader(timed_store, "fiver@example.com", "5k", "2027-01-02T09:00", "2027-03-28")
    run_at(timed_store, "2027-01-03T06:00")
    assert (states(timed_store, RUNNER), set(states(timed_store, "fiver@example.com"))) == (
        {}, {"welcome/01-hello"})


def test_a_reader_without_a_race_date_is_not_enrolled_in_the_race_plan(timed_store):
    add_reader(timed_store, RUNNER, "marathon", "2027-01-01T09:00")
    run_at(timed_store, "2027-01-03T06:00")
    enrolments = timed_store.conn.execute("SELECT COUNT(*) FROM enrolments").fetchone()[0]
    assert (states(timed_store, RUNNER), enrolments) == ({}, 0)


def test_a_dated_post_is_planned_for_the_readers_whose_send_hour_has_come(timed_store):
    scheduled_post(Path.cwd(), "2027-03-28-spring", "2027-03-28")
    for name, zone in (("kiwi", "Pacific/Auckland"), ("madrid", "Europe/Madrid"),
                       ("la", "America/Los_Angeles")):
        add_reader(timed_store, f"{name}@example.com", "general", "2027-01-01T09:00",
                   timezone=zone)
    run_at(timed_store, "2027-03-28T04:00")  # 17:00 in Auckland, 06:00 in Madrid
    planned = {name: states(timed_store, f"{name}@example.com") for name in ("kiwi", "madrid",
                                                                             "la")}
    assert planned == {"kiwi": {"2027-03-28-spring": "planned"},
                       "madrid": {"2027-03-28-spring": "planned"}, "la": {}}


def test_a_reader_who_joins_after_a_dated_post_went_out_to_them_is_not_sent_it(timed_store):
    scheduled_post(Path.cwd(), "2027-03-28-spring", "2027-03-28")
    add_reader(timed_store, RUNNER, "general", "2027-03-28T07:00")  # an hour after 06:00 UTC
    run_at(timed_store, "2027-03-28T08:00")
    assert states(timed_store, RUNNER) == {}


def test_two_runs_deciding_at_once_write_one_row_per_reader_and_item(timed_store):
    for n in range(20):
        add_reader(timed_store, f"r{n}@example.com", "marathon", "2027-01-01T09:00",
                   "2027-03-28")
    first, second = agenda(timed_store), agenda(timed_store)
    decisions = [first.decide(utc("2027-01-03T06:00")), second.decide(utc("2027-01-03T06:00"))]
    first.apply(decisions[0])
    second.apply(decisions[1])
    rows = timed_store.conn.execute("SELECT post, COUNT(*) FROM deliveries GROUP BY post")
    assert rows.fetchall() == [("race-plan/01-twelve-weeks", 20)]
