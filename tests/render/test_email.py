"""One edition per goal from one resolved post: goal blocks, doses, UTM links, merge slots."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest

import publisher.render.markdown
from publisher.model import Slot
from publisher.project import open_project
from publisher.render.email import EmailRenderer
from tests.helpers.support import with_exercise_name
from tests.samples import FIXTURE, HTML_NAME
from tests.samples import FIXTURE_SLUG as SLUG

BASE = "https://fixture.example.org"
ADDRESS = "Fixture Weekly, 1 Test Lane, Testville, TS 00001, USA"
LONG_BLOCK = "Long-distance runners: keep the deadlift heavy right through your build."
COMEBACK_BLOCK = "Comeback runners: use"


class Links(HTMLParser):
    """Collects (href, text) for every <a> in a document."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._open: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open.append([dict(attrs).get("href") or "", ""])

    def handle_data(self, data):
        for link in self._open:
            link[1] += data

    def handle_endtag(self, tag):
        if tag == "a" and self._open:
            href, text = self._open.pop()
            self.links.append((href, " ".join(text.split())))


def links_of(html: str) -> list[tuple[str, str]]:
    parser = Links()
    parser.feed(html)
    return parser.links


def href_for(html: str, text: str) -> str:
    hrefs = [h for h, t in links_of(html) if t == text]
    assert hrefs, f"no link with text {text!r}"
    return hrefs[0]


def utm_of(goal: str) -> dict[str, list[str]]:
    return {"utm_source": ["runletter"], "utm_medium": ["email"], "utm_campaign": [SLUG],
            "utm_content": [goal]}


@pytest.fixture(scope="module")
def project():
    return open_project(FIXTURE)


@pytest.fixture(scope="module")
def resolved(project):
    return project.resolve(project.post(SLUG))


@pytest.fixture(scope="module")
def editions(project, resolved):
    return EmailRenderer(project.config).editions(resolved)


def card_line(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"* {name}"))


def test_there_is_one_edition_per_goal_in_the_audience(editions):
    assert list(editions) == ["5k", "marathon", "ultra", "comeback"]
    assert {e.subject for e in editions.values()} == {"Everything, once a week"}
    assert {e.post_slug for e in editions.values()} == {SLUG}


@pytest.mark.parametrize("goal, long_block, comeback_block", [
    ("5k", False, False),
    ("marathon", True, False),
    ("ultra", True, False),
    ("comeback", False, True),
])
def test_goal_blocks_appear_only_in_their_goals_editions(editions, goal, long_block,
                                                          comeback_block):
    html, text = editions[goal].html(), editions[goal].text()
    assert (LONG_BLOCK in html, LONG_BLOCK in text) == (long_block, long_block)
    assert (COMEBACK_BLOCK in html, COMEBACK_BLOCK in text) == (comeback_block, comeback_block)
    assert "See you out there." in html  # shared blocks after the goal blocks stay


def test_goal_blocks_leave_no_fence_markers_behind(editions):
    for edition in editions.values():
        assert ":::" not in edition.html()
        assert ":::" not in edition.text()


@pytest.mark.parametrize("goal, dose", [
    ("marathon", "3 x 6 each side, heavy"),
    ("comeback", "2 x 10 each side, bodyweight"),
    ("5k", "3 x 8 each side"),
    ("ultra", "3 x 8 each side"),
])
def test_each_card_shows_the_dose_for_the_editions_goal(editions, goal, dose):
    assert card_line(editions[goal].text(), "Single-leg deadlift") == \
        f"* Single-leg deadlift: {dose}"
    assert f">{dose}</div>" in editions[goal].html()


def test_an_exercise_with_only_a_default_dose_shows_it_to_every_goal(editions):
    for edition in editions.values():
        assert card_line(edition.text(), "Single-leg balance") == \
            "* Single-leg balance: 3 x 30 s each side"


def test_a_goal_specific_dose_is_not_shown_to_other_goals(editions):
    html = editions["marathon"].html()
    assert "3 x 6 each side, heavy" in html
    assert "2 x 10 each side, bodyweight" not in html
    assert "3 x 8 each side, slow" not in html  # the ultra dose of the airplane split squat
    assert "3 x 8 each side, slow" in editions["ultra"].html()


