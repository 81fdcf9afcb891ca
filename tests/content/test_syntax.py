"""The grammar a post adds to Markdown (content/syntax.py): merge fields, exercise links,
goal blocks, and the prose they count in."""

from __future__ import annotations

import pytest

from publisher.content.syntax import (
    BLOCK_FENCE,
    EXERCISE_LINK,
    MERGE_FIELD,
    ONLY_OPEN,
    is_code_fence,
    map_prose,
    merge_field,
)


@pytest.mark.parametrize(("inner", "meant"), [
    (" first_name ", ("first_name", "")),
    (' first_name | default("runner") ', ("first_name", "runner")),
    (" race_name | default('your race') ", ("race_name", "your race")),
    (' first_name | default("") ', ("first_name", "")),
])
def test_a_merge_field_means_a_name_and_a_default(inner, meant):
    assert merge_field(inner) == meant


@pytest.mark.parametrize("inner", [" first name ", " first_name | upper ", " 1st ", ""])
def test_a_merge_field_outside_the_grammar_means_nothing(inner):
    assert merge_field(inner) is None


def test_exercise_links_and_merge_fields_are_found_in_a_line():
    line = "Try [[ glute-bridge ]] today, {{ first_name }}."
    assert EXERCISE_LINK.findall(line) == ["glute-bridge"]
    assert MERGE_FIELD.findall(line) == [" first_name "]


def test_a_goal_block_opens_with_only_and_any_fence_starts_with_three_colons():
    assert ONLY_OPEN.match("::: only marathon, ultra").group(1) == " marathon, ultra"
    assert ONLY_OPEN.match("::: onlyx") is None
    assert BLOCK_FENCE.match(":::") and not BLOCK_FENCE.match(" :::")


def test_code_fences_are_backticks_or_tildes_even_indented():
    assert is_code_fence("```python") and is_code_fence("  ~~~") and not is_code_fence("``x``")


def test_map_prose_leaves_code_spans_and_fenced_code_as_written():
    source = "a [[x]] `[[x]]` b\n```\n[[x]]\n```\n[[x]]"
    seen: list[tuple[str, int]] = []

    def upper(text: str, offset: int) -> str:
        seen.append((text, offset))
        return text.upper()

    assert map_prose(source, upper) == "A [[X]] `[[x]]` B\n```\n[[x]]\n```\n[[X]]"
    assert seen == [("a [[x]] ", 0), (" b", 0), ("[[x]]", 4)]


def test_map_prose_without_code_calls_once_a_line_with_its_offset():
    assert map_prose("one\ntwo", lambda text, offset: f"{offset}:{text}") == "0:one\n1:two"
