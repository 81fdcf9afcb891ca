"""The `runletter` command: verbs over the pipeline; user mistakes print one line, never trace."""

from __future__ import annotations

import datetime as dt

import pytest

from publisher.content.posts import read_exercise, read_post
from publisher.project import open_project
from tests.helpers.support import assert_user_error, outbox_messages, run
from tests.samples import FIXTURE_SLUG as SLUG


def test_build_exits_0_and_prints_the_counts(project_dir):
    result = run("build")
    assert result.exit_code == 0, result.output
    assert result.output == ("built site/: 1 post, 4 exercises, 5 goals "
                             "(19 files written)\n")
    assert (project_dir / "site" / "posts" / SLUG / "index.html").is_file()


def test_build_with_drafts_includes_the_draft(project_dir):
    result = run("build", "--drafts")
    assert result.exit_code == 0, result.output
    assert "2 posts" in result.output
    assert (project_dir / "site" / "posts" / "2026-01-02-draft" / "index.html").is_file()


def test_a_second_build_reports_no_files_written(project_dir):
    run("build")
    assert run("build").output.endswith("(0 files written)\n")


def test_build_works_from_a_subfolder_of_the_project(project_dir, monkeypatch):
    monkeypatch.chdir(project_dir / "content" / "posts")
    result = run("build")
    assert result.exit_code == 0, result.output
    assert (project_dir / "site" / "index.html").is_file()


def test_render_prints_the_html_of_a_goals_edition(project_dir):
    result = run("render", SLUG, "--goal", "marathon")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!doctype html>")
    assert "Marathon edition" in result.stdout
    assert "3 x 6 each side, heavy" in result.stdout
    assert "Long-distance runners" in result.stdout
    assert "Comeback runners" not in result.stdout


def test_render_with_text_prints_the_plain_text_part(project_dir):
    result = run("render", "everything", "--goal", "comeback", "--text")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Fixture Weekly · Comeback edition\nEverything at once\n")
    assert "* Single-leg deadlift: 2 x 10 each side, bodyweight" in result.stdout
    assert "<" not in result.stdout.replace("<preferences link>", "").replace(
        "<unsubscribe link>", "")


def test_render_without_a_goal_picks_the_posts_first_goal(project_dir):
    result = run("render", SLUG, "--text")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Fixture Weekly · 5K edition\n")


def test_render_with_an_unknown_goal_is_a_one_line_error(project_dir):
    assert_user_error(run("render", SLUG, "--goal", "marathn"),
                      "runletter: error: unknown goal 'marathn' (did you mean 'marathon'?); "
                      "goals are: 5k, marathon, ultra, comeback, general\n1 error\n")


def test_render_for_a_goal_outside_the_audience_is_a_one_line_error(project_dir):
    result = run("render", SLUG, "--goal", "general")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert len(result.stderr.splitlines()) == 2
    assert result.stderr.endswith("the post's audience is 5k, marathon, ultra, comeback; "
                                  "there is no 'general' edition\n1 error\n")


def test_an_error_about_a_post_file_is_printed_under_that_files_name(project_dir):
    assert_user_error(run("render", SLUG, "--goal", "general"),
                      f"content/posts/{SLUG}.md: error: the post's audience is 5k, "
                      "marathon, ultra, comeback; there is no 'general' edition\n1 error\n")


def test_render_of_an_unknown_post_suggests_the_closest(project_dir):
    result = run("render", "2026-01-01-everythin")
    assert_user_error(result, "runletter: error: no post '2026-01-01-everythin' in "
                      "content/posts (did you mean '2026-01-01-everything'?); give a slug "
                      "(file name without .md) or a path\n1 error\n")


def test_a_post_with_an_unknown_exercise_fails_the_build_with_file_and_line(project_dir):
    post = project_dir / "content" / "posts" / f"{SLUG}.md"
    post.write_text(post.read_text().replace(
        "exercises: [single-leg-deadlift,", "exercises: [single-leg-dedlift,"))
    assert_user_error(run("build"),
                      f"content/posts/{SLUG}.md:6: error: unknown exercise "
                      "'single-leg-dedlift' (did you mean 'single-leg-deadlift'?)\n1 error\n")
    assert not (project_dir / "site").exists()


