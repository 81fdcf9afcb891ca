"""The web archive: a page per post, exercise and goal, Atom feeds, and quiet rebuilds."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import xml.etree.ElementTree as ET
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urljoin, urlsplit

import pytest

from publisher.errors import RunletterError
from publisher.model import Catalogue
from publisher.project import open_project
from publisher.render.archive import SiteBuilder
from publisher.render.cache import CACHE_DIR
from publisher.render.layouts import builtin_layouts
from tests.helpers.support import runletter, with_exercise_name
from tests.samples import ATOM as A
from tests.samples import FIXTURE, HTML_NAME
from tests.samples import FIXTURE_SLUG as SLUG

DRAFT = "2026-01-02-draft"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def build(root: Path, drafts: bool = False) -> SiteBuilder:
    project = open_project(root)
    builder = SiteBuilder(project.config, project.goals, project.catalogue)
    builder.build(project.resolve_all(include_drafts=drafts))
    return builder


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site") / "project"
    shutil.copytree(FIXTURE, root)
    build(root)
    return root / "site"


def page(site: Path, path: str) -> str:
    return (site / path / "index.html").read_text(encoding="utf-8")


def section(html: str, css_class: str) -> list[str]:
    """Link texts of the <ul class=css_class> list."""
    match = re.search(rf'<ul class="{css_class}">(.*?)</ul>', html, re.S)
    return re.findall(r">([^<>]+)</a>", match.group(1)) if match else []


def dose_rows(html: str) -> list[tuple[str, str]]:
    table = re.search(r'<table class="doses">(.*?)</table>', html, re.S).group(1)
    return re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", table)


def post_titles(html: str) -> list[str]:
    match = re.search(r'<ul class="post-list">(.*?)</ul>', html, re.S)
    return re.findall(r'<a href="[^"]*">([^<]+)</a>', match.group(1))


def feed(site: Path, path: str) -> ET.Element:
    root = ET.parse(site / path).getroot()
    assert root.tag == f"{A}feed"
    return root


# --- pages ---------------------------------------------------------------------------------

def test_the_index_lists_published_posts_only(site):
    html = page(site, "")
    assert post_titles(html) == ["Everything at once"]
    assert "A fixture post that uses every feature." in html


def test_each_published_post_gets_a_page_and_drafts_do_not(site):
    assert (site / "posts" / SLUG / "index.html").is_file()
    assert not (site / "posts" / DRAFT).exists()


def test_drafts_are_built_when_asked(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    build(root, drafts=True)
    assert "A draft about physio" in page(root / "site", f"posts/{DRAFT}")
    assert post_titles(page(root / "site", "")) == ["A draft about physio", "Everything at once"]


@pytest.mark.parametrize(("send_at", "listed"), [("2099-01-10", False),
                                                  ("2099-01-10T06:30:00+01:00", False),
                                                  ("2020-01-10", True)])
def test_a_scheduled_post_joins_the_archive_only_once_its_time_has_come(tmp_path, send_at,
                                                                         listed):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    (root / "content/posts/2026-02-01-later.md").write_text(
        f"---\ntitle: Later on\ndate: 2026-02-01\ntopic: strength\nsend_at: {send_at}\n"
        "---\nSoon.\n", encoding="utf-8")
    build(root)
    assert ((root / "site/posts/2026-02-01-later").exists(),
            "Later on" in post_titles(page(root / "site", ""))) == (listed, listed)


def test_the_post_page_shows_every_goal_block_marked_and_labelled(site):
    html = page(site, f"posts/{SLUG}")
    asides = re.findall(r'<aside class="goal-only" data-goals="([^"]*)"[^>]*>'
                        r'<p class="goal-only-label">([^<]*)</p>', html)
    assert asides == [("marathon ultra", "Only in the Marathon and Ultra editions"),
                      ("comeback", "Only in the Comeback edition")]
    assert "Long-distance runners" in html and "Comeback runners" in html
    assert ":::" not in html


class Asides(HTMLParser):
    """(aria-label, visible label) of every goal-only aside."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str | None, str]] = []
        self._in_label = False

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "aside" and values.get("class") == "goal-only":
            self.found.append((values.get("aria-label"), ""))
        self._in_label = tag == "p" and values.get("class") == "goal-only-label"

    def handle_data(self, data):
        if self._in_label:
            self.found[-1] = (self.found[-1][0], self.found[-1][1] + data)

    def handle_endtag(self, tag):
        self._in_label = False


