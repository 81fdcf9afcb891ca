"""Every date a reader, an import or an author gives is bounded to clock.DATE_RANGE
(1900-01-01 to 2199-12-31): outside it is a clear error where it is given, never an overflow
later in a run."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher import clock
from publisher.errors import RunletterError
from publisher.store.records import check_race_date
from tests.helpers.support import run, scheduled_post

OUTSIDE = st.dates().filter(lambda day: not clock.FIRST_DATE <= day <= clock.LAST_DATE)
RANGE = "is outside the dates Runletter handles (1900-01-01 to 2199-12-31)"


@given(OUTSIDE)
def test_a_race_date_outside_the_range_is_refused_naming_the_range(day):
    with pytest.raises(RunletterError) as caught:
        check_race_date(day.isoformat())
    assert f"race_date {day.isoformat()} {RANGE}" in caught.value.findings[0].message


@given(st.dates(clock.FIRST_DATE, clock.LAST_DATE))
def test_a_race_date_within_the_range_is_kept(day):
    assert check_race_date(day.isoformat()) == day.isoformat()


@given(OUTSIDE, st.sampled_from(["Z", "+14:00", "-12:00"]))
def test_an_instant_outside_the_range_is_refused_not_overflowed(day, offset):
    text = f"{day.isoformat()}T00:00:00{offset}"
    with pytest.raises(ValueError, match=re.escape(RANGE)):
        clock.parse_instant(text)


@pytest.mark.parametrize("send_at", ["0001-01-01", "9999-12-31T23:00:00-05:00"])
def test_check_reports_a_send_at_outside_the_range_on_its_line(timed_root, send_at):
    slug = scheduled_post(timed_root, "2027-01-10-far", send_at)
    result = run("check", slug)
    assert result.exit_code == 1
    assert (f"content/posts/{slug}.md:6: error: send_at '{send_at}' {RANGE}; give one in "
            "that range") in result.output
    assert "Traceback" not in result.output


def test_check_reports_a_since_outside_the_range_on_its_line(timed_root):
    path = timed_root / "content" / "sequences" / "welcome" / "sequence.toml"
    path.write_text(path.read_text(encoding="utf-8").replace("since = 2027-01-01",
                                                             "since = 0001-01-01"),
                    encoding="utf-8")
    line = path.read_text(encoding="utf-8").splitlines().index("since = 0001-01-01") + 1
    result = run("check")
    assert (f"content/sequences/welcome/sequence.toml:{line}: error: since 0001-01-01 "
            f"{RANGE}; give one in that range") in result.output