def test_every_problem_in_a_build_is_printed_one_per_line(project_dir):
    post = project_dir / "content" / "posts" / f"{SLUG}.md"
    post.write_text(post.read_text().replace("topic: strength", "topic: strenght")
                    .replace("[[glute-bridge]]", "[[glute-brige]]"))
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"content/posts/{SLUG}.md:4: error: unknown topic 'strenght' (did you mean "
        "'strength'?); topics in runletter.toml are: strength, physio",
        f"content/posts/{SLUG}.md:30: error: unknown exercise 'glute-brige' "
        "(did you mean 'glute-bridge'?)",
        "2 errors",
    ]


def test_an_impossible_date_is_a_one_line_error_not_a_crash(project_dir):
    post = project_dir / "content" / "posts" / f"{SLUG}.md"
    post.write_text(post.read_text().replace("date: 2026-01-01", "date: 2026-13-01"))
    result = run("build")
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stderr.startswith(f"content/posts/{SLUG}.md:3: ")


def test_outside_a_project_the_error_says_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("build")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.startswith("runletter: error: runletter.toml: not found in ")
    assert "run 'runletter init DIR'" in result.stderr


def test_new_post_creates_a_draft_that_loads(project_dir):
    result = run("new", "post", "Tempo Tuesday")
    assert result.exit_code == 0, result.output
    rel = f"content/posts/{dt.date.today().isoformat()}-tempo-tuesday.md"
    assert result.output == f"created {rel}\n"
    post = read_post(project_dir / rel, project_dir)
    assert post.title == "Tempo Tuesday"
    assert post.status == "draft"
    assert post.topic == "strength"
    assert post.date == dt.date.today()


def test_a_new_draft_does_not_break_the_build(project_dir):
    run("new", "post", "Tempo Tuesday")
    result = run("build")
    assert result.exit_code == 0, result.output
    assert "1 post," in result.output


def test_new_exercise_creates_an_exercise_that_loads(project_dir):
    result = run("new", "exercise", "Nordic curl")
    assert result.exit_code == 0, result.output
    assert result.output == "created content/exercises/nordic-curl.md\n"
    path = project_dir / "content" / "exercises" / "nordic-curl.md"
    exercise = read_exercise(path, project_dir)
    assert exercise.name == "Nordic curl"
    assert dict(exercise.dose) == {"default": "3 x 10"}
    assert len(open_project(project_dir).catalogue) == 5


@pytest.mark.parametrize("args, rel", [
    (("new", "post", "Tempo Tuesday"),
     f"content/posts/{dt.date.today().isoformat()}-tempo-tuesday.md"),
    (("new", "exercise", "Nordic curl"), "content/exercises/nordic-curl.md"),
])
def test_creating_the_same_file_twice_is_an_error(project_dir, args, rel):
    assert run(*args).exit_code == 0
    before = (project_dir / rel).read_text()
    assert_user_error(run(*args), f"{rel}: error: already exists; "
                      "pick another title or edit that file\n1 error\n")
    assert (project_dir / rel).read_text() == before


def test_a_title_with_no_letters_or_digits_is_an_error(project_dir):
    assert_user_error(run("new", "post", "!!!"),
                      "runletter: error: cannot make a file name from '!!!'; "
                      "use letters or digits\n1 error\n")


def test_init_makes_a_project_that_builds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("init", "letter")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "letter" / "runletter.toml").is_file()
    assert (tmp_path / "letter" / ".gitignore").is_file()
    monkeypatch.chdir(tmp_path / "letter")
    result = run("build")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("built site/: 1 post, ")
    assert (tmp_path / "letter" / "site" / "index.html").is_file()