def test_each_goal_only_block_is_named_by_its_label_for_screen_readers(site):
    asides = Asides()
    asides.feed(page(site, f"posts/{SLUG}"))
    assert asides.found == [("Only in the Marathon and Ultra editions",) * 2,
                            ("Only in the Comeback edition",) * 2]


def test_the_post_page_fills_merge_fields_with_their_fallback_and_has_no_utm(site):
    html = page(site, f"posts/{SLUG}")
    assert "<p>Hi runner,</p>" in html
    assert "ZZSLOT" not in html
    assert "utm_" not in html


def test_the_post_page_links_exercises_inline_and_shows_cards_for_its_audience(site):
    html = page(site, f"posts/{SLUG}")
    assert '<a href="../../exercises/single-leg-balance/">Single-leg balance</a>' in html
    card = html.split('<section class="card">')[1]
    assert dose_rows(card) == [("5K", "3 x 8 each side"),
                               ("Marathon", "3 x 6 each side, heavy"),
                               ("Ultra", "3 x 8 each side"),
                               ("Comeback", "2 x 10 each side, bodyweight")]


def test_each_exercise_gets_a_page(site):
    for slug in ("airplane-split-squat", "glute-bridge", "single-leg-balance",
                 "single-leg-deadlift"):
        assert (site / "exercises" / slug / "index.html").is_file()
    listed = re.findall(r'<li><a href="[^"]*">([^<]+)</a>', page(site, "exercises"))
    assert listed == ["Airplane split squat", "Glute bridge", "Single-leg balance",
                      "Single-leg deadlift"]


def test_an_exercise_page_has_the_dose_for_every_goal_that_has_one(site):
    assert dose_rows(page(site, "exercises/single-leg-deadlift")) == [
        ("Marathon", "3 x 6 each side, heavy"),
        ("Comeback", "2 x 10 each side, bodyweight"),
        ("Everyone else", "3 x 8 each side"),
    ]
    assert dose_rows(page(site, "exercises/single-leg-balance")) == [
        ("Everyone else", "3 x 30 s each side")]


def test_an_exercise_page_has_cues_body_and_video(site):
    html = page(site, "exercises/single-leg-deadlift")
    assert ('<ul class="cues"><li>Hinge from the hip, long spine.</li>'
            '<li>Hips square to the floor.</li></ul>') in html
    assert "<p>Stand on one leg and hinge forward" in html
    assert '<a href="https://videos.example.org/fixture/single-leg-deadlift">' in html
    assert "Watch the video" not in page(site, "exercises/glute-bridge")


def test_progressions_and_regressions_are_declared_ones_plus_the_reverse_links(site):
    sld = page(site, "exercises/single-leg-deadlift")
    assert section(sld, "progressions") == ["Airplane split squat"]
    # its own regression first, then glute bridge, which lists the deadlift as a progression
    assert section(sld, "regressions") == ["Single-leg balance", "Glute bridge"]


def test_an_exercise_listed_as_a_regression_shows_the_other_as_its_progression(site):
    balance = page(site, "exercises/single-leg-balance")
    assert section(balance, "progressions") == ["Single-leg deadlift"]
    assert section(balance, "regressions") == []


def test_an_exercise_listed_as_a_progression_shows_the_other_as_its_regression(site):
    airplane = page(site, "exercises/airplane-split-squat")
    assert section(airplane, "regressions") == ["Single-leg deadlift"]
    assert section(airplane, "progressions") == []


def test_an_exercise_page_lists_the_posts_that_use_it(site):
    assert section(page(site, "exercises/airplane-split-squat"), "used-in") == \
        ["Everything at once"]  # as a card
    assert section(page(site, "exercises/glute-bridge"), "used-in") == \
        ["Everything at once"]  # linked inline inside a goal block


def test_each_goal_page_lists_only_that_goals_posts(site):
    for goal in ("5k", "marathon", "ultra", "comeback"):
        assert post_titles(page(site, f"goals/{goal}")) == ["Everything at once"], goal
    general = page(site, "goals/general")
    assert post_titles(general) == []
    assert "No posts yet." in general


# --- feeds ---------------------------------------------------------------------------------

