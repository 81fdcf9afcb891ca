"""Front matter is checked for shape; every error names the file and the offending key's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.content.posts import (
    find_post,
    load_catalogue,
    load_goals,
    load_posts,
    read_exercise,
    read_post,
)
from publisher.errors import RunletterError
from tests.samples import FIXTURE
from tests.samples import NEW_POST as POST

EXERCISE = "content/exercises/test-move.md"

GOOD_FRONT = """\
title: "Test post"
date: 2026-01-01
topic: strength
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def post_file(root: Path, front: str, body: str = "Body.\n") -> Path:
    return write(root, POST, f"---\n{front}---\n{body}")


def post_errors(root: Path, front: str | None = None, *, text: str | None = None) -> list[str]:
    path = write(root, POST, text) if text is not None else post_file(root, front or "")
    with pytest.raises(RunletterError) as caught:
        read_post(path, root)
    return [str(f) for f in caught.value.findings]


def exercise_errors(root: Path, front: str) -> list[str]:
    path = write(root, EXERCISE, f"---\n{front}---\nHow to.\n")
    with pytest.raises(RunletterError) as caught:
        read_exercise(path, root)
    return [str(f) for f in caught.value.findings]


# --- posts ---------------------------------------------------------------------------------

def test_a_good_post_loads_with_subject_defaulting_to_title(tmp_path):
    post = read_post(post_file(tmp_path, GOOD_FRONT, "\n\nHello.\n"), tmp_path)
    assert post.slug == "2026-01-01-test"
    assert post.title == "Test post"
    assert post.subject == "Test post"
    assert str(post.date) == "2026-01-01"
    assert post.status == "ready"
    assert post.audience is None
    assert post.body == "Hello.\n"
    assert post.source.body_line == 8  # '---', 3 keys, '---', two blank lines, Hello.


def test_an_unknown_key_names_file_line_and_the_closest_key(tmp_path):
    [error] = post_errors(tmp_path, GOOD_FRONT + "preheadr: Hi\n")
    assert error.startswith(f"{POST}:5: unknown front matter key 'preheadr' "
                            "(did you mean 'preheader'?); allowed keys: title, date")


def test_a_missing_title_is_an_error_naming_the_file(tmp_path):
    errors = post_errors(tmp_path, 'date: 2026-01-01\ntopic: strength\n')
    assert [e.removeprefix(f"{POST}").lstrip(":0123456789") for e in errors] == [
        " missing required key 'title'"
    ]
    assert all(e.startswith(POST) for e in errors)


def test_a_date_that_is_not_a_date_names_its_line(tmp_path):
    assert post_errors(tmp_path, 'title: T\ntopic: strength\ndate: next tuesday\n') == [
        f"{POST}:4: date 'next tuesday' is not a date; write it as YYYY-MM-DD"
    ]


def test_an_impossible_calendar_date_is_an_error_with_its_line_not_a_crash(tmp_path):
    assert post_errors(tmp_path, 'title: T\ntopic: strength\ndate: 2026-13-01\n') == [
        f"{POST}:4: date '2026-13-01' is not a date; write it as YYYY-MM-DD"
    ]


def test_a_missing_date_is_an_error(tmp_path):
    [error] = post_errors(tmp_path, 'title: T\ntopic: strength\n')
    assert "missing required key 'date' (YYYY-MM-DD)" in error
    assert error.startswith(POST)


def test_a_bad_status_names_its_line_and_suggests_the_closest(tmp_path):
    assert post_errors(tmp_path, GOOD_FRONT + "status: redy\n") == [
        f"{POST}:5: 'status' is 'redy'; use one of: draft, ready (did you mean 'ready'?)"
    ]


def test_invalid_yaml_names_the_line_of_the_problem(tmp_path):
    [error] = post_errors(tmp_path, 'title: T\ndate: 2026-01-01\ntopic: strength: more\n')
    assert error.startswith(f"{POST}:4: front matter is not valid YAML: ")
    assert "mapping values are not allowed" in error


def test_a_file_without_front_matter_says_how_to_add_it(tmp_path):
    [error] = post_errors(tmp_path, text="Just some text.\n")
    assert error.startswith(f"{POST}:1: no front matter: start the file with a '---' line")


def test_unclosed_front_matter_says_to_close_it(tmp_path):
    assert post_errors(tmp_path, text="---\ntitle: T\ndate: 2026-01-01\n") == [
        f"{POST}:1: front matter is not closed: add a '---' line after the last key"
    ]


def test_front_matter_that_is_not_a_mapping_is_an_error(tmp_path):
    assert post_errors(tmp_path, text="---\n- a\n- b\n---\nBody\n") == [
        f"{POST}:2: front matter must be 'key: value' lines"
    ]


