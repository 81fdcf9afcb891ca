"""`runletter publish --due`, `runletter due` and `report SEQUENCE` end to end: the CLI over a
real store file, the outbox provider's Maildir read back, and real processes running at
once or killed midway."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from publisher import clock
from tests.helpers.smtp_server import running_smtp
from tests.helpers.support import (
    add_reader,
    assert_user_error,
    message_ids,
    move_race,
    outbox_messages,
    project_store,
    publish_due,
    received,
    run,
    runletter,
    say_ready,
    scheduled_post,
    time_rows,
    write_csv,
)
from tests.samples import AFTER_GATE, GATE, ON_BOTH_BACKENDS, RUNNER

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets


def reader(root, email_addr: str, goal: str, signup: str, race_date: str | None = None,
           race_name: str = "", timezone: str = "") -> None:
    """Add a reader to the project's store file."""
    with project_store(root) as store:
        add_reader(store, email_addr, goal, signup, race_date, race_name, timezone)


def due_ok(now: str, *extra: str) -> str:
    """A `publish --due` run at NOW that must succeed; its output."""
    result = publish_due(now, *extra)
    assert result.exit_code == 0, result.output
    return result.output


def sequence_report(name: str) -> dict[str, list[str]]:
    """`runletter report SEQUENCE` as {step: [sent, skipped, planned, in-flight, failed,
    rejected, waiting at gate]}."""
    result = run("report", name)
    assert result.exit_code == 0, result.output
    return {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}


# (zone, race date, step, the UTC instant of 06:00 local on its day): either side of the 2027
# clock changes in the US (14 March), the EU (28 March) and New Zealand (4 April).
ON_TIME = [
    ("Europe/Madrid", "2027-03-28", "race-plan/05-race-day", "2027-03-28T04:00"),
    ("America/New_York", "2027-03-24", "race-plan/04-ten-days", "2027-03-14T10:00"),
    ("America/Los_Angeles", "2027-03-11", "race-plan/06-three-days-after", "2027-03-14T13:00"),
    ("Pacific/Auckland", "2027-04-04", "race-plan/05-race-day", "2027-04-03T18:00"),
    ("UTC", "2027-03-28", "race-plan/05-race-day", "2027-03-28T06:00"),
]


def minute_before(at: str) -> str:
    """The instant a minute earlier, as utc() writes it."""
    hour, minute = int(at[11:13]), int(at[14:16])
    total = hour * 60 + minute - 1
    return f"{at[:11]}{total // 60:02d}:{total % 60:02d}"


@pytest.mark.parametrize(("zone", "race", "step", "at"), ON_TIME)
def test_a_step_waits_until_send_hour_on_its_local_date(timed_root, zone, race, step, at):
    reader(timed_root, RUNNER, "marathon", "2027-03-10T00:00", race, timezone=zone)
    due_ok(minute_before(at))
    assert (RUNNER, step) not in received(timed_root)


@pytest.mark.parametrize(("zone", "race", "step", "at"), ON_TIME)
def test_a_step_goes_out_at_send_hour_on_its_local_date(timed_root, zone, race, step, at):
    reader(timed_root, RUNNER, "marathon", "2027-03-10T00:00", race, timezone=zone)
    due_ok(minute_before(at))
    due_ok(at)
    assert received(timed_root)[(RUNNER, step)] == 1


def test_a_late_joiners_skipped_steps_show_in_the_sequence_report(timed_root):
    reader(timed_root, RUNNER, "marathon", "2027-02-21T10:00", "2027-03-28")
    due_ok("2027-02-21T10:00")
    report = sequence_report("race-plan")
    assert (report["race-plan/01-twelve-weeks"][1], report["race-plan/02-eight-weeks"][1]) == (
        "1", "1")


def test_a_late_joiner_gets_the_four_week_step_and_not_the_earlier_ones(timed_root):
    reader(timed_root, RUNNER, "marathon", "2027-02-21T10:00", "2027-03-28")
    due_ok("2027-02-21T10:00")
    due_ok("2027-02-28T06:00")
    assert received(timed_root) == Counter({(RUNNER, "race-plan/03-four-weeks"): 1})