def test_the_main_feed_is_atom_with_one_entry_per_published_post(site):
    root = feed(site, "feed.xml")
    assert root.findtext(f"{A}title") == "Fixture Weekly"
    assert root.findtext(f"{A}id") == "https://fixture.example.org/feed.xml"
    assert root.findtext(f"{A}updated") == "2026-01-01T00:00:00+00:00"
    [entry] = root.findall(f"{A}entry")
    url = f"https://fixture.example.org/posts/{SLUG}/"
    assert entry.findtext(f"{A}id") == url
    assert entry.findtext(f"{A}title") == "Everything at once"
    assert entry.findtext(f"{A}updated") == "2026-01-01T00:00:00+00:00"
    assert entry.find(f"{A}link").get("href") == url
    content = entry.find(f"{A}content")
    assert content.get("type") == "html"
    assert 'href="https://fixture.example.org/exercises/single-leg-balance/"' in content.text
    assert 'class="goal-only"' in content.text


def test_a_goal_feed_shows_that_goals_edition_only(site):
    [entry] = feed(site, "goals/comeback/feed.xml").findall(f"{A}entry")
    content = entry.find(f"{A}content").text
    assert "Comeback runners: use" in content
    assert 'href="https://fixture.example.org/exercises/glute-bridge/"' in content
    assert "Long-distance runners" not in content
    [entry] = feed(site, "goals/ultra/feed.xml").findall(f"{A}entry")
    assert "Long-distance runners" in entry.find(f"{A}content").text


def test_a_goal_with_no_posts_has_an_empty_but_valid_feed(site):
    root = feed(site, "goals/general/feed.xml")
    assert root.findall(f"{A}entry") == []
    assert root.findtext(f"{A}title") == "Fixture Weekly · Everyone"


def test_feeds_parse_with_feedparser_as_atom_1_0(site):
    import feedparser

    for path in ("feed.xml", "goals/marathon/feed.xml"):
        parsed = feedparser.parse(str(site / path))
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert parsed.version == "atom10"
        assert [e.title for e in parsed.entries] == ["Everything at once"]
        assert parsed.entries[0].link.startswith("https://fixture.example.org/posts/")


# --- rebuilds and links --------------------------------------------------------------------

