"""Adversarial content: whatever an author pastes into front matter or a media path,
nothing is injected into an email, the archive or a feed, and nothing outside content/
is copied. Each property holds for every example hypothesis makes, not for one."""

from __future__ import annotations

import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.content.posts import load_catalogue
from publisher.errors import RunletterError
from publisher.project import open_project
from publisher.render.archive import SiteBuilder
from publisher.render.check import body_links, check_links
from publisher.render.email import EmailRenderer
from tests.samples import ATOM as A
from tests.samples import FIXTURE
from tests.samples import FIXTURE_SLUG as SLUG

CARD = "single-leg-balance"  # linked inline with [[…]] and shown as a card
EVALUATED = "zqjx"  # appears only if a template evaluated what the author wrote

PIECES = [
    "<x-inj>", "</x-inj>", "<script>alert(1)</script>", '<img src=x onerror="alert(1)">',
    "</mj-text>", "<mj-raw>", "</mjml>", '"', "'", "&", "&amp;", "&lt;x-inj&gt;",
    "{{ 'zq' ~ 'jx' }}", "{% set q = 'zq' ~ 'jx' %}{{ q }}", "{#", "#}", "{{", "}}",
    "\r", "\n", "\r\n", "\u2028", "\u2029", "\x85", "[[", "]]", "[a](b)", "*", "_", "`",
    "\\", "<!--", "-->", "<![CDATA[", "]]>", ":::", "ZZSLOT0ZZ", "ZZSLOT9ZZ", "\t", "\x7f",
]
LETTERS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6)
TEXT = st.lists(st.one_of(st.sampled_from(PIECES), LETTERS), max_size=8).map(
    lambda parts: "Go " + "".join(parts))
# Header values (title, subject) with any line break are refused on their line, which the
# next property checks; this one is about values that render.
ONE_LINE = TEXT.map(
    lambda text: "".join(ch for ch in text if len(f"x{ch}x".splitlines()) == 1))
OPTIONS = settings(max_examples=50, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])


class Tags(HTMLParser):
    """Every start tag and attribute name in an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]


def injected(html: str) -> list[str]:
    """Markup that only an author's value could have put there (no layout has any)."""
    parser = Tags()
    parser.feed(html)
    parser.close()
    return ([t for t in parser.tags if t in ("x-inj", "script", "mj-raw", "mjml")]
            + [a for a in parser.attributes if a.startswith("on")])


def write_front(path: Path, changes: dict) -> None:
    """Rewrite a Markdown file's front matter with these keys changed, as YAML would."""
    _, front, body = path.read_text(encoding="utf-8").split("---\n", 2)
    meta = yaml.safe_load(front) | changes
    meta = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in meta.items()}
    path.write_text("---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False)
                    + "---\n" + body, encoding="utf-8")


def project_with(root: Path, post: dict, exercise: dict) -> Path:
    """A fresh copy of the fixture with these post and card-exercise front matter values."""
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(FIXTURE, root)
    write_front(root / "content" / "posts" / f"{SLUG}.md", post)
    write_front(root / "content" / "exercises" / f"{CARD}.md", exercise)
    return root


def outputs(root: Path, first_name: str) -> dict[str, str]:
    """Every edition's HTML and text for one reader, and every page and feed of the site."""
    project = open_project(root)
    resolved = project.resolve(project.post(SLUG))
    found: dict[str, str] = {}
    for goal, edition in EmailRenderer(project.config).editions(resolved).items():
        found[f"{goal}.html"] = edition.html({"first_name": first_name})
        found[f"{goal}.txt"] = edition.text({"first_name": first_name})
    site = SiteBuilder(project.config, project.goals, project.catalogue, cache=False).build(
        project.resolve_all(), root / "site")
    for path in site.rglob("*"):
        if path.suffix in (".html", ".xml"):
            found[path.relative_to(site).as_posix()] = path.read_text(encoding="utf-8")
    return found


@OPTIONS
@given(title=ONE_LINE, subject=ONE_LINE, preheader=TEXT, summary=TEXT, name=TEXT,
       cues=st.lists(TEXT, max_size=2), dose=TEXT, first_name=TEXT)
def test_front_matter_values_never_become_markup_or_template_code(
        title, subject, preheader, summary, name, cues, dose, first_name):
    post = {"title": title, "subject": subject, "preheader": preheader, "summary": summary}
    exercise = {"name": name, "cues": cues, "dose": {"default": dose}}
    with tempfile.TemporaryDirectory() as tmp:
        root = project_with(Path(tmp) / "project", post, exercise)
        # No RunletterError either: these values render, and MJML never breaks on them.
        found = outputs(root, first_name)
        # As YAML read them (it folds a written line break, even U+0085, into a space).
        project = open_project(root)
        title, name = project.post(SLUG).title, project.catalogue.get(CARD).name
    for name_, text in found.items():
        assert EVALUATED not in text, name_
        if name_.endswith(".txt"):  # the text part shows what the author wrote, as written
            assert title in text and name in text, name_
        if name_.endswith(".html"):
            assert injected(text) == [], name_
        elif name_.endswith(".xml"):
            for entry in ET.fromstring(text.encode("utf-8")).iter(f"{A}content"):
                assert injected(entry.text or "") == [], name_


FIELDS = ("title", "subject", "preheader", "summary", "name", "cues", "dose")


