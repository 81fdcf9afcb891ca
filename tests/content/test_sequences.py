"""Sequences as `runletter check` sees them: each mistake in sequence.toml or a step named on
its line, with a suggestion, and what works but is likely a slip as a warning."""

from __future__ import annotations

import pytest

from publisher.content.when import parse_when
from tests.helpers.support import run

RACE_PLAN = "content/sequences/race-plan"


def check_lines(*names: str) -> list[str]:
    """The findings `runletter check` prints (errors and warnings), without the summary."""
    result = run("check", *names)
    return [line for line in result.output.splitlines() if ": error: " in line
            or ": warning: " in line]


def replace(root, relative: str, old: str, new: str) -> None:
    path = root / relative
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_the_fixture_sequences_check_clean_of_errors(timed_root):
    assert [line for line in check_lines()
            if line.startswith("content/sequences/") and ": error: " in line] == []


def test_a_misspelt_when_is_an_error_on_its_line_with_the_form_it_resembles(timed_root):
    replace(timed_root, f"{RACE_PLAN}/02-eight-weeks.md", '"8 weeks before race"',
            '"8 wekes before race"')
    [line] = [f for f in check_lines() if "wekes" in f]
    assert line.startswith(f"{RACE_PLAN}/02-eight-weeks.md:5: error: 'when: 8 wekes before "
                           "race' is not understood (did you mean '8 weeks before race'?)")


def test_an_unknown_goal_in_a_sequences_audience_names_the_toml_line_and_the_goal(timed_root):
    replace(timed_root, f"{RACE_PLAN}/sequence.toml", '"ultra"]', '"ultr"]')
    assert f"{RACE_PLAN}/sequence.toml:4: error: unknown goal 'ultr' in audience (did you " \
           "mean 'ultra'?)" in "\n".join(check_lines())


def test_a_date_in_a_step_is_refused_because_when_times_it(timed_root):
    replace(timed_root, f"{RACE_PLAN}/01-twelve-weeks.md", "topic: strength\n",
            "topic: strength\ndate: 2027-01-01\n")
    assert any("01-twelve-weeks.md:5: error: a step has no 'date'" in line
               for line in check_lines())


def test_a_race_step_in_a_signup_sequence_is_an_error_naming_the_anchor(timed_root):
    replace(timed_root, f"{RACE_PLAN}/sequence.toml", 'anchor = "race"', 'anchor = "signup"')
    lines = check_lines()
    assert any("01-twelve-weeks.md:5: error: 'when: 12 weeks before race' in a signup "
               "sequence" in line for line in lines)


def test_an_unknown_gate_is_an_error_with_the_only_gate_suggested(timed_root):
    replace(timed_root, f"{RACE_PLAN}/01-twelve-weeks.md", "topic: strength\n",
            "topic: strength\ngate: redy\n")
    assert any("gate 'redy' is not known; the only gate is 'gate: ready' (did you mean "
               "'ready'?)" in line for line in check_lines())


def test_a_first_step_counted_from_the_previous_one_is_an_error(timed_root):
    replace(timed_root, f"{RACE_PLAN}/01-twelve-weeks.md", '"12 weeks before race"',
            '"1 week after previous"')
    assert any("01-twelve-weeks.md:5: error: 'when: 1 week after previous' on the first step"
               in line for line in check_lines())


def test_an_unknown_merge_field_in_a_step_is_an_error_with_a_suggestion(timed_root):
    replace(timed_root, f"{RACE_PLAN}/01-twelve-weeks.md", "build the base.",
            "build the base for {{ race_nme }}.")
    assert any("unknown merge field 'race_nme' (did you mean 'race_name'?)" in line
               for line in check_lines())


def test_a_gate_on_the_last_step_is_a_warning(timed_root):
    replace(timed_root, f"{RACE_PLAN}/08-two-weeks-after.md", "topic: strength\n",
            "topic: strength\ngate: ready\n")
    assert any("08-two-weeks-after.md" in line and "warning: 'gate: ready' on the last step"
               in line for line in check_lines())


def test_check_of_one_step_checks_only_that_step(timed_root):
    result = run("check", "race-plan/01-twelve-weeks")
    assert "checked 0 posts and 1 sequence step" in result.output


@pytest.mark.parametrize("text", ["on signup", "3 days after signup", "1 week after signup",
                                  "12 weeks before race", "race day", "3 days after race",
                                  "1 day after previous", "2 WEEKS   after previous"])
def test_every_when_form_is_understood(text):
    parse_when(text)


@pytest.mark.parametrize("text", ["", "soon", "-2 days after race", "two weeks before race",
                                  "3 fortnights after signup"])
def test_anything_else_is_refused_with_the_forms_listed(text):
    with pytest.raises(ValueError, match="on signup"):
        parse_when(text)


def test_counting_back_from_signup_is_refused_with_the_form_that_works():
    with pytest.raises(ValueError, match="write '3 days after signup'"):
        parse_when("3 days before signup")