def test_a_step_tells_each_reader_their_race_and_the_weeks_to_go(timed_root):
    reader(timed_root, RUNNER, "marathon", "2027-02-21T10:00", "2027-03-28", "Madrid Marathon",
           "Europe/Madrid")
    due_ok("2027-02-28T05:00")  # the 4-week step, 06:00 in Madrid
    [message] = outbox_messages(timed_root)
    assert "Madrid Marathon is on 28 March 2027: 4 weeks to go." in " ".join(
        message.get_body(("plain",)).get_content().split())


def test_a_run_three_days_after_a_step_shows_it_skipped_and_sends_nothing(timed_root):
    reader(timed_root, RUNNER, "marathon", "2027-01-01T09:00", "2027-03-28")
    due_ok("2027-01-03T06:00")  # the 12-week step, on time
    output = due_ok("2027-02-03T06:01")  # the 8-week step was 31 January
    rows = [line.split() for line in output.splitlines()]
    assert (["race-plan/02-eight-weeks", "0", "1"] in rows, received(timed_root)) == (
        True, Counter({(RUNNER, "race-plan/01-twelve-weeks"): 1}))


def test_a_run_one_day_after_a_step_sends_it(timed_root):
    reader(timed_root, RUNNER, "marathon", "2027-01-01T09:00", "2027-03-28")
    due_ok("2027-01-04T06:00")
    assert received(timed_root) == Counter({(RUNNER, "race-plan/01-twelve-weeks"): 1})


def left_in_flight(root) -> None:
    """RUNNER's first race-plan step in flight, as a run killed mid-call leaves it."""
    reader(root, RUNNER, "marathon", "2027-01-01T09:00", "2027-03-28")
    due_ok("2027-01-03T06:00", "--dry-run")
    with project_store(root) as store, store.transaction() as conn:
        conn.execute("INSERT INTO deliveries(post, subscriber_id, email, goal, state, attempts, "
                     "updated_at) SELECT 'race-plan/01-twelve-weeks', id, email, goal, "
                     "'in-flight', 1, '2027-01-03T06:00:00+00:00' FROM subscribers")


def test_a_run_after_a_crash_warns_of_deliveries_left_in_flight_and_does_not_resend_them(
        timed_root):
    left_in_flight(timed_root)
    output = due_ok("2027-01-03T06:15")
    assert ("1 delivery of race-plan/01-twelve-weeks was in flight" in output,
            received(timed_root)) == (True, Counter())


def test_a_race_moved_later_sends_the_remaining_steps_on_the_new_dates_and_nothing_twice(
        timed_root):
    reader(timed_root, RUNNER, "marathon", "2027-01-01T09:00", "2027-03-28")
    due_ok("2027-01-03T06:00")
    with project_store(timed_root) as store:
        move_race(store, RUNNER, "2027-04-25")  # four weeks later
    for at in ("2027-01-31T06:00", "2027-02-01T06:00", "2027-02-28T06:00"):
        due_ok(at)
    assert received(timed_root) == Counter({(RUNNER, "race-plan/01-twelve-weeks"): 1,
                                            (RUNNER, "race-plan/02-eight-weeks"): 1})


def comeback_sent_phase_one(root) -> None:
    """A comeback reader (signed up 4 January) sent the welcome and the gated phase one."""
    reader(root, RUNNER, "comeback", "2027-01-04T09:00")
    due_ok("2027-01-04T09:00")
    due_ok("2027-01-07T06:00")


def test_the_gated_step_carries_the_readers_ready_link(timed_root):
    comeback_sent_phase_one(timed_root)
    [message] = [m for m in outbox_messages(timed_root)
                 if m["X-Runletter-Edition"].startswith(GATE)]
    assert "https://fixture.example.org/ready/" in message.get_body(("plain",)).get_content()


def test_the_step_after_a_gate_waits_for_ready_weeks_later_and_is_not_skipped(timed_root):
    comeback_sent_phase_one(timed_root)
    due_ok("2027-02-15T06:00")
    due_ok("2027-03-15T06:00")
    assert (AFTER_GATE not in {item for _, item in received(timed_root)},
            sequence_report("comeback")[AFTER_GATE][1], sequence_report("comeback")[GATE][6]) \
        == (True, "0", "1")


def test_the_step_after_a_gate_goes_out_once_the_reader_says_ready(timed_root):
    comeback_sent_phase_one(timed_root)
    due_ok("2027-03-15T06:00")
    with project_store(timed_root) as store:
        say_ready(store, RUNNER, GATE, "2027-03-15T12:00")
    due_ok("2027-03-15T13:00")
    assert received(timed_root)[(RUNNER, AFTER_GATE)] == 1