def test_init_writes_no_layout_only_a_readme_on_overriding_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("init", "letter").exit_code == 0
    layouts = tmp_path / "letter" / "layouts"
    assert [p.name for p in layouts.rglob("*")] == ["README.md"]
    readme = (layouts / "README.md").read_text()
    assert '{% extends "!builtin/email/base.mjml.j2" %}' in readme
    assert "runletter layouts eject" in readme and "runletter layouts list" in readme


def test_a_newsletter_made_by_init_builds_renders_and_publishes_to_the_outbox(tmp_path,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("init", "letter").exit_code == 0
    root = tmp_path / "letter"
    assert not [*(root / "layouts").rglob("*.j2")]  # the built-ins are all it has to render with
    monkeypatch.chdir(root)
    assert run("build").exit_code == 0
    assert "Welcome to the newsletter." in (root / "site/posts/2026-01-05-welcome/index.html"
                                            ).read_text()
    rendered = run("render", "welcome", "--goal", "marathon")
    assert rendered.exit_code == 0, rendered.output
    assert "Long-distance runners: keep these in your plan" in rendered.stdout
    assert run("subscribers", "import", "subscribers/sample.csv").exit_code == 0
    published = run("publish", "welcome", "--yes")
    assert published.exit_code == 0, published.output
    messages = outbox_messages(root)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == [
        "ana@example.com", "ben@example.com", "chloe@example.org", "dev@example.org"]
    assert all(m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for m in messages)


def test_init_refuses_a_folder_that_is_not_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert_user_error(run("init", "full"), "full: error: folder is not empty; "
                      "pick a new folder name\n1 error\n")


@pytest.mark.parametrize("verb", [
    ("build",), ("render",), ("new", "post"), ("new", "exercise"), ("init",), ("publish",),
    ("subscribers", "import"), ("audience",), ("report",),
])
def test_help_works_on_every_verb(verb):
    result = run(*verb, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: main {' '.join(verb)}")
    assert "--help" in result.output


def test_the_top_level_help_lists_the_verbs():
    result = run("--help")
    assert result.exit_code == 0
    for verb in ("build", "render", "new", "init", "publish", "subscribers", "audience",
                 "report"):
        assert f"  {verb} " in result.output


def test_a_misspelled_provider_variable_is_a_warning_naming_the_settings(sample_root,
                                                                         monkeypatch):
    monkeypatch.setenv("RUNLETTER_SMTP_STARTTLS", "false")
    result = run("publish", "2026-09-15-motor-unit-activation", "--provider", "smtp",
                 "--dry-run")
    assert result.exit_code == 0, result.output
    [line] = [x for x in result.stderr.splitlines() if "RUNLETTER_SMTP_STARTTLS" in x]
    assert line.startswith("warning: RUNLETTER_SMTP_STARTTLS ")
    assert "RUNLETTER_SMTP_SECURITY" in line and "RUNLETTER_SMTP_VERIFY_TLS" in line


def test_the_webhook_variables_of_serve_are_not_taken_for_misspellings(sample_root,
                                                                       monkeypatch):
    monkeypatch.setenv("RUNLETTER_POSTMARK_WEBHOOK_PASSWORD", "hook-password")
    monkeypatch.setenv("RUNLETTER_POSTMARK_SERVER_TOKEN", "server-token")
    result = run("publish", "2026-09-15-motor-unit-activation", "--provider", "postmark",
                 "--dry-run")
    assert result.exit_code == 0, result.output
    assert "RUNLETTER_POSTMARK" not in result.stderr


def test_subscribers_add_refuses_an_address_with_specials_in_one_line(project_dir):
    assert_user_error(run("subscribers", "add", "angle<x>@example.org"),
                      "runletter: error: invalid email 'angle<x>@example.org': the part "
                      "before the '@' contains '<', which mail providers refuse\n1 error\n")
    assert run("subscribers", "export").stdout.count("\n") == 1  # the header only


@pytest.mark.parametrize("verb", [["check"], ["build"], ["render", SLUG], ["publish", SLUG,
                                                                            "--yes"]])
def test_a_card_image_outside_content_stops_every_command_with_one_line(project_dir, verb,
                                                                       monkeypatch):
    monkeypatch.setenv("RUNLETTER_SECRET", "test-secret-0123456789abcdef")
    (project_dir / ".runletter-secret").write_text("s3cret")
    exercise = project_dir / "content" / "exercises" / "single-leg-deadlift.md"
    exercise.write_text(exercise.read_text().replace(
        "video:", 'image: "../.runletter-secret"\nvideo:'))
    assert_user_error(run(*verb), "content/exercises/single-leg-deadlift.md:16: error: image "
                      "'../.runletter-secret' is outside content/\n1 error\n")
    assert not (project_dir / "site").exists()


# --- one voice: every verb speaks the same way (issue 12) ----------------------------------

def test_an_error_in_a_post_is_path_line_level_message_then_a_summary_line(project_dir):
    post = project_dir / "content" / "posts" / f"{SLUG}.md"
    post.write_text(post.read_text().replace("topic: strength", "topic: strenght"))
    assert_user_error(run("render", SLUG),
                      f"content/posts/{SLUG}.md:4: error: unknown topic 'strenght' (did you "
                      "mean 'strength'?); topics in runletter.toml are: strength, physio\n"
                      "1 error\n")


def test_a_missing_topic_is_reported_at_the_closing_line_of_the_front_matter(project_dir):
    post = project_dir / "content" / "posts" / f"{SLUG}.md"
    post.write_text(post.read_text().replace("topic: strength\n", ""))
    assert_user_error(run("build"), f"content/posts/{SLUG}.md:10: error: missing required "
                      "key 'topic'\n1 error\n")


def test_check_counts_one_post_and_one_error_in_the_singular(project_dir):
    result = run("check", SLUG)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"content/posts/{SLUG}.md:22: error: link to 'https://fixture.example.org/posts/other/' "
        "will not exist in the archive",
        "checked 1 post: 1 error",
    ]


def test_check_counts_posts_errors_and_warnings_in_the_plural(project_dir):
    result = run("check")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "checked 2 posts: 1 error, 1 warning"


def test_render_text_shows_placeholders_for_the_readers_own_links(project_dir):
    result = run("render", SLUG, "--goal", "comeback", "--text")
    assert result.exit_code == 0, result.output
    assert ("Change your goal or pause: <preferences link>\n"
            "Unsubscribe: <unsubscribe link>\n") in result.stdout


@pytest.mark.parametrize("verb", ["render", "check", "publish", "report"])
def test_an_unknown_slug_without_its_date_suggests_the_closest_post(project_dir, verb):
    assert_user_error(run(verb, "everythin"),
                      "runletter: error: no post 'everythin' in content/posts (did you mean "
                      "'everything'?); give a slug (file name without .md) or a path\n"
                      "1 error\n")


def test_init_names_the_next_steps_including_importing_readers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("init", "letter")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "created a newsletter in letter/ — next:\n"
        "  cd letter\n"
        "  runletter build                                      # the web archive in site/\n"
        "  runletter subscribers import subscribers/sample.csv  # your readers, from a CSV\n"
        "  runletter publish welcome --dry-run                  # who would get which edition\n")


def add_readers(*goals: str) -> None:
    for i, goal in enumerate(goals):
        assert run("subscribers", "add", f"reader{i}@example.org", "--goal", goal
                   ).exit_code == 0


def test_audience_lists_segments_in_goals_order_with_a_header_and_general(project_dir):
    add_readers("comeback", "general", "5k", "comeback")
    result = run("audience")
    assert result.exit_code == 0, result.output
    assert result.output == ("segment   active readers\n"
                             "5k                     1\n"
                             "marathon               0\n"
                             "ultra                  0\n"
                             "comeback               2\n"
                             "general                1\n"
                             "total                  4\n")