def test_cards_carry_the_exercise_cues(editions):
    html = editions["5k"].html()
    assert "<li>Hinge from the hip, long spine.</li>" in html
    assert "  - Tip forward like an aeroplane." in editions["5k"].text()


@pytest.mark.parametrize("goal", ["marathon", "comeback"])
def test_inline_exercise_links_become_the_name_linked_to_its_page_with_utm(editions, goal):
    href = href_for(editions[goal].html(), "Single-leg balance")
    parts = urlsplit(href)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == \
        f"{BASE}/exercises/single-leg-balance/"
    assert parse_qs(parts.query) == utm_of(goal)
    assert "[[" not in editions[goal].html()


def test_an_inline_link_inside_a_goal_block_is_linked_too(editions):
    href = href_for(editions["comeback"].html(), "Glute bridge")
    assert href.startswith(f"{BASE}/exercises/glute-bridge/?")
    assert parse_qs(urlsplit(href).query) == utm_of("comeback")


def test_archive_links_in_the_body_get_utm_parameters(editions):
    href = href_for(editions["ultra"].html(), "the previous issue")
    parts = urlsplit(href)
    assert parts.path == "/posts/other/"
    assert parse_qs(parts.query) == utm_of("ultra")


def test_external_links_in_the_body_get_no_utm_parameters(editions):
    for edition in editions.values():
        assert href_for(edition.html(), "hip research summary") == \
            "https://research.example.com/hips"
        assert "hip research summary (https://research.example.com/hips)." in edition.text()


def test_every_link_into_the_archive_carries_utm_and_no_other_link_does(editions):
    for goal, edition in editions.items():
        for href, _ in links_of(edition.html()):
            if href.startswith(BASE):
                assert parse_qs(urlsplit(href).query) == utm_of(goal), href
            else:
                assert "utm_" not in href, href


def test_the_text_part_has_the_body_cards_web_url_address_and_unsubscribe(editions):
    edition = editions["marathon"]
    text = edition.text({"unsubscribe_url": "https://fixture.example.org/u/tok123"})
    assert text.startswith("Fixture Weekly · Marathon edition\nEverything at once\n"
                           "1 January 2026\n")
    assert "Hi runner," in text
    assert "- Warm up for ten minutes." in text
    assert (f"Start with Single-leg balance ({BASE}/exercises/single-leg-balance/"
            f"?utm_source=runletter&utm_medium=email&utm_campaign={SLUG}&utm_content=marathon)"
            ) in text
    assert "* Single-leg deadlift: 3 x 6 each side, heavy" in text
    assert (f"Read this issue on the web: {BASE}/posts/{SLUG}/?utm_source=runletter"
            f"&utm_medium=email&utm_campaign={SLUG}&utm_content=marathon") in text
    assert ADDRESS in text
    assert "Unsubscribe: https://fixture.example.org/u/tok123\n" in text
    assert "<p>" not in text and "&amp;" not in text


def test_the_text_part_keeps_the_unsubscribe_url_as_a_slot(editions):
    names = [p.name for p in editions["marathon"].text_parts if isinstance(p, Slot)]
    assert "unsubscribe_url" in names
    assert "first_name" in names


def test_the_merge_field_falls_back_to_runner(editions):
    edition = editions["5k"]
    assert "<p>Hi runner,</p>" in edition.html()
    assert "Hi runner," in edition.text()
    assert Slot("first_name", "runner") in edition.html_parts


def test_a_given_first_name_is_html_escaped_in_html_and_raw_in_text(editions):
    edition = editions["5k"]
    values = {"first_name": "<b>Zoë</b>"}
    assert "<p>Hi &lt;b&gt;Zoë&lt;/b&gt;,</p>" in edition.html(values)
    assert "<b>Zoë</b>" not in edition.html(values)
    assert "Hi <b>Zoë</b>," in edition.text(values)


def test_the_footer_has_the_postal_address_and_per_reader_links(editions):
    edition = editions["comeback"]
    assert edition.slots == {"first_name", "unsubscribe_url", "preferences_url"}
    html = edition.html({"unsubscribe_url": "https://fixture.example.org/u/a?t=1&g=2",
                         "preferences_url": "https://fixture.example.org/p/a"})
    assert ADDRESS in html
    # Filled after UTM tagging: the reader's own links are left exactly as given.
    assert href_for(html, "Unsubscribe") == "https://fixture.example.org/u/a?t=1&g=2"
    assert 'href="https://fixture.example.org/u/a?t=1&amp;g=2"' in html
    assert href_for(html, "Change your goal or pause") == "https://fixture.example.org/p/a"
    assert "as a Comeback reader" in html