def test_the_step_after_a_gate_waits_for_its_own_when_after_an_early_ready(timed_root):
    comeback_sent_phase_one(timed_root)
    with project_store(timed_root) as store:
        say_ready(store, RUNNER, GATE, "2027-01-08T12:00")
    due_ok("2027-01-08T13:00")
    due_ok("2027-01-21T05:59")
    assert AFTER_GATE not in {item for _, item in received(timed_root)}
    due_ok("2027-01-21T06:00")  # two weeks after phase one went out
    assert received(timed_root)[(RUNNER, AFTER_GATE)] == 1


def test_a_gated_step_skipped_as_late_never_lets_the_step_after_it_out(timed_root):
    reader(timed_root, RUNNER, "comeback", "2027-01-04T09:00")
    due_ok("2027-01-11T06:00")  # the first run: phase one (7 January) is past its grace
    due_ok("2027-01-21T06:00")  # 2 weeks after phase one's day
    due_ok("2027-03-15T06:00")
    assert (received(timed_root)[(RUNNER, GATE)], received(timed_root)[(RUNNER, AFTER_GATE)],
            sequence_report("comeback")[GATE][6]) == (0, 0, "0")


def test_a_first_run_long_after_a_reader_joined_sends_their_first_step_late_once(timed_root):
    reader(timed_root, RUNNER, "marathon", "2026-12-01T09:00", "2027-03-28")
    due_ok("2027-02-03T06:00")  # the twelve-week step was due on 3 January
    due_ok("2027-02-04T06:00")
    assert received(timed_root)[(RUNNER, "race-plan/01-twelve-weeks")] == 1
    assert sequence_report("race-plan")["race-plan/02-eight-weeks"][1] == "1"  # skipped


SPRING = "2027-03-28-spring"


@pytest.mark.parametrize(("at", "reached"), [
    ("2027-03-27T16:59", set()),
    ("2027-03-27T17:00", {"kiwi@example.com"}),  # 06:00 in Auckland (NZDT)
    ("2027-03-28T04:00", {"kiwi@example.com", "madrid@example.com"}),  # 06:00 CEST
    ("2027-03-28T12:59", {"kiwi@example.com", "madrid@example.com"}),
    ("2027-03-28T13:00", {"kiwi@example.com", "madrid@example.com", "la@example.com"}),
])
def test_a_post_sent_at_a_date_reaches_each_reader_at_send_hour_in_their_zone(timed_root, at,
                                                                             reached):
    scheduled_post(timed_root, SPRING, "2027-03-28")
    for name, zone in (("kiwi", "Pacific/Auckland"), ("madrid", "Europe/Madrid"),
                       ("la", "America/Los_Angeles")):
        reader(timed_root, f"{name}@example.com", "general", "2027-01-01T09:00", timezone=zone)
    due_ok(at)
    assert {to for to, item in received(timed_root) if item == SPRING} == reached


def test_a_post_sent_at_an_instant_reaches_every_zone_at_that_instant(timed_root):
    scheduled_post(timed_root, SPRING, "2027-03-28T09:30:00Z")
    for name, zone in (("kiwi", "Pacific/Auckland"), ("la", "America/Los_Angeles")):
        reader(timed_root, f"{name}@example.com", "general", "2027-01-01T09:00", timezone=zone)
    due_ok("2027-03-28T09:29")
    before = received(timed_root)
    due_ok("2027-03-28T09:30")
    assert (before, set(received(timed_root))) == (
        Counter(), {("kiwi@example.com", SPRING), ("la@example.com", SPRING)})


def test_a_plain_publish_of_a_post_scheduled_later_names_the_time_and_publish_due(timed_root):
    scheduled_post(timed_root, "2099-01-11-later", "2099-01-11T09:30:00Z")
    assert_user_error(run("publish", "2099-01-11-later", "--yes"),
                      "content/posts/2099-01-11-later.md:6: error: is scheduled for "
                      "2099-01-11 09:30 UTC (send_at); 'runletter publish --due' sends it "
                      "then, from cron or a timer\n1 error\n")


RACE_NOTE = ("{{ race_name | default('Your race') }} is on {{ race_date | default('a day you "
             "pick') }}: {{ weeks_to_race | default('some') }} weeks to go.")


