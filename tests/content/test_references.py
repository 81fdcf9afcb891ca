"""Every reference a post makes is checked before anything renders, each miss with its line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from publisher.content.posts import load_catalogue, load_goals, read_post
from publisher.content.references import check_catalogue, resolve
from publisher.errors import RunletterError
from publisher.project import open_project
from tests.samples import FIXTURE
from tests.samples import NEW_POST as POST

TOPICS = ("strength", "physio")
FRONT = 'title: "Test"\ndate: 2026-01-01\ntopic: strength\n'  # lines 2-4; body starts on 6


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(FIXTURE / "content", FIXTURE)


@pytest.fixture(scope="module")
def goals():
    return load_goals(FIXTURE / "subscribers" / "goals.toml", FIXTURE)


def make_post(root: Path, front: str = FRONT, body: str = "Hello.\n"):
    path = root / POST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\n{front}---\n{body}", encoding="utf-8")
    return read_post(path, root)


def errors(post, catalogue, goals) -> list[str]:
    with pytest.raises(RunletterError) as caught:
        resolve(post, catalogue, goals, TOPICS)
    return [str(f) for f in caught.value.findings]


def test_the_fixture_post_resolves_with_its_audience_exercises_and_blocks(catalogue, goals):
    post = read_post(FIXTURE / "content/posts/2026-01-01-everything.md", FIXTURE)
    resolved = resolve(post, catalogue, goals, TOPICS)
    assert [g.slug for g in resolved.audience] == ["5k", "marathon", "ultra", "comeback"]
    assert [e.slug for e in resolved.exercises] == ["single-leg-deadlift", "single-leg-balance",
                                                    "airplane-split-squat"]
    assert [(b.goals, b.line, b.opened) for b in resolved.blocks] == [
        (None, 12, 0),
        (("marathon", "ultra"), 26, 25),
        (("comeback",), 30, 29),
        (None, 33, 0),
    ]


def test_a_post_without_audience_goes_to_every_goal_including_general(tmp_path, catalogue,
                                                                       goals):
    resolved = resolve(make_post(tmp_path), catalogue, goals, TOPICS)
    assert [g.slug for g in resolved.audience] == ["5k", "marathon", "ultra", "comeback",
                                                   "general"]


def test_an_unknown_exercise_in_the_list_names_its_line_and_the_closest_slug(tmp_path,
                                                                            catalogue, goals):
    post = make_post(tmp_path, FRONT + "exercises:\n  - glute-bridge\n  - single-leg-dedlift\n")
    assert errors(post, catalogue, goals) == [
        f"{POST}:7: unknown exercise 'single-leg-dedlift' (did you mean 'single-leg-deadlift'?)"
    ]


def test_an_unknown_exercise_in_a_flow_list_names_the_key_line(tmp_path, catalogue, goals):
    post = make_post(tmp_path, FRONT + "exercises: [glute-bridge, single-leg-dedlift]\n")
    assert errors(post, catalogue, goals) == [
        f"{POST}:5: unknown exercise 'single-leg-dedlift' (did you mean 'single-leg-deadlift'?)"
    ]


def test_an_unknown_inline_exercise_link_names_its_body_line(tmp_path, catalogue, goals):
    post = make_post(tmp_path, body="Hello.\n\nThen do [[glute-brige]] twice.\n")
    assert errors(post, catalogue, goals) == [
        f"{POST}:8: unknown exercise 'glute-brige' (did you mean 'glute-bridge'?)"
    ]


def test_inline_link_lines_stay_right_after_goal_blocks(tmp_path, catalogue, goals):
    body = ("Hello.\n\n::: only marathon\nLong.\n\n\n:::\n\n"
            "::: only comeback\nSee [[glute-bridge]] and [[clam-shel]].\n:::\n")
    post = make_post(tmp_path, body=body)
    assert errors(post, catalogue, goals) == [f"{POST}:15: unknown exercise 'clam-shel'"]


def test_an_unknown_topic_names_its_line_and_suggests(tmp_path, catalogue, goals):
    post = make_post(tmp_path, FRONT.replace("topic: strength", "topic: strenght"))
    assert errors(post, catalogue, goals) == [
        f"{POST}:4: unknown topic 'strenght' (did you mean 'strength'?); "
        "topics in runletter.toml are: strength, physio"
    ]


def test_an_unknown_goal_in_the_audience_names_its_line(tmp_path, catalogue, goals):
    post = make_post(tmp_path, FRONT + "audience:\n  - 5k\n  - marathn\n")
    assert errors(post, catalogue, goals) == [
        f"{POST}:7: unknown goal 'marathn' in audience (did you mean 'marathon'?); "
        "goals are: 5k, marathon, ultra, comeback, general"
    ]


def test_an_unknown_goal_in_an_only_fence_names_the_fence_line(tmp_path, catalogue, goals):
    post = make_post(tmp_path, body="Hello.\n\n::: only marathon ultar\nLong.\n:::\n")
    assert errors(post, catalogue, goals) == [
        f"{POST}:8: unknown goal 'ultar' in '::: only' block (did you mean 'ultra'?); "
        "goals are: 5k, marathon, ultra, comeback, general"
    ]


def test_an_only_fence_naming_no_goal_is_an_error(tmp_path, catalogue, goals):
    post = make_post(tmp_path, body="Hello.\n::: only\nLong.\n:::\n")
    assert errors(post, catalogue, goals) == [
        f"{POST}:7: '::: only' names no goal; write '::: only marathon ultra'"
    ]


def test_an_unclosed_only_block_names_the_line_it_opened_on(tmp_path, catalogue, goals):
    post = make_post(tmp_path, body="Hello.\n\n::: only marathon\nLong.\n\nMore.\n")
    assert errors(post, catalogue, goals) == [
        f"{POST}:8: '::: only' block is never closed; add a ':::' line after it"
    ]


def test_a_nested_only_block_is_an_error_on_the_inner_fence(tmp_path, catalogue, goals):
    body = "Hello.\n::: only marathon\nLong.\n::: only ultra\nLonger.\n:::\n"
    post = make_post(tmp_path, body=body)
    assert errors(post, catalogue, goals) == [
        f"{POST}:9: '::: only' block opened inside another (opened on line 7); "
        "close it with ':::' first"
    ]


def test_a_stray_closing_fence_is_an_error(tmp_path, catalogue, goals):
    post = make_post(tmp_path, body="Hello.\n\n:::\n")
    assert errors(post, catalogue, goals) == [
        f"{POST}:8: ':::' closes no block; open one with '::: only GOAL'"
    ]


def test_an_unknown_kind_of_block_is_an_error(tmp_path, catalogue, goals):
    post = make_post(tmp_path, body="Hello.\n::: note\nx\n:::\n")
    found = errors(post, catalogue, goals)
    assert found[0] == (f"{POST}:7: unknown block '::: note'; "
                        "the only block is '::: only GOAL…'")


def test_fences_inside_a_code_block_are_left_alone(tmp_path, catalogue, goals):
    body = "Hello.\n\n```\n::: only nobody\n:::\n```\n"
    resolved = resolve(make_post(tmp_path, body=body), catalogue, goals, TOPICS)
    assert [b.goals for b in resolved.blocks] == [None]


def test_an_unknown_merge_field_names_its_line_and_the_known_fields(tmp_path, catalogue, goals):
    post = make_post(tmp_path, body="Hello.\n\nHi {{ frist_name }}!\n")
    assert errors(post, catalogue, goals) == [
        f"{POST}:8: unknown merge field 'frist_name' (did you mean 'first_name'?); "
        "fields are: first_name, race_name, race_date, weeks_to_race"
    ]


def test_a_merge_field_with_an_unsupported_filter_is_not_understood(tmp_path, catalogue, goals):
    post = make_post(tmp_path, body="Hi {{ first_name | upper }}!\n")
    assert errors(post, catalogue, goals) == [
        f"{POST}:6: merge field '{{{{ first_name | upper }}}}' is not understood; "
        'write {{ first_name | default("runner") }}'
    ]


def test_every_problem_is_reported_at_once(tmp_path, catalogue, goals):
    post = make_post(tmp_path, FRONT.replace("strength", "physi") + "exercises: [hip-trust]\n",
                     body="Hello [[nope]].\n")
    found = errors(post, catalogue, goals)
    assert [f.split(": ", 1)[0] for f in found] == [f"{POST}:4", f"{POST}:5", f"{POST}:7"]
    assert "unknown topic 'physi'" in found[0]
    assert "unknown exercise 'hip-trust'" in found[1]
    assert "unknown exercise 'nope'" in found[2]


# --- the catalogue -------------------------------------------------------------------------

def catalogue_findings(tmp_path: Path, extra: str) -> list[str]:
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    (root / "content/exercises/test-move.md").write_text(extra, encoding="utf-8")
    cat = load_catalogue(root / "content", root)
    goals = load_goals(root / "subscribers/goals.toml", root)
    return [str(f) for f in check_catalogue(cat, goals)]


def test_the_fixture_catalogue_has_no_problems(catalogue, goals):
    assert check_catalogue(catalogue, goals) == []


def test_an_unknown_progression_slug_names_its_line(tmp_path):
    text = ('---\nname: "Test move"\nprogressions:\n  - glute-bridge\n  - single-leg-dedlift\n'
            '---\nHow.\n')
    assert catalogue_findings(tmp_path, text) == [
        "content/exercises/test-move.md:5: unknown progression slug 'single-leg-dedlift' "
        "(did you mean 'single-leg-deadlift'?)"
    ]


def test_an_unknown_regression_slug_names_its_line(tmp_path):
    text = '---\nname: "Test move"\nregressions: [glute-brdge]\n---\nHow.\n'
    assert catalogue_findings(tmp_path, text) == [
        "content/exercises/test-move.md:3: unknown regression slug 'glute-brdge' "
        "(did you mean 'glute-bridge'?)"
    ]


def test_an_exercise_listing_itself_is_an_error(tmp_path):
    text = '---\nname: "Test move"\nprogressions: [test-move]\n---\nHow.\n'
    assert catalogue_findings(tmp_path, text) == [
        "content/exercises/test-move.md:3: 'test-move' lists itself in progressions"
    ]


def test_a_dose_for_an_unknown_goal_names_its_line(tmp_path):
    text = '---\nname: "Test move"\ndose:\n  default: "3 x 8"\n  marathn: "3 x 6"\n---\nHow.\n'
    assert catalogue_findings(tmp_path, text) == [
        "content/exercises/test-move.md:5: dose for unknown goal 'marathn' "
        "(did you mean 'marathon'?)"
    ]


def test_opening_a_project_reports_catalogue_problems(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    (root / "content/exercises/test-move.md").write_text(
        '---\nname: "Test move"\ndose: {default: "1", marathn: "2"}\n---\nHow.\n')
    with pytest.raises(RunletterError) as caught:
        open_project(root)
    assert [str(f) for f in caught.value.findings] == [
        "content/exercises/test-move.md:3: dose for unknown goal 'marathn' "
        "(did you mean 'marathon'?)"
    ]