def test_each_list_item_gets_its_own_line(tmp_path):
    front = GOOD_FRONT + "exercises:\n  - glute-bridge\n  - single-leg-balance\n  - Bad Slug\n"
    assert post_errors(tmp_path, front) == [
        f"{POST}:8: 'Bad Slug' in 'exercises' is not a slug "
        "(lowercase letters, digits and hyphens)"
    ]


def test_an_empty_audience_is_refused(tmp_path):
    assert post_errors(tmp_path, GOOD_FRONT + "audience: []\n") == [
        f"{POST}:5: 'audience' is empty; list goals, or remove the key to send to everyone"
    ]


def test_a_title_given_as_a_list_must_be_text(tmp_path):
    assert post_errors(tmp_path, 'title: [a, b]\ndate: 2026-01-01\ntopic: strength\n') == [
        f"{POST}:2: 'title' must be text"
    ]


@pytest.mark.parametrize("escape", ["\\L", "\\P", "\\N", "\\v", "\\f"])
def test_a_subject_with_a_unicode_line_separator_is_an_error_with_its_line(tmp_path, escape):
    front = GOOD_FRONT + f'subject: "Hip Drive{escape}Bcc: everyone@example.com"\n'
    assert post_errors(tmp_path, front) == [
        f"{POST}:5: 'subject' must be on one line (it goes in the email's header)"]


def test_a_file_name_that_is_not_a_slug_is_an_error(tmp_path):
    path = write(tmp_path, "content/posts/Big Post.md", f"---\n{GOOD_FRONT}---\nBody\n")
    with pytest.raises(RunletterError) as caught:
        read_post(path, tmp_path)
    assert [str(f) for f in caught.value.findings] == [
        "content/posts/Big Post.md: file name 'Big Post.md' is not a valid post slug; "
        "rename it with lowercase letters, digits and hyphens"
    ]


def test_every_problem_in_a_file_is_reported_at_once(tmp_path):
    errors = post_errors(tmp_path, GOOD_FRONT + "status: redy\nsumary: x\n")
    assert [e.split(": ", 1)[0] for e in errors] == [f"{POST}:6", f"{POST}:5"]


def test_windows_line_endings_and_a_byte_order_mark_are_accepted(tmp_path):
    path = tmp_path / POST
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xef\xbb\xbf---\r\ntitle: T\r\ndate: 2026-01-01\r\ntopic: strength\r\n"
                     b"---\r\nHello.\r\n")
    post = read_post(path, tmp_path)
    assert post.title == "T"
    assert post.body == "Hello.\n"


# --- exercises -----------------------------------------------------------------------------

def test_an_exercise_loads_with_its_doses(tmp_path):
    path = write(tmp_path, EXERCISE, '---\nname: "Test move"\ndose:\n  default: "3 x 8"\n'
                 '  marathon: 5\n---\nHow to.\n')
    exercise = read_exercise(path, tmp_path)
    assert dict(exercise.dose) == {"default": "3 x 8", "marathon": "5"}
    assert exercise.dose_for("marathon") == "5"
    assert exercise.dose_for("5k") == "3 x 8"
    assert exercise.level == "beginner"


def test_an_exercise_dose_that_is_not_a_table_names_its_line(tmp_path):
    [error] = exercise_errors(tmp_path, 'name: "Test move"\nlevel: beginner\ndose: "3 x 8"\n')
    assert error.startswith(f"{EXERCISE}:4: 'dose' must be a table of goal: text")


def test_an_exercise_dose_value_that_is_a_list_names_the_goal_line(tmp_path):
    front = 'name: "Test move"\ndose:\n  default: "3 x 8"\n  marathon: [3, 6]\n'
    assert exercise_errors(tmp_path, front) == [f"{EXERCISE}:5: dose for 'marathon' must be text"]


def test_an_exercise_without_a_name_is_an_error(tmp_path):
    [error] = exercise_errors(tmp_path, 'level: beginner\n')
    assert "missing required key 'name'" in error
    assert error.startswith(EXERCISE)


def test_an_exercise_level_typo_gets_a_suggestion(tmp_path):
    assert exercise_errors(tmp_path, 'name: "Test move"\nlevel: advnced\n') == [
        f"{EXERCISE}:3: 'level' is 'advnced'; use one of: beginner, intermediate, advanced "
        "(did you mean 'advanced'?)"
    ]