def test_a_second_build_writes_no_files(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    first = build(root)
    assert first.written == 19
    old = {p: p.stat().st_mtime_ns for p in (root / "site").rglob("*") if p.is_file()}
    for path in old:
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert build(root).written == 0
    assert all(p.stat().st_mtime_ns == 1_000_000_000 for p in old)


def test_a_changed_post_rewrites_only_the_files_that_show_it(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    build(root)
    post = root / "content" / "posts" / f"{SLUG}.md"
    post.write_text(post.read_text().replace("See you out there.", "Bye."))
    # the post page, the main feed and its four goals' feeds
    assert build(root).written == 6


def test_a_second_build_does_not_rewrite_unchanged_media(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    (root / "content" / "img").mkdir()
    (root / "content" / "img" / "sld.png").write_bytes(b"\x89PNG fake")
    exercise = root / "content" / "exercises" / "single-leg-deadlift.md"
    exercise.write_text(exercise.read_text().replace("video:", "image: img/sld.png\nvideo:"))
    build(root)
    media = root / "site" / "media" / "img" / "sld.png"
    assert media.read_bytes() == b"\x89PNG fake"
    os.utime(media, ns=(1_000_000_000, 1_000_000_000))
    build(root)
    assert media.stat().st_mtime_ns == 1_000_000_000


class Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.hrefs.append(value)


def broken_links(site: Path) -> list[str]:
    broken = []
    for html_file in sorted(site.rglob("index.html")):
        parser = Hrefs()
        parser.feed(html_file.read_text(encoding="utf-8"))
        base = html_file.relative_to(site).as_posix()
        for href in parser.hrefs:
            if urlsplit(href).scheme:
                continue
            target = urlsplit(urljoin("http://site/" + base, href)).path.lstrip("/")
            path = site / target
            if target.endswith("/") or target == "":
                path = path / "index.html"
            if not path.is_file():
                broken.append(f"{base}: {href}")
    return broken


def test_pages_at_the_site_root_link_to_files_that_exist(site):
    assert [b for b in broken_links(site) if b.startswith("index.html:")] == []


def test_every_relative_link_in_the_site_points_at_a_file_that_exists(site):
    assert broken_links(site) == []


def cached_build(root: Path) -> SiteBuilder:
    project = open_project(root, cache=True)
    builder = SiteBuilder(project.config, project.goals, project.catalogue)
    builder.build(project.resolve_all())
    project.save_cache()
    return builder


def test_a_rebuild_renders_only_the_pages_whose_inputs_changed(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    first = cached_build(root)
    assert first.rendered > 5
    assert cached_build(root).rendered == 0
    post = root / "content/posts" / f"{SLUG}.md"
    post.write_text(post.read_text().replace("Hi {{", "Hello again {{"), encoding="utf-8")
    again = cached_build(root)
    assert 1 <= again.rendered < first.rendered
    assert "Hello again runner" in (root / "site/posts" / SLUG / "index.html").read_text()



def test_two_builds_at_once_in_two_processes_both_succeed(sample_root):
    # Two publishes that share a post out each rebuild the archive as they finish.
    for _ in range(3):  # a clash of the two writers is likely, not certain, in one round
        shutil.rmtree(sample_root / "site", ignore_errors=True)
        shutil.rmtree(sample_root / CACHE_DIR, ignore_errors=True)
        builds = [runletter(sample_root, "build") for _ in range(2)]
        outputs = [b.communicate(timeout=120)[0] for b in builds]
        assert [b.returncode for b in builds] == [0, 0], "\n".join(outputs)

def test_a_changed_exercise_name_reaches_every_page_that_shows_it(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    cached_build(root)
    path = root / "content/exercises/glute-bridge.md"
    path.write_text(path.read_text().replace('name: "Glute bridge"', 'name: "Bridge, glute"')
                    if 'name: "Glute bridge"' in path.read_text()
                    else path.read_text().replace("name: ", 'name: "Bridge, glute"  # ', 1),
                    encoding="utf-8")
    cached_build(root)
    assert "Bridge, glute" in (root / "site/posts" / SLUG / "index.html").read_text()
    assert "Bridge, glute" in (root / "site/exercises/glute-bridge/index.html").read_text()


def test_a_changed_layout_rebuilds_every_page(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    first = cached_build(root)
    (root / "layouts/web").mkdir(parents=True)
    base = builtin_layouts() / "web/base.html.j2"
    (root / "layouts/web/base.html.j2").write_text(
        base.read_text().replace("<main>", "<main class='changed'>"), encoding="utf-8")
    assert cached_build(root).rendered == first.rendered
    assert "class='changed'" in (root / "site/exercises/glute-bridge/index.html").read_text()


def test_a_broken_cache_file_means_a_full_build_not_an_error(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    first = cached_build(root)
    for cache in (root / ".runletter-cache").glob("*.pickle"):
        cache.write_bytes(b"not a pickle")
    assert cached_build(root).rendered == first.rendered


def test_the_builder_copies_nothing_from_outside_content_even_when_handed_such_a_path(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    (tmp_path / "secret.txt").write_text("s3cret")
    project = open_project(root)
    sld = project.catalogue.get("single-leg-deadlift")
    # Loading refuses this path; a builder handed it anyway must refuse it too.
    bad = dataclasses.replace(sld, image="../../secret.txt")
    catalogue = Catalogue(MappingProxyType({**project.catalogue.exercises, sld.slug: bad}))
    builder = SiteBuilder(project.config, project.goals, catalogue)
    with pytest.raises(RunletterError) as caught:
        builder.build(project.resolve_all())
    assert str(caught.value) == ("content/exercises/single-leg-deadlift.md: image "
                                 "'../../secret.txt' is outside content/")
    copies = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == b"s3cret"]
    assert copies == [tmp_path / "secret.txt"]


def test_html_in_an_exercise_name_is_text_on_the_archive_page_and_in_the_feed(tmp_path):
    root = with_exercise_name(tmp_path, "glute-bridge", HTML_NAME)
    build(root)
    post_page = page(root / "site", f"posts/{SLUG}")
    assert "<img" not in post_page and "<b>co</b>" not in post_page
    assert f'exercises/glute-bridge/">{escape(HTML_NAME, quote=False)}</a>' in post_page
    content = feed(root / "site", "feed.xml").find(f"{A}entry").find(f"{A}content").text
    assert "<img" not in content and escape(HTML_NAME, quote=False) in content


def test_every_feed_carries_the_newsletters_language_as_xml_lang(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    config = root / "runletter.toml"
    config.write_text(config.read_text().replace("[sender]", 'language = "de-CH"\n\n[sender]'))
    build(root)
    for path in ("feed.xml", "goals/marathon/feed.xml", "goals/general/feed.xml"):
        assert feed(root / "site", path).get(XML_LANG) == "de-CH"


def test_body_text_that_looks_like_a_slot_marker_is_shown_as_written(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    post = root / "content" / "posts" / f"{SLUG}.md"
    post.write_text(post.read_text().replace("See you out there.", "Type ZZSLOT0ZZ here."))
    build(root)
    assert "<p>Type ZZSLOT0ZZ here.</p>" in page(root / "site", f"posts/{SLUG}")
