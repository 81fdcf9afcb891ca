"""Golden files: the fixture post's marathon email and its web page, byte for byte.

Run with UPDATE_GOLDEN=1 to rewrite the golden files after an intended change, then read
the diff in git before committing it.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from pathlib import Path

import pytest

from publisher.project import open_project
from publisher.render.archive import SiteBuilder
from publisher.render.email import EmailRenderer
from tests.samples import FIXTURE
from tests.samples import FIXTURE_SLUG as SLUG

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"


def normalise(html: str) -> str:
    """Collapse whitespace and put each tag on its own line, so diffs are readable."""
    text = re.sub(r"\s+", " ", html).strip()
    text = re.sub(r">\s*<", ">\n<", text)
    return text + "\n"


def compare(actual: str, name: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
        return
    if not golden.exists():
        pytest.fail(f"{golden} is missing; run the tests with UPDATE_GOLDEN=1 to create it")
    expected = golden.read_text(encoding="utf-8")
    if actual != expected:
        diff = list(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                         f"golden/{name}", "actual", n=2, lineterm=""))
        shown = "\n".join(diff[:60]) + ("\n…" if len(diff) > 60 else "")
        pytest.fail(f"output differs from tests/fixtures/golden/{name} "
                    f"(UPDATE_GOLDEN=1 rewrites it):\n{shown}", pytrace=False)


def test_normalise_collapses_whitespace_and_splits_tags():
    assert normalise("<p>\n  Hi   there </p>  <b>x</b>") == "<p> Hi there </p>\n<b>x</b>\n"


def test_the_marathon_edition_matches_its_golden_file():
    project = open_project(FIXTURE)
    resolved = project.resolve(project.post(SLUG))
    renderer = EmailRenderer(project.config)
    edition = renderer.edition(renderer.prepare(resolved), project.goals.get("marathon"))
    compare(normalise(edition.html()), "everything-marathon.html")


def test_the_posts_web_page_matches_its_golden_file(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    project = open_project(root)
    SiteBuilder(project.config, project.goals, project.catalogue).build(project.resolve_all())
    page = (root / "site" / "posts" / SLUG / "index.html").read_text(encoding="utf-8")
    compare(normalise(page), "everything-page.html")