@OPTIONS
@given(field=st.sampled_from(FIELDS), text=TEXT, bad=st.sampled_from(
    ["\x00", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\ufffe", "\uffff", "\r", "\n"]))
def test_a_value_no_output_can_carry_is_refused_on_its_line_never_a_broken_render(
        field, text, bad):
    value = text + bad + text
    if bad in "\r\n" and field not in ("title", "subject"):
        value = text + "\x1b"  # a line break is fine in these; a control character is not
    post = {k: value for k in FIELDS[:4] if k == field}
    exercise = {"name": value} if field == "name" else {}
    exercise |= {"cues": [value]} if field == "cues" else {}
    exercise |= {"dose": {"default": value}} if field == "dose" else {}
    with tempfile.TemporaryDirectory() as tmp:
        root = project_with(Path(tmp) / "project", post, exercise)
        try:
            outputs(root, "Ann")
        except RunletterError as exc:
            folder = "exercises" if exercise else "posts"
            path = root / "content" / folder / f"{CARD if exercise else SLUG}.md"
            lines = path.read_text(encoding="utf-8").splitlines()
            # The value's own line: a list item's, or the goal's line in a dose table.
            starts = {"cues": ('"', "'"), "dose": ("default:",)}.get(field, (f"{field}:",))
            for finding in exc.findings:
                assert finding.path == path.relative_to(root).as_posix()
                assert lines[finding.line - 1].lstrip(" -").startswith(starts), finding
                assert ("must be on one line" in finding.message
                        or "control character" in finding.message), finding.message
            return
    raise AssertionError(f"{field} {value!r} was accepted")


def test_the_injection_detector_sees_what_it_looks_for():
    assert injected('<p>a<x-inj>b</x-inj><img src=x onerror="y"></p>') == ["x-inj", "onerror"]
    assert injected("<p>&lt;x-inj&gt; onerror=</p>") == []


# --- media paths ---------------------------------------------------------------------------

SECRETS = (b"secret beside the project", b"secret in the project root",
           b"secret in a folder elsewhere")
SEGMENT = st.sampled_from(["..", ".", "", "img", "x.png", "content", "out.png", "outdir",
                           "secret.txt", "..\\..", "back\\slash", "back", "slash", "~", "site",
                           "media"])
REF = st.builds(lambda lead, parts: lead + "/".join(parts),
                st.sampled_from(["", "/", "./", "content/", "//"]),
                st.lists(SEGMENT, min_size=1, max_size=5))


def media_world(tmp: Path) -> Path:
    """A project whose content/ holds an image, symlinks to a file outside (one with a
    backslash in its name) and a symlink to a folder outside; secrets lie beside the
    project, in its root and in that folder."""
    (tmp / "secret.txt").write_bytes(SECRETS[0])
    (tmp / "elsewhere").mkdir()
    (tmp / "elsewhere" / "x.png").write_bytes(SECRETS[2])
    root = tmp / "project"
    shutil.copytree(FIXTURE, root)
    (root / "secret.txt").write_bytes(SECRETS[1])
    content = root / "content"
    (content / "img").mkdir()
    (content / "img" / "x.png").write_bytes(b"\x89PNG an image the author put here")
    (content / "out.png").symlink_to(tmp / "secret.txt")
    (content / "outdir").symlink_to(tmp / "elsewhere")
    (content / "back\\slash").symlink_to(tmp / "secret.txt")
    return root


def leaves_content(root: Path, ref: str) -> bool:
    """Whether the file the archive would copy for ref lies outside content/ (the oracle)."""
    content = os.path.realpath(root / "content")
    target = os.path.realpath(os.path.join(content, ref.lstrip("/").removeprefix("content/")))
    return os.path.commonpath([content, target]) != content


def snapshot(folder: Path, skip: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink() and skip not in p.parents}


@OPTIONS
@given(key=st.sampled_from(["image", "video"]), ref=REF)
def test_a_media_path_is_either_reported_or_kept_inside_content(key, ref):
    with tempfile.TemporaryDirectory() as tmp:
        root = media_world(Path(tmp))
        exercise = root / "content" / "exercises" / "single-leg-deadlift.md"
        write_front(exercise, {key: ref})
        try:
            load_catalogue(root / "content", root)
        except RunletterError as exc:
            [finding] = exc.findings
            assert finding.path == "content/exercises/single-leg-deadlift.md"
            assert exercise.read_text().splitlines()[finding.line - 1].startswith(f"{key}:")
            assert finding.message in (f"{key} '{ref}' is outside content/",
                                       f"{key} '{ref}' is not an http(s) URL or a path "
                                       "under content/")
            return
        assert not leaves_content(root, ref), "an escape went unreported"
        before = snapshot(Path(tmp), root / "site")
        project = open_project(root)
        SiteBuilder(project.config, project.goals, project.catalogue, cache=False).build(
            project.resolve_all())
        assert snapshot(Path(tmp), root / "site") == before  # nothing written outside site/
        copied = [p.read_bytes() for p in (root / "site").rglob("*") if p.is_file()]
        assert not any(secret in data for secret in SECRETS for data in copied)


@OPTIONS
@given(ref=REF)
def test_a_body_image_that_leaves_content_is_an_error_from_check(ref):
    with tempfile.TemporaryDirectory() as tmp:
        root = media_world(Path(tmp))
        post = root / "content" / "posts" / f"{SLUG}.md"
        post.write_text(post.read_text(encoding="utf-8") + f"\n![a picture]({ref})\n",
                        encoding="utf-8")
        project = open_project(root)
        resolved = project.resolve(project.post(SLUG))
        found = check_links(resolved.post, body_links(resolved), project.config, set(), {})
        errors = [f for f in found if f.level == "error" and f.message.startswith("image '")]
        if leaves_content(root, ref):
            # Reported with a place (check finds the line by the URL as Markdown read it,
            # so a backslash escape may point at the start of the paragraph instead).
            assert errors and all(f.line for f in errors)
