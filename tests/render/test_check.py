"""`runletter check`: each check has a post that triggers it and one that does not."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.project import open_project
from publisher.render.check import check_links_online, check_posts

GOOD_FRONT = """---
title: "A clean post"
date: 2026-11-01
topic: strength
audience: [marathon, ultra]
exercises: [clam-shell]
preheader: "A short preheader."
status: ready
---
"""


def write(root: Path, body: str, front: str = GOOD_FRONT, slug: str = "2026-11-01-c") -> str:
    (root / "content/posts" / f"{slug}.md").write_text(front + body, encoding="utf-8")
    return slug


def findings_for(root: Path, body: str, front: str = GOOD_FRONT):
    slug = write(root, body, front)
    project = open_project(root)
    return check_posts(project, [project.post(slug)])


def messages(findings) -> list[str]:
    return [f"{f.line}:{f.level}:{f.message}" for f in findings]


def test_a_clean_post_has_no_findings(sample_root):
    body = "Hi {{ first_name | default(\"runner\") }}, see [[clam-shell]] and " \
           "[the archive](https://runfreely.example.org/exercises/clam-shell/) and " \
           "[a study](https://example.org/study).\n"
    assert findings_for(sample_root, body) == []


def test_an_unknown_exercise_is_an_error_with_its_line(sample_root):
    [finding] = findings_for(sample_root, "Line one.\n\nTry [[clam-shel]].\n")
    assert (finding.level, finding.line) == ("error", 12)
    assert "did you mean 'clam-shell'" in finding.message


def test_a_link_to_an_archive_page_that_will_not_exist_is_an_error(sample_root):
    body = "See [this](https://runfreely.example.org/exercises/clam-shells/).\n"
    [finding] = findings_for(sample_root, body)
    assert finding.level == "error" and finding.line == 10
    assert "will not exist" in finding.message and "exercises/clam-shell/" in finding.message


def test_a_link_to_a_draft_post_is_an_error(sample_root):
    write(sample_root, "Draft.\n", GOOD_FRONT.replace("status: ready", "status: draft"),
          slug="2026-11-02-secret")
    body = "Read [next week's](https://runfreely.example.org/posts/2026-11-02-secret/).\n"
    [finding] = findings_for(sample_root, body)
    assert "draft post '2026-11-02-secret'" in finding.message


@pytest.mark.parametrize("url", ["https://", "http://exa mple.org/x", "www.example.org/x",
                                 "mailto:nobody"])
def test_malformed_external_links_are_errors(sample_root, url):
    [finding] = findings_for(sample_root, f"See [this]({url}).\n")
    assert finding.level == "error" and url.split(" ")[0] in finding.message


def test_an_image_without_alt_text_is_a_warning(sample_root):
    found = findings_for(sample_root, "![](https://example.org/squat.jpg)\n")
    assert messages(found) == ["10:warning:image 'https://example.org/squat.jpg' has no alt "
                               "text; write ![what it shows](…)"]


def test_an_image_file_missing_under_content_is_an_error(sample_root):
    found = findings_for(sample_root, "![a squat](images/squat.jpg)\n")
    assert [f.level for f in found] == ["error"] and "not found" in found[0].message
    (sample_root / "content/images").mkdir()
    (sample_root / "content/images/squat.jpg").write_bytes(b"\xff\xd8")
    assert findings_for(sample_root, "![a squat](images/squat.jpg)\n") == []


def test_a_body_image_outside_content_is_an_error_even_when_the_file_exists(sample_root):
    (sample_root / "subscribers/runletter.db").write_bytes(b"SQLite format 3")
    [finding] = findings_for(sample_root, "![the list](../subscribers/runletter.db)\n")
    assert (finding.level, finding.line, finding.message) == (
        "error", 10, "image '../subscribers/runletter.db' is outside content/")


def test_an_edition_over_gmails_clipping_size_is_a_warning(sample_root):
    body = ("A long paragraph about strides and cadence and hips. " * 40 + "\n\n") * 60
    found = findings_for(sample_root, body)
    assert any("Gmail clips" in f.message and f.level == "warning" for f in found)
    assert not any("Gmail" in f.message for f in findings_for(sample_root, "Short.\n"))


def test_a_long_subject_and_an_empty_preheader_are_warnings(sample_root):
    front = GOOD_FRONT.replace('title: "A clean post"', 'title: "' + "Long " * 20 + '"')
    front = front.replace('preheader: "A short preheader."\n', "")
    found = findings_for(sample_root, "Body.\n", front)
    assert [f.level for f in found] == ["warning", "warning"]
    assert "subject is 99 characters" in found[0].message or "subject" in found[1].message
    assert any("no preheader" in f.message for f in found)


def test_a_goal_block_outside_the_audience_is_a_warning_with_the_fence_line(sample_root):
    found = findings_for(sample_root, "Intro.\n\n::: only comeback\nGentle.\n:::\n")
    assert messages(found) == ["12:warning:'::: only' names 'comeback', which is not in the "
                               "post's audience; no edition will show it"]


def test_a_footer_without_unsubscribe_or_postal_address_is_an_error(sample_root):
    footer = sample_root / "layouts/email/partials/footer.mjml.j2"
    footer.parent.mkdir()
    footer.write_text("<mj-section><mj-column><mj-text>Bye</mj-text></mj-column></mj-section>")
    text = sample_root / "layouts/email/base.txt.j2"
    text.write_text("{{ body_text }}\n")
    found = findings_for(sample_root, "Body.\n")
    errors = [f.message for f in found if f.level == "error"]
    assert any("no unsubscribe link" in m for m in errors)
    assert any("HTML part has no postal address" in m for m in errors)
    assert any("text part has no postal address" in m for m in errors)


def test_check_prints_errors_before_warnings_and_exits_1(sample_root):
    write(sample_root, "![](https://example.org/x.jpg)\n\n"
          "[gone](https://runfreely.example.org/posts/nope/)\n")
    result = CliRunner().invoke(main, ["check", "2026-11-01-c"])
    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert lines[0].startswith("content/posts/2026-11-01-c.md:12: error: link to")
    assert lines[1].startswith("content/posts/2026-11-01-c.md:10: warning: image")


def test_warnings_fail_only_with_strict(sample_root):
    write(sample_root, "![](https://example.org/x.jpg)\n")
    assert CliRunner().invoke(main, ["check", "2026-11-01-c"]).exit_code == 0
    assert CliRunner().invoke(main, ["check", "--strict", "2026-11-01-c"]).exit_code == 1


def test_publish_refuses_a_post_with_an_error(sample_root):
    assert CliRunner().invoke(main, ["subscribers", "import", "subscribers/sample.csv"]
                              ).exit_code == 0
    write(sample_root, "See [this](https://runfreely.example.org/posts/nope/).\n")
    result = CliRunner().invoke(main, ["publish", "2026-11-01-c", "--yes"])
    assert result.exit_code == 1 and "not sent: 1 error found" in result.output
    assert not (sample_root / "outbox").exists()


class _Answers(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 - the stdlib's name
        self.send_response(404 if self.path == "/gone" else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_online_link_check_reports_4xx_as_warnings(sample_root):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        body = f"[ok]({base}/fine) and [gone]({base}/gone)\n"
        write(sample_root, body)
        project = open_project(sample_root)
        post = project.post("2026-11-01-c")
        from publisher.render.check import body_links

        found = check_links_online(post, body_links(project.resolve(post)), timeout=5)
    finally:
        server.shutdown()
        thread.join(5)
    assert messages(found) == [f"10:warning:link '{base}/gone' answers 404"]


def test_mjml_mistakes_in_a_layout_are_warnings_pointing_at_the_layout(sample_root):
    assert CliRunner().invoke(main, ["layouts", "eject",
                                       "email/partials/exercise_card.mjml.j2"]).exit_code == 0
    card = sample_root / "layouts/email/partials/exercise_card.mjml.j2"
    card.write_text(card.read_text().replace('<mj-text font-size="19px"',
                                             '<mj-text font-sise="19px"'))
    found = findings_for(sample_root, "Body.\n")
    mjml = [f for f in found if f.message.startswith("MJML:")]
    assert len(mjml) == 1 and mjml[0].level == "warning"
    assert mjml[0].path == "layouts/email/partials/exercise_card.mjml.j2"
    assert "font-sise" in mjml[0].message and "did you mean 'font-size'" in mjml[0].message
    assert card.read_text().splitlines()[mjml[0].line - 1].count("font-sise") == 1


def test_a_card_image_missing_under_content_is_an_error_at_the_exercises_image_line(
        sample_root):
    exercise = sample_root / "content/exercises/clam-shell.md"
    text = exercise.read_text()
    exercise.write_text(text.replace("\nname:", "\nimage: images/clam.jpg\nname:", 1))
    found = findings_for(sample_root, "Body.\n")
    [error] = [f for f in found if f.level == "error"]
    assert error.path == "content/exercises/clam-shell.md"
    assert exercise.read_text().splitlines()[error.line - 1] == "image: images/clam.jpg"
    (sample_root / "content/images").mkdir()
    (sample_root / "content/images/clam.jpg").write_bytes(b"\xff\xd8")
    assert [f for f in findings_for(sample_root, "Body.\n") if f.level == "error"] == []