def test_the_fixture_catalogue_loads_every_exercise():
    catalogue = load_catalogue(FIXTURE / "content", FIXTURE)
    assert sorted(catalogue.exercises) == ["airplane-split-squat", "glute-bridge",
                                           "single-leg-balance", "single-leg-deadlift"]
    sld = catalogue.get("single-leg-deadlift")
    assert sld.progressions == ("airplane-split-squat",)
    assert sld.regressions == ("single-leg-balance",)
    assert sld.video == "https://videos.example.org/fixture/single-leg-deadlift"
    assert sld.source.line("dose.comeback") == 10


def test_errors_from_several_files_are_gathered(tmp_path):
    write(tmp_path, "content/posts/2026-01-01-a.md", f"---\n{GOOD_FRONT}status: redy\n---\nA\n")
    write(tmp_path, "content/posts/2026-01-02-b.md", "no front matter\n")
    write(tmp_path, "content/posts/README.md", "ignored\n")
    with pytest.raises(RunletterError) as caught:
        load_posts(tmp_path / "content", tmp_path)
    assert [f.path for f in caught.value.findings] == ["content/posts/2026-01-01-a.md",
                                                       "content/posts/2026-01-02-b.md"]


def test_posts_load_newest_first_drafts_included():
    posts = load_posts(FIXTURE / "content", FIXTURE)
    assert [(p.slug, p.status) for p in posts] == [("2026-01-02-draft", "draft"),
                                                   ("2026-01-01-everything", "ready")]


def test_goals_keep_the_authors_order():
    goals = load_goals(FIXTURE / "subscribers" / "goals.toml", FIXTURE)
    assert goals.slugs == ("5k", "marathon", "ultra", "comeback", "general")
    assert goals.get("5k").label == "5K"


def test_goals_get_a_general_fallback_when_the_file_has_none(tmp_path):
    path = write(tmp_path, "subscribers/goals.toml", '[goals.5k]\nlabel = "5K"\n')
    assert load_goals(path, tmp_path).slugs == ("5k", "general")


def test_a_goal_with_an_unknown_key_gets_a_suggestion(tmp_path):
    path = write(tmp_path, "subscribers/goals.toml", '[goals.5k]\nlabel = "5K"\nlabl = "x"\n')
    with pytest.raises(RunletterError) as caught:
        load_goals(path, tmp_path)
    assert [str(f) for f in caught.value.findings] == [
        "subscribers/goals.toml:3: [goals.5k] unknown key 'labl' (did you mean 'label'?)"
    ]


# --- find_post -----------------------------------------------------------------------------

CONTENT = FIXTURE / "content"
EVERYTHING = CONTENT / "posts" / "2026-01-01-everything.md"


def test_find_post_by_slug():
    assert find_post(CONTENT, FIXTURE, "2026-01-01-everything") == EVERYTHING


def test_find_post_by_slug_without_its_date():
    assert find_post(CONTENT, FIXTURE, "everything") == EVERYTHING


def test_find_post_by_path_relative_to_the_project():
    found = find_post(CONTENT, FIXTURE, "content/posts/2026-01-01-everything.md")
    assert found == EVERYTHING.resolve()


def test_find_post_by_absolute_path():
    assert find_post(CONTENT, FIXTURE, str(EVERYTHING)) == EVERYTHING.resolve()


def test_find_post_with_an_unknown_slug_suggests_the_closest():
    with pytest.raises(RunletterError) as caught:
        find_post(CONTENT, FIXTURE, "2026-01-01-everythng")
    assert str(caught.value) == (
        "runletter: no post '2026-01-01-everythng' in content/posts "
        "(did you mean '2026-01-01-everything'?); give a slug (file name without .md) or a path")


def test_find_post_with_nothing_close_gives_no_suggestion():
    with pytest.raises(RunletterError) as caught:
        find_post(CONTENT, FIXTURE, "zzz")
    assert "did you mean" not in str(caught.value)
    assert "no post 'zzz' in content/posts" in str(caught.value)


# --- media paths ---------------------------------------------------------------------------

def media_errors(root: Path, line: str) -> list[str]:
    """Load a catalogue whose one exercise has this image/video line; its error lines."""
    write(root, EXERCISE, f'---\nname: "Test move"\n{line}\n---\nHow to.\n')
    with pytest.raises(RunletterError) as caught:
        load_catalogue(root / "content", root)
    return [str(f) for f in caught.value.findings]


@pytest.mark.parametrize("ref", ["../.runletter-secret", "../subscribers/runletter.db",
                                 "../../x.png", "content/../../x.png", "img/../../x.png",
                                 "/etc/passwd", "..\\x.png"])
def test_an_image_path_outside_content_is_an_error_on_its_line(tmp_path, ref):
    (tmp_path / ".runletter-secret").write_text("s3cret")
    assert media_errors(tmp_path, f"image: '{ref}'") == [
        f"{EXERCISE}:3: image '{ref}' is outside content/"]


