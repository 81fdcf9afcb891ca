"""A reader's path through `runletter serve` in headless Chromium, driven by Playwright.

Sign up on the form, follow the confirmation link from the outbox, change the goal and pause
on the preferences page, unsubscribe with the page's one button; a screenshot of each page is
saved under the test's tmp folder. The signup form takes the browser's time zone, and the
preferences page changes a race date. Uses Debian's /usr/bin/chromium (never `playwright
install`); skipped only when that browser is absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.live_server import link_in, messages_to, start_site, token_for
from tests.helpers.support import free_port
from tests.samples import CHROMIUM, RACE_DATE, ZONE
from tests.samples import CHROMIUM_ARGS as ARGS

TEAL = "rgb(15, 118, 110)"  # --accent in the archive's style.css: proves both stylesheets load

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="/usr/bin/chromium is not installed "
                                       "(CI installs it with: apt-get install chromium)")


def test_signup_confirm_and_preferences_in_a_browser(sample_root: Path, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    address = "browser.runner@example.net"
    server = start_site(sample_root, free_port())
    problems: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS,
                                                 headless=True)
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 860})
                page.set_default_timeout(10_000)
                page.on("console", lambda m: problems.append(m.text)
                        if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))

                def shot(name: str) -> None:
                    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

                page.goto(server.url("/subscribe"))
                expect(page.get_by_role("heading", level=1)).to_have_text(
                    "Subscribe to Run Freely")
                assert page.locator(".rl-button").evaluate(
                    "b => getComputedStyle(b).backgroundColor") == TEAL
                shot("1-subscribe")
                page.fill("#rl-email", address)
                page.fill("#rl-first-name", "Bea")
                page.select_option("#rl-goal", "marathon")
                page.get_by_role("button", name="Subscribe").click()
                expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
                shot("2-check-your-inbox")
                assert server.reader(address).status == "pending"

                [message] = messages_to(server.root, address)
                link = link_in(message, "confirm")
                mail = browser.new_page(viewport={"width": 700, "height": 700})
                mail.set_content(message.get_body(("html",)).get_content())
                expect(mail.get_by_role("link", name="Yes, subscribe me")).to_have_attribute(
                    "href", link)
                mail.screenshot(path=str(shots / "2b-confirmation-email.png"), full_page=True)
                mail.close()
                page.goto(link)  # opening the link changes nothing: the page has a button
                expect(page.get_by_role("heading", level=1)).to_have_text(
                    "Confirm your subscription")
                assert server.reader(address).status == "pending"
                page.get_by_role("button", name="Yes, subscribe me").click()
                expect(page.get_by_role("heading", level=1)).to_have_text("You're in!")
                shot("3-confirmed")
                reader = server.reader(address)
                assert (reader.status, reader.consent_source) == ("active", "signup form")

                page.get_by_role("link", name="Your preferences").click()
                expect(page.get_by_role("heading", level=1)).to_have_text("Your preferences")
                shot("4-preferences")
                page.fill("#rl-first-name", "Beatrice")
                page.select_option("#rl-goal", "comeback")
                page.get_by_role("button", name="Save changes").click()
                expect(page.locator(".rl-notice")).to_contain_text("Saved.")
                shot("5-preferences-saved")
                reader = server.reader(address)
                assert (reader.first_name, reader.goal) == ("Beatrice", "comeback")

                page.get_by_role("button", name="Pause emails").click()
                expect(page.locator(".rl-notice")).to_contain_text("Paused.")
                shot("6-paused")
                assert server.reader(address).status == "unsubscribed"
                page.get_by_role("button", name="Resume emails").click()
                expect(page.locator(".rl-notice")).to_contain_text("Welcome back")
                assert server.reader(address).status == "active"

                page.goto(server.url("/unsubscribe/"
                                     + token_for(server, "unsubscribe", address)))
                expect(page.get_by_role("heading", level=1)).to_have_text("Unsubscribe?")
                shot("7-unsubscribe")
                assert server.reader(address).status == "active"
                page.get_by_role("button", name="Unsubscribe").click()
                expect(page.get_by_role("heading", level=1)).to_have_text(
                    "You're unsubscribed")
                shot("8-unsubscribed")
                assert server.reader(address).status == "unsubscribed"

                page.goto(server.url("/embed"))
                expect(page.get_by_role("heading", level=2)).to_have_text(
                    "Subscribe to Run Freely")
                shot("9-embed")
            finally:
                browser.close()
    finally:
        server.stop()
    assert not problems, problems  # e.g. a CSP violation would show up here
    assert len(list(shots.glob("*.png"))) == 10


@contextmanager
def browser_page(problems: list[str], **context: object) -> Iterator[object]:
    """A page of headless Chromium (a context with these options) noting console errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS,
                                             headless=True)
        try:
            page = browser.new_context(**context).new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            yield page
        finally:
            browser.close()


def test_signing_up_in_a_browser_stores_the_browsers_time_zone(sample_root: Path):
    from playwright.sync_api import expect

    server = start_site(sample_root, free_port())
    problems: list[str] = []
    try:
        with browser_page(problems, timezone_id=ZONE) as page:
            page.goto(server.url("/subscribe"))
            page.fill("#rl-email", "zoned.runner@example.net")
            page.get_by_role("button", name="Subscribe").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
        assert server.reader("zoned.runner@example.net").timezone == ZONE
    finally:
        server.stop()
    assert not problems, problems  # a script the CSP blocked would show up here


def test_changing_the_race_date_on_the_preferences_page_in_a_browser_saves_it(
        sample_root: Path):
    from playwright.sync_api import expect

    address = "freya.andersen@example.com"
    server = start_site(sample_root, free_port())
    problems: list[str] = []
    try:
        with browser_page(problems) as page:
            page.goto(server.url("/preferences/" + token_for(server, "preferences", address)))
            page.fill("#rl-race-date", RACE_DATE)
            page.get_by_role("button", name="Save changes").click()
            expect(page.locator(".rl-notice")).to_contain_text("Saved.")
            expect(page.locator("#rl-race-date")).to_have_value(RACE_DATE)
        assert server.reader(address).race_date == RACE_DATE
    finally:
        server.stop()
    assert not problems, problems