def test_the_preheader_and_subject_appear_in_the_html(editions):
    html = editions["marathon"].html()
    assert "Every feature of Runletter in one short issue." in html
    assert "<title>Everything, once a week</title>" in html
    assert editions["marathon"].preheader == "Every feature of Runletter in one short issue."


def test_the_heading_and_list_are_rendered_as_html(editions):
    html = editions["marathon"].html()
    assert "<h2>The plan</h2>" in html
    assert "<li>Warm up for ten minutes.</li>" in html


def test_an_author_footer_overrides_the_built_in_one(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    partial = root / "layouts" / "email" / "partials" / "footer.mjml.j2"
    partial.parent.mkdir(parents=True)
    partial.write_text(
        '    <mj-section><mj-column><mj-text>Custom footer for {{ goal.label }} readers. '
        '{{ newsletter.postal_address }} <a href="{{ unsubscribe_url }}">Leave</a>'
        '</mj-text></mj-column></mj-section>\n', encoding="utf-8")
    project = open_project(root)
    renderer = EmailRenderer(project.config)
    edition = renderer.editions(project.resolve(project.post(SLUG)))["marathon"]
    html = edition.html({"unsubscribe_url": "https://fixture.example.org/u/x"})
    assert "Custom footer for Marathon readers." in html
    assert href_for(html, "Leave") == "https://fixture.example.org/u/x"
    assert "Change your goal or pause" not in html
    assert "<h2>The plan</h2>" in html  # the rest still comes from the built-in layout


def test_markdown_runs_once_per_block_not_once_per_edition(project, resolved, monkeypatch):
    calls: list[str] = []
    real = publisher.render.markdown.convert

    def counting(md, source):
        calls.append(source)
        return real(md, source)

    monkeypatch.setattr(publisher.render.markdown, "convert", counting)
    editions = EmailRenderer(project.config).editions(resolved)
    assert len(editions) == 4
    assert len(resolved.blocks) == 4
    assert len(calls) == len(resolved.blocks)


def test_rendering_twice_gives_the_same_bytes(project, resolved, editions):
    again = EmailRenderer(project.config).editions(resolved)
    assert again["marathon"].html() == editions["marathon"].html()
    assert again["marathon"].text() == editions["marathon"].text()


def test_html_in_an_exercise_name_is_text_in_an_inline_link(tmp_path):
    project = open_project(with_exercise_name(tmp_path, "glute-bridge", HTML_NAME))
    edition = EmailRenderer(project.config).editions(project.resolve(project.post(SLUG)))
    html = edition["comeback"].html()
    assert href_for(html, HTML_NAME).startswith(f"{BASE}/exercises/glute-bridge/?")
    assert "<img" not in html and "<b>co</b>" not in html


def test_an_exercise_name_with_html_reads_as_written_in_the_text_part(tmp_path):
    project = open_project(with_exercise_name(tmp_path, "glute-bridge", HTML_NAME))
    edition = EmailRenderer(project.config).editions(project.resolve(project.post(SLUG)))
    assert f"use {HTML_NAME} (" in edition["comeback"].text()


def test_the_preheader_is_hidden_by_display_none_not_by_a_colour(editions):
    html = editions["marathon"].html()
    [style] = re.findall(r'<div style="([^"]*)">Every feature of Runletter in one short issue.',
                         html)
    assert "display:none" in style.replace(" ", "")
    assert "color" not in style  # white on white is what spam filters call hidden text


def test_text_that_looks_like_a_slot_marker_is_shown_as_written(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    post = root / "content" / "posts" / f"{SLUG}.md"
    post.write_text(post.read_text().replace('title: "Everything at once"',
                                             'title: "ZZSLOT0ZZ and ZZSLOT9ZZ"'))
    project = open_project(root)
    edition = EmailRenderer(project.config).editions(project.resolve(project.post(SLUG)))["5k"]
    values = {"unsubscribe_url": "https://fixture.example.org/u/x"}
    assert "ZZSLOT0ZZ and ZZSLOT9ZZ" in edition.html(values)
    assert "ZZSLOT0ZZ and ZZSLOT9ZZ" in edition.text(values)
