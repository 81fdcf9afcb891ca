"""`runletter preview` in headless Chromium: frames per goal, live updates, screenshots.

Uses Debian's /usr/bin/chromium through Playwright (never `playwright install`); skipped
only when that browser is absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.samples import CHROMIUM
from tests.samples import CHROMIUM_ARGS as ARGS
from tests.samples import HIP_DRIVE as POST
from tests.samples import HIP_DRIVE_GOALS as GOALS
from tests.samples import HIP_DRIVE_SENTENCE as OLD

if not CHROMIUM.exists():
    pytest.skip("headless preview tests need Chromium at /usr/bin/chromium "
                "(Debian: apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

from publisher.preview import PreviewServer  # noqa: E402

NEW = "Give it three weeks, then reply and tell me how the hills felt."


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def preview(sample_root: Path) -> Iterator[PreviewServer]:
    server = PreviewServer(sample_root, port=0).start()
    yield server
    server.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    # Loopback only: anything else the email links to (images, fonts) is refused at once.
    page.route("**/*", lambda route: route.continue_()
               if route.request.url.startswith("http://127.0.0.1:") else route.abort())
    yield page
    context.close()


def test_preview_updates_live_and_looks_like_a_newsletter(preview: PreviewServer, page: Page,
                                                          sample_root: Path,
                                                          tmp_path: Path) -> None:
    page.goto(f"{preview.url}posts/{POST}/")
    expect(page.locator("#live")).to_have_text("live")
    desktop = page.locator('iframe[data-width="600"]')
    mobile = page.locator('iframe[data-width="375"]')
    expect(desktop).to_have_count(len(GOALS))
    expect(mobile).to_have_count(len(GOALS))
    assert [f.get_attribute("data-goal") for f in desktop.all()] == GOALS
    assert [f.get_attribute("data-goal") for f in mobile.all()] == GOALS
    for goal in GOALS:
        expect(page.locator(f"#goal-{goal} h2")).to_be_visible()
    frame = page.frame_locator('iframe[data-key="5k-375"]')
    expect(frame.get_by_text("Hi runner,")).to_be_visible()
    expect(frame.get_by_text(OLD)).to_be_visible()
    # the frames are exactly as wide as a desktop and a phone mail client
    assert desktop.first.evaluate("f => f.contentWindow.innerWidth") == 600
    assert mobile.first.evaluate("f => f.contentWindow.innerWidth") == 375
    # and as tall as the email, so nothing scrolls inside them
    height = mobile.first.evaluate("f => f.getBoundingClientRect().height")
    content = mobile.first.evaluate("f => f.contentDocument.documentElement.scrollHeight")
    assert height >= content > 2000

    page.evaluate("window.notReloaded = true")
    post = sample_root / "content" / "posts" / f"{POST}.md"
    post.write_text(post.read_text(encoding="utf-8").replace(OLD, NEW), encoding="utf-8")

    for key in ("5k-375", "marathon-600", "comeback-375"):
        expect(page.frame_locator(f'iframe[data-key="{key}"]').get_by_text(NEW)).to_be_visible()
    expect(page.locator('pre[data-key="ultra-text"]')).to_contain_text(NEW)
    assert page.evaluate("window.notReloaded") is True  # updated in place, no reload
    expect(desktop).to_have_count(len(GOALS))

    shots = tmp_path / "screenshots"
    shots.mkdir()
    page.locator("#goal-5k h2").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "preview-page.png"))
    # Whole emails as each frame shows them (sticky bars off, so they cover nothing) ...
    page.add_style_tag(content=".bar, .goals { position: static !important; }")
    for key in ("5k-600", "5k-375"):
        page.locator(f'iframe[data-key="{key}"]').screenshot(path=str(shots / f"{key}.png"))
    # ... and a first screenful of each, as a phone (812 px) or a desktop window shows it.
    for key, height in (("5k-600", 900), ("5k-375", 812)):
        box = page.locator(f'iframe[data-key="{key}"]').bounding_box()
        scrolled = page.evaluate("window.scrollY")
        page.screenshot(path=str(shots / f"{key}-top.png"), full_page=True, clip={
            "x": box["x"], "y": box["y"] + scrolled, "width": box["width"], "height": height})
    for name in ("preview-page", "5k-600", "5k-375", "5k-600-top", "5k-375-top"):
        assert (shots / f"{name}.png").stat().st_size > 10_000


def test_a_broken_edit_shows_the_finding_then_recovers(preview: PreviewServer, page: Page,
                                                       sample_root: Path) -> None:
    page.goto(f"{preview.url}posts/{POST}/")
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator('iframe[data-width="375"]')).to_have_count(len(GOALS))
    post = sample_root / "content" / "posts" / f"{POST}.md"
    good = post.read_text(encoding="utf-8")
    post.write_text(good.replace("6. [[hip-jack]]", "6. [[hip-jakc]]"), encoding="utf-8")
    expect(page.locator("#findings li.error")).to_have_text(
        f"content/posts/{POST}.md:28: error: unknown exercise 'hip-jakc' "
        "(did you mean 'hip-jack'?)")
    expect(page.locator("iframe")).to_have_count(0)
    post.write_text(good, encoding="utf-8")
    expect(page.locator('iframe[data-width="375"]')).to_have_count(len(GOALS))
    expect(page.locator("#findings li")).to_have_count(0)
    expect(page.frame_locator('iframe[data-key="ultra-375"]').get_by_text("Hi runner,")
           ).to_be_visible()