def test_a_video_path_outside_content_is_an_error_too(tmp_path):
    assert media_errors(tmp_path, "video: ../clip.mp4") == [
        f"{EXERCISE}:3: video '../clip.mp4' is outside content/"]


def test_an_image_symlinked_out_of_content_is_outside_content(tmp_path):
    (tmp_path / "secret.txt").write_text("s3cret")
    (tmp_path / "content" / "img").mkdir(parents=True)
    (tmp_path / "content" / "img" / "x.png").symlink_to(tmp_path / "secret.txt")
    assert media_errors(tmp_path, "image: img/x.png") == [
        f"{EXERCISE}:3: image 'img/x.png' is outside content/"]


def test_an_image_under_a_folder_symlinked_out_of_content_is_outside_content(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.png").write_bytes(b"\x89PNG")
    (tmp_path / "content").mkdir()
    (tmp_path / "content" / "img").symlink_to(tmp_path / "elsewhere")
    assert media_errors(tmp_path, "image: img/x.png") == [
        f"{EXERCISE}:3: image 'img/x.png' is outside content/"]


def test_a_path_that_climbs_back_up_out_of_a_symlinked_folder_is_outside_content(tmp_path):
    # 'img/..' is content/ to the eye, but the system climbs from where img really points.
    (tmp_path / "elsewhere" / "deeper").mkdir(parents=True)
    (tmp_path / "elsewhere" / "secret.txt").write_text("s3cret")
    (tmp_path / "content").mkdir()
    (tmp_path / "content" / "img").symlink_to(tmp_path / "elsewhere" / "deeper")
    assert media_errors(tmp_path, "image: img/../secret.txt") == [
        f"{EXERCISE}:3: image 'img/../secret.txt' is outside content/"]


def test_a_symlink_with_a_backslash_in_its_name_pointing_out_is_outside_content(tmp_path):
    (tmp_path / "secret.txt").write_text("s3cret")
    (tmp_path / "content").mkdir()
    (tmp_path / "content" / "img\\x.png").symlink_to(tmp_path / "secret.txt")
    assert media_errors(tmp_path, "image: 'img\\x.png'") == [
        f"{EXERCISE}:3: image 'img\\x.png' is outside content/"]


def test_a_media_reference_with_another_scheme_is_neither_a_url_nor_a_path(tmp_path):
    assert media_errors(tmp_path, "video: 'javascript:alert(1)'") == [
        f"{EXERCISE}:3: video 'javascript:alert(1)' is not an http(s) URL or a path "
        "under content/"]


@pytest.mark.parametrize("line", ["image: img/x.png", "image: content/img/x.png",
                                  "image: img/../img/x.png", "image: img/alias.png",
                                  "video: https://example.org/x.mp4", "image: img/missing.png"])
def test_media_under_content_and_full_urls_load(tmp_path, line):
    (tmp_path / "content" / "img").mkdir(parents=True)
    (tmp_path / "content" / "img" / "x.png").write_bytes(b"\x89PNG")
    (tmp_path / "content" / "img" / "alias.png").symlink_to(tmp_path / "content/img/x.png")
    write(tmp_path, EXERCISE, f'---\nname: "Test move"\n{line}\n---\nHow to.\n')
    assert list(load_catalogue(tmp_path / "content", tmp_path).exercises) == ["test-move"]


def test_a_control_character_in_a_front_matter_value_is_an_error_on_its_line(tmp_path):
    front = 'name: "Test move"\ncues:\n  - "Brace \\e[1m hard"\n'
    assert exercise_errors(tmp_path, front) == [
        f"{EXERCISE}:4: 'cues' holds the control character U+001B, which email and feeds "
        "cannot carry; delete it"]


def test_a_control_character_in_the_body_is_an_error_on_its_line(tmp_path):
    path = post_file(tmp_path, GOOD_FRONT, "First line.\n\nA form\x0cfeed.\n")
    with pytest.raises(RunletterError) as caught:
        read_post(path, tmp_path)
    assert [str(f) for f in caught.value.findings] == [
        f"{POST}:8: the control character U+000C cannot go in an email or a feed; delete it"]


def test_a_goal_without_a_label_is_an_error_on_its_tables_line(tmp_path):
    path = write(tmp_path, "subscribers/goals.toml",
                 '[goals.5k]\nlabel = "5K"\n\n[goals.half]\ndescription = "21.1 km"\n')
    with pytest.raises(RunletterError) as caught:
        load_goals(path, tmp_path)
    assert [str(f) for f in caught.value.findings] == [
        'subscribers/goals.toml:4: [goals.half] needs a label, e.g. label = "Half"'
    ]