def test_race_merge_fields_are_filled_per_reader_in_a_scheduled_post(timed_root):
    scheduled_post(timed_root, "2027-01-10-race-note", "2027-01-10", RACE_NOTE)
    reader(timed_root, "madrid@example.com", "general", "2027-01-01T09:00", "2027-03-28",
           "Madrid Marathon", "Europe/Madrid")
    reader(timed_root, "kiwi@example.com", "general", "2027-01-01T09:00", "2027-04-04",
           "Auckland Half", "Pacific/Auckland")
    reader(timed_root, "free@example.com", "general", "2027-01-01T09:00")
    due_ok("2027-01-10T06:00")
    said = {m["To"].addresses[0].addr_spec: " ".join(m.get_body(("plain",)).get_content().split())
            for m in outbox_messages(timed_root)}
    assert ("Madrid Marathon is on 28 March 2027: 11 weeks to go." in said["madrid@example.com"],
            "Auckland Half is on 4 April 2027: 12 weeks to go." in said["kiwi@example.com"],
            "Your race is on a day you pick: some weeks to go." in said["free@example.com"]) == (
        True, True, True)


def test_two_runs_at_once_send_each_reader_one_copy(timed_root):
    with project_store(timed_root) as store:
        for n in range(300):
            add_reader(store, f"r{n:03d}@example.com", "marathon", "2027-01-01T09:00",
                       "2027-03-28", timezone=("Europe/Madrid", "UTC")[n % 2])
    args = ("publish", "--due", "--now", "2027-01-03T06:00:00Z", "--yes")
    runs = [runletter(timed_root, *args), runletter(timed_root, *args)]
    outputs = [r.communicate(timeout=300)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    ids = message_ids(timed_root)
    assert (len(ids), max(ids.values())) == (300, 1)


def killed_and_run_again(root, monkeypatch) -> tuple[int, Counter, str]:
    """80 readers (two editions) due the 12-week step; a `publish --due` through a slow SMTP
    server killed with SIGKILL after 15 messages, then run again: (messages when killed,
    copies per recipient, the second run's output)."""
    with project_store(root) as store:
        for n in range(80):
            add_reader(store, f"r{n:02d}@example.com", ("marathon", "ultra")[n % 2],
                       "2027-01-01T09:00", "2027-03-28")
    args = ("publish", "--due", "--now", "2027-01-03T06:00:00Z", "--yes", "--provider", "smtp")
    with running_smtp(delay=0.03) as server:
        monkeypatch.setenv("RUNLETTER_SMTP_HOST", server.host)
        monkeypatch.setenv("RUNLETTER_SMTP_PORT", str(server.port))
        monkeypatch.setenv("RUNLETTER_SMTP_SECURITY", "none")
        first = runletter(root, *args)
        deadline = time.monotonic() + 30
        while len(server.messages) < 15 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = len(server.messages)
        second = runletter(root, *args)
        output = second.communicate(timeout=120)[0]
        assert second.returncode == 0, output
    return killed_at, Counter(rcpt for rcpts, _ in server.messages for rcpt in rcpts), output


def test_a_run_killed_midway_and_run_again_sends_no_reader_two_copies(timed_root, monkeypatch):
    killed_at, copies, _ = killed_and_run_again(timed_root, monkeypatch)
    assert 15 <= killed_at < 40, "the kill must land within the first edition"
    assert (len(copies) > killed_at, max(copies.values())) == (True, 1)


def test_readers_left_in_flight_by_a_killed_run_still_get_the_next_step(timed_root,
                                                                        monkeypatch):
    killed_and_run_again(timed_root, monkeypatch)
    due_ok("2027-01-31T06:00")  # the 8-week step, through the outbox
    eight_weeks = Counter(to for to, item in received(timed_root)
                          if item == "race-plan/02-eight-weeks")
    assert (len(eight_weeks), set(eight_weeks.values())) == (80, {1})


def test_a_dry_run_writes_nothing(timed_root):
    reader(timed_root, RUNNER, "marathon", "2027-01-01T09:00", "2027-03-28")
    due_ok("2027-01-03T06:00")
    reader(timed_root, "late@example.com", "marathon", "2027-02-21T10:00", "2027-03-28")
    before = time_rows(timed_root)
    [path] = (timed_root / "outbox" / "new").iterdir()
    output = due_ok("2027-02-28T06:00", "--dry-run")
    assert "dry run: would send 2 messages" in output
    assert (time_rows(timed_root), list((timed_root / "outbox" / "new").iterdir())) == (
        before, [path])


def three_zones(root) -> None:
    """Marathon readers racing on 28 March 2027 in Auckland, UTC and Los Angeles."""
    for name, zone in (("kiwi", "Pacific/Auckland"), ("utc", "UTC"),
                       ("la", "America/Los_Angeles")):
        reader(root, f"{name}@example.com", "marathon", "2026-12-20T09:00", "2027-03-28",
               timezone=zone)


def test_due_counts_each_steps_readers_per_date_in_the_newsletters_zone(timed_root):
    three_zones(timed_root)
    result = run("due", "--now", "2027-01-01T00:00:00Z", "--days", "30")
    # Auckland's 06:00 on 3 January is still the 2nd in UTC, the [schedule] zone.
    assert [line.split() for line in result.stdout.splitlines()[4:]] == [
        ["2027-01-02", "race-plan/01-twelve-weeks", "1"],
        ["2027-01-03", "race-plan/01-twelve-weeks", "2"],
        ["2027-01-30", "race-plan/02-eight-weeks", "1"]]


def test_report_of_a_step_shows_its_ledger_per_segment(timed_root):
    three_zones(timed_root)
    due_ok("2027-01-03T06:00")  # Los Angeles is still at 22:00 on the 2nd
    result = run("report", "race-plan/01-twelve-weeks")
    assert result.stdout.splitlines()[1].split() == ["marathon", "0", "0", "2", "0", "0", "0",
                                                     "2"]


def test_due_for_a_reader_lists_their_upcoming_items_on_their_local_dates(timed_root):
    reader(timed_root, RUNNER, "marathon", "2027-01-01T09:00", "2027-03-28", "Madrid Marathon",
           "Europe/Madrid")
    due_ok("2027-01-03T06:00")  # the 12-week step; no run since
    # The 8- and 4-week steps are past their grace: only what is ahead is listed.
    result = run("due", "--reader", RUNNER, "--now", "2027-03-05T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("signed up: 2027-01-01T09:00")
    assert [line.split()[:3] for line in result.stdout.splitlines()[2:]] == [
        ["date", "time", "item"],
        ["2027-03-18", "06:00", "race-plan/04-ten-days"],
        ["2027-03-28", "06:00", "race-plan/05-race-day"],  # after the clocks went forward
        ["2027-03-31", "06:00", "race-plan/06-three-days-after"],
        ["2027-04-07", "06:00", "race-plan/07-one-week-on"],
        ["2027-04-11", "06:00", "race-plan/08-two-weeks-after"],
    ]


def test_due_for_a_reader_at_a_gate_shows_the_next_step_waiting_for_ready(timed_root):
    comeback_sent_phase_one(timed_root)
    result = run("due", "--reader", RUNNER, "--now", "2027-02-01T00:00:00Z")
    assert result.stdout.splitlines()[3].split()[:3] == ["waiting", "ready", AFTER_GATE]


def test_due_for_an_unknown_reader_says_so_in_one_line(timed_root):
    assert_user_error(run("due", "--reader", "nobody@example.com"),
                      "runletter: error: --reader nobody@example.com: no such subscriber; "
                      "'runletter subscribers list' shows them\n1 error\n")


# -- a reader whose dates cannot be computed ----------------------------------------------------


def one_reader_in_year_one(root) -> int:
    """Two race readers, one of them (returned: their id) with a race in year 1."""
    reader(root, RUNNER, "marathon", "2027-01-01T09:00", "2027-03-28")
    reader(root, "far@example.com", "marathon", "2027-01-01T09:00", "2027-03-28")
    with project_store(root) as store:
        move_race(store, "far@example.com", "0001-01-01")
        return store.get("far@example.com").id


def test_a_reader_whose_race_cannot_be_computed_does_not_stop_the_run_for_others(timed_root):
    one_reader_in_year_one(timed_root)
    due_ok("2027-01-03T06:00")
    assert received(timed_root) == Counter({(RUNNER, "race-plan/01-twelve-weeks"): 1})


def test_publish_due_names_and_counts_a_reader_it_left_out(timed_root):
    far = one_reader_in_year_one(timed_root)
    result = publish_due("2027-01-03T06:00")
    assert f"left out 1 reader whose dates cannot be computed (#{far})" in result.stdout
    assert f"warning: reader #{far} left out: their dates cannot be computed" in result.stderr


def test_due_names_and_counts_a_reader_it_left_out(timed_root):
    far = one_reader_in_year_one(timed_root)
    result = run("due", "--now", "2027-01-01T00:00:00Z", "--days", "30")
    assert result.exit_code == 0, result.output
    assert f"left out 1 reader whose dates cannot be computed (#{far})" in result.stdout
    assert ["2027-01-03", "race-plan/01-twelve-weeks", "1"] in [
        line.split() for line in result.stdout.splitlines()]


@pytest.mark.parametrize("now", ["0001-01-01T00:00:00Z", "9999-12-31T23:00:00-05:00"])
def test_publish_due_refuses_a_now_outside_the_date_range_in_one_line(timed_root, now):
    assert_user_error(run("publish", "--due", "--now", now, "--yes"),
                      f"runletter: error: --now '{now}' is outside the dates Runletter "
                      "handles (1900-01-01 to 2199-12-31); give one in that range\n1 error\n")


# -- imported readers and the signup sequences -------------------------------------------------

NEW_5K = "email,goal\nnew@example.com,5k\n"  # a reader with no consent time, after `since`


def import_on_5_january(root, text: str, *flags: str):
    """`subscribers import` of a CSV on 5 January 2027 (after the welcome's `since`)."""
    path = write_csv(root, text, "list.csv")
    with clock.pinned(datetime(2027, 1, 5, 9, 0, tzinfo=UTC)):
        result = run("subscribers", "import", str(path), *flags)
    assert result.exit_code == 0, result.output
    return result


def test_an_import_without_enrol_sends_no_welcome_series(timed_root):
    import_on_5_january(timed_root, NEW_5K)
    due_ok("2027-01-05T10:00")
    due_ok("2027-01-15T06:00")
    assert received(timed_root) == Counter()


def test_a_reader_imported_without_a_consent_time_is_shown_as_signed_up_at_an_unknown_time(
        timed_root):
    import_on_5_january(timed_root, NEW_5K)
    result = run("due", "--reader", "new@example.com", "--now", "2027-01-05T10:00:00Z")
    assert result.exit_code == 0, result.output
    assert "signed up: unknown (no consent time was given)\n" in result.output


def test_a_reader_imported_with_a_consent_time_is_shown_signed_up_then(timed_root):
    import_on_5_january(timed_root, "email,goal,consent_at\n"
                                    "new@example.com,5k,2027-01-04T08:00:00Z\n")
    result = run("due", "--reader", "new@example.com", "--now", "2027-01-05T10:00:00Z")
    assert "signed up: 2027-01-04T08:00:00" in result.output


def test_an_imported_readers_consent_time_does_not_enrol_them_without_enrol(timed_root):
    import_on_5_january(timed_root, "email,goal,consent_at\n"
                                    "new@example.com,5k,2027-01-04T08:00:00Z\n")
    due_ok("2027-01-05T10:00")
    assert received(timed_root) == Counter()


def test_an_import_with_enrol_times_the_welcome_series_from_the_import(timed_root):
    import_on_5_january(timed_root, NEW_5K, "--enrol")
    due_ok("2027-01-05T10:00")
    due_ok("2027-01-15T06:00")  # ten days after the import
    assert received(timed_root) == Counter({("new@example.com", "welcome/01-hello"): 1,
                                            ("new@example.com", "welcome/02-ten-days"): 1})


def test_the_import_summary_names_the_signup_sequences_it_did_not_enrol_them_in(timed_root):
    result = import_on_5_january(timed_root, NEW_5K)
    assert ("not enrolled in signup sequences (comeback, welcome): pass --enrol to enrol them"
            in result.stdout.splitlines())


def test_the_import_summary_says_enrol_enrolled_them(timed_root):
    result = import_on_5_january(timed_root, NEW_5K, "--enrol")
    assert ("enrolled in signup sequences (comeback, welcome) from the time of this import"
            in result.stdout.splitlines())


def test_enrol_on_a_second_import_enrols_readers_the_first_left_out(timed_root):
    import_on_5_january(timed_root, NEW_5K)
    import_on_5_january(timed_root, NEW_5K, "--enrol")
    due_ok("2027-01-05T10:00")
    assert received(timed_root) == Counter({("new@example.com", "welcome/01-hello"): 1})


# -- rows left in flight: `publish --due --resend-in-flight` ---------------------------------

WELCOME = "welcome/01-hello"  # the fixture's first welcome step, for 5K readers
FIVE_K = ("a@example.com", "b@example.com", "c@example.com")


def smtp_env(monkeypatch, server) -> None:
    """Point the CLI's SMTP provider at a test server."""
    for name, value in {"RUNLETTER_SMTP_HOST": server.host,
                        "RUNLETTER_SMTP_PORT": str(server.port),
                        "RUNLETTER_SMTP_SECURITY": "none", "RUNLETTER_SMTP_TIMEOUT": "0.5"
                        }.items():
        monkeypatch.setenv(name, value)


def welcome_dropped(root, monkeypatch, server):
    """Three 5K readers due the welcome step, sent through `server` with the first message's
    connection dropped after the server took it: that row is left in flight. The run."""
    for address in FIVE_K:
        reader(root, address, "5k", "2027-01-05T09:00")
    smtp_env(monkeypatch, server)
    server.handler.next_fault = ("drop", 0)
    return publish_due("2027-01-06T06:00", "--provider", "smtp")


def copies(server) -> Counter:
    """Messages the SMTP server took, per recipient."""
    return Counter(to.lower() for tos, _ in server.messages for to in tos)


def step_states(root, item: str) -> dict[str, str]:
    """The ledger state of each reader's row of `item`."""
    with project_store(root) as store:
        return dict(store.conn.execute("SELECT email, state FROM deliveries WHERE post = :post",
                                       {"post": item}).fetchall())


def test_a_step_left_in_flight_is_resent_once_by_resend_in_flight_and_not_by_a_plain_run(
        timed_root, monkeypatch):
    with running_smtp() as server:
        first = welcome_dropped(timed_root, monkeypatch, server)
        assert first.exit_code == 1, first.output
        [dropped] = [a for a, s in step_states(timed_root, WELCOME).items() if s == "in-flight"]
        plain = due_ok("2027-01-06T06:15", "--provider", "smtp")
        after_plain = copies(server)
        resent = due_ok("2027-01-06T06:30", "--provider", "smtp", "--resend-in-flight")
        again = due_ok("2027-01-06T06:45", "--provider", "smtp", "--resend-in-flight")
        final = copies(server)
    assert "runletter publish --due --resend-in-flight' resends them" in plain
    assert "they are sent again in this run" in resent
    assert (after_plain - Counter({dropped: 1}), final - Counter({dropped: 1})) == (
        Counter({a: 1 for a in FIVE_K if a != dropped}), Counter(dict.fromkeys(FIVE_K, 1)))
    assert (step_states(timed_root, WELCOME), "nothing to send" in again) == (
        dict.fromkeys(FIVE_K, "sent"), True)


def test_the_in_flight_line_of_a_step_names_publish_due_resend_in_flight(timed_root,
                                                                         monkeypatch):
    with running_smtp() as server:
        first = welcome_dropped(timed_root, monkeypatch, server)
    reported = run("report", WELCOME)
    resolve = ("1 message is in flight (sent, but no answer was read); run 'runletter publish "
               "--due --resend-in-flight' once you have checked they did not arrive (readers "
               "who got one would get a second)")
    assert (f"error: smtp: {resolve}" in first.output,
            f"warning: {WELCOME}: {resolve}" in reported.output) == (True, True), (
        first.output, reported.output)


def test_a_dry_run_with_resend_in_flight_counts_them_and_writes_nothing(timed_root):
    left_in_flight(timed_root)
    before = time_rows(timed_root)
    output = due_ok("2027-01-03T06:15", "--dry-run", "--resend-in-flight")
    assert ("dry run: would send 1 message" in output, time_rows(timed_root),
            received(timed_root)) == (True, before, Counter())


def test_resend_in_flight_marks_sent_an_outbox_message_already_in_new_and_sends_no_other(
        timed_root):
    reader(timed_root, RUNNER, "marathon", "2027-01-01T09:00", "2027-03-28")
    due_ok("2027-01-03T06:00")
    with project_store(timed_root) as store, store.transaction() as conn:
        # The file was written, then the run was killed before the row was settled.
        conn.execute("UPDATE deliveries SET state = 'in-flight' WHERE post = :post",
                     {"post": "race-plan/01-twelve-weeks"})
    output = due_ok("2027-01-03T06:15", "--resend-in-flight")
    assert (received(timed_root), step_states(timed_root, "race-plan/01-twelve-weeks"),
            "sent 0 messages" in output) == (
        Counter({(RUNNER, "race-plan/01-twelve-weeks"): 1}), {RUNNER: "sent"}, True)
