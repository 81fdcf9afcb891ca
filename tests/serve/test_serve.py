"""`runletter serve` over real HTTP: the gunicorn server in a subprocess on a free port.

Signup and double opt-in through the outbox, one-click unsubscribe, preferences and the next
publish, every provider's signed webhook, tokens, CSRF, the rate limit and the audit trail.
"""

from __future__ import annotations

import html
import json
import re
import time
from datetime import date

import pytest
import requests
from click.testing import CliRunner
from icalendar import Calendar

from publisher.cli import main
from publisher.cli.serve import serve_command
from publisher.delivery.providers.webhook import SIGNATURE_WINDOW as SENDGRID_TOLERANCE
from publisher.delivery.tokens import PURPOSES
from publisher.errors import RunletterError
from publisher.serve.server import prepare
from publisher.store import now
from tests.helpers import webhooks as wh
from tests.helpers.live_server import (
    CONFIRM_HOURS,
    LiveServer,
    configure,
    form_token,
    link_in,
    messages_to,
    post_json,
    press_confirm,
    same_page,
    sample_site,
    signer,
    signup,
    start_site,
    store_contents,
    token_for,
)
from tests.helpers.support import copy_sample, free_port, project_store, set_race
from tests.samples import DATABASE_URL, GATED, HOST, RACE_DATE, RACE_NAME, SECRET, ZONE
from tests.samples import HIP_DRIVE as SENT  # the post whose (made-up) ledger rows webhooks update
from tests.samples import MOTOR_UNITS as POST

# -- the live server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, module_database: str):
    """One server for the module's tests, on each backend in turn."""
    with sample_site(tmp_path_factory.mktemp("serve") / "news", module_database) as server:
        yield server


# -- helpers ------------------------------------------------------------------------------





def save_preferences(site: LiveServer, address: str, **fields: str) -> requests.Response:
    """Press "Save changes" on the reader's preferences page with these fields changed."""
    reader = site.reader(address)
    url = site.url("/preferences/" + token_for(site, "preferences", address))
    session = requests.Session()
    page = session.get(url, timeout=10)
    return session.post(url, timeout=10, data={
        "csrf": form_token(page.text), "action": "save", "first_name": reader.first_name,
        "goal": reader.goal, "race_date": reader.race_date or "",
        "race_name": reader.race_name, "timezone": reader.timezone, **fields})






def add_sent_row(site: LiveServer, address: str, provider_id: str, post: str = SENT) -> None:
    """A ledger row as a publish through some provider would have left it."""
    with site.store() as store:
        reader = store.get(address)
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO deliveries(post, subscriber_id, email, goal, state, "
                "attempts, provider_id, updated_at) VALUES (:post, :subscriber_id, :email, "
                ":goal, 'sent', 1, :provider_id, :updated_at)",
                {
                    "post": post,
                    "subscriber_id": reader.id,
                    "email": reader.email,
                    "goal": reader.goal,
                    "provider_id": provider_id,
                    "updated_at": now(),
                },
            )


def ledger_row(site: LiveServer, address: str, post: str = SENT) -> tuple[str, str | None]:
    with site.store() as store:
        reader = store.get(address)
        return store.conn.execute("SELECT state, error FROM deliveries WHERE post = :post AND "
                                  "subscriber_id = :subscriber_id",
                                  {"post": post, "subscriber_id": reader.id}).fetchone()


# -- signup and double opt-in ---------------------------------------------------------------


def test_signup_confirm_makes_the_reader_active_and_records_consent(site):
    address = "new.runner@example.net"
    response = signup(site, address, "Robin", "half")
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    reader = site.reader(address)
    assert (reader.status, reader.goal, reader.first_name) == ("pending", "half", "Robin")

    [message] = messages_to(site.root, address)
    assert message["Subject"] == "Confirm your subscription to Run Freely"
    link = link_in(message, "confirm")
    assert link.startswith(site.url("/confirm/"))
    assert link in message.get_body(("html",)).get_content()

    head = requests.head(link, timeout=10)  # a link checker's HEAD confirms nothing
    assert head.status_code == 200 and site.reader(address).status == "pending"

    confirmed = press_confirm(link)
    assert confirmed.status_code == 200
    assert "You're in!" in html.unescape(confirmed.text)
    reader = site.reader(address)
    assert reader.status == "active"
    assert reader.consent_source == "signup form"
    assert reader.consent_ip == HOST
    assert abs(time.time() - _timestamp(reader.consent_at)) < 60
    assert [h[:2] for h in site.history(address)] == [(None, "pending"), ("pending", "active")]

    again = requests.get(link, timeout=10)  # a second click changes nothing
    assert again.status_code == 200 and "already confirmed" in again.text
    assert len(site.history(address)) == 2


def _timestamp(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_resignup_looks_the_same_and_never_reactivates(site):
    active, left = "lukas.berger@example.org", "ana.souza@example.com"
    before_active, before_left = site.reader(active), site.reader(left)
    assert (before_active.status, before_left.status) == ("active", "unsubscribed")
    old_confirm = signer.sign("confirm", before_left.id, CONFIRM_HOURS * 3600 - 120,
                              bind=before_left.email)

    fresh = signup(site, "first.timer@example.net", "Sam", "5k")
    for address in (active, left):
        response = signup(site, address, "Mallory", "ultra")
        assert same_page(response) == same_page(fresh)

    after = site.reader(active)  # untouched: its data only changes through its own link
    assert (after.status, after.goal, after.first_name) == ("active", "5k", "Lukas")
    assert "already subscribed" in messages_to(site.root, active)[-1]["Subject"]
    assert site.reader(left).status == "unsubscribed"
    assert len(site.history(left)) == 1

    # A confirmation link minted before the reader left does not bring them back…
    stale = requests.get(site.url(f"/confirm/{old_confirm}"), timeout=10)
    assert stale.status_code == 410
    assert site.reader(left).status == "unsubscribed"
    # …the one just sent for the new signup does.
    link = link_in(messages_to(site.root, left)[-1], "confirm")
    assert press_confirm(link).status_code == 200
    assert site.reader(left).status == "active"
    assert site.history(left)[-1][:2] == ("unsubscribed", "active")


def test_signup_form_validates_and_escapes(site):
    response = requests.post(site.url("/embed"), timeout=10, data={
        "email": "not-an-address", "first_name": "<script>alert(1)</script>", "goal": "5k"})
    assert response.status_code == 400
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert site.reader("not-an-address") is None


def test_signup_refuses_an_address_with_specials_with_a_message_on_the_page(site):
    response = signup(site, "angle<x>@example.org", "Eve", "5k")
    assert response.status_code == 400
    assert ("That email address doesn't look right: the part before the '@' contains '<', "
            "which mail providers refuse.") in html.unescape(response.text)
    assert site.reader("angle<x>@example.org") is None
    assert messages_to(site.root, "angle<x>@example.org") == []


def test_signup_refuses_a_name_with_a_unicode_next_line_with_a_message_on_the_page(site):
    response = signup(site, "nel@example.net", "Eve\x85Bcc: victim@example.com", "5k")
    assert response.status_code == 400
    assert ("Your first name can't contain line breaks or control characters."
            in html.unescape(response.text))
    assert site.reader("nel@example.net") is None


def test_the_signup_form_asks_for_a_race_and_fills_the_time_zone_by_a_script_the_csp_allows(
        site):
    page = requests.get(site.url("/subscribe"), timeout=10)
    assert 'type="date" name="race_date"' in page.text
    assert 'type="text" name="race_name"' in page.text
    assert 'type="hidden" name="timezone"' in page.text
    nonce = re.search(r'<script nonce="([^"]+)">[^<]*resolvedOptions\(\)\.timeZone',
                      page.text).group(1)
    assert f"script-src 'nonce-{nonce}'" in page.headers["Content-Security-Policy"]


def test_signup_stores_the_race_date_race_name_and_the_browsers_time_zone(site):
    signup(site, "racer@example.net", "Rae", "marathon", race_date=RACE_DATE,
           race_name=RACE_NAME, timezone=ZONE)
    reader = site.reader("racer@example.net")
    assert (reader.race_date, reader.race_name, reader.timezone) == (RACE_DATE, RACE_NAME,
                                                                     ZONE)


def test_signup_ignores_a_time_zone_the_browser_gives_that_is_not_one(site):
    response = signup(site, "far.away@example.net", timezone="Mars/Olympus_Mons")
    assert "Check your inbox" in response.text
    assert site.reader("far.away@example.net").timezone == ""


@pytest.mark.parametrize(("fields", "shown"), [
    ({"race_date": "28/03/2027"}, "Please give your race date as a date, e.g. 2027-03-28."),
    ({"race_date": "0001-01-01"}, "Please give a race date from 1900-01-01 to 2199-12-31."),
    ({"race_date": "9999-12-31"}, "Please give a race date from 1900-01-01 to 2199-12-31."),
    ({"race_name": "x" * 121}, "Your race name can be at most 120 characters, on one line.")])
def test_signup_with_a_bad_race_shows_the_form_again_with_a_message(site, fields, shown):
    response = signup(site, "bad.race@example.net", **fields)
    assert response.status_code == 400
    assert shown in html.unescape(response.text)
    assert 'name="race_date"' in response.text
    assert site.reader("bad.race@example.net") is None


def test_embed_form_needs_no_csrf_and_the_honeypot_catches_bots(site):
    response = requests.post(site.url("/embed"), timeout=10,
                             data={"email": "embedded@example.net", "goal": "ultra"})
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert site.reader("embedded@example.net").status == "pending"
    assert "X-Frame-Options" not in response.headers
    assert "frame-ancestors *" in response.headers["Content-Security-Policy"]

    bot = requests.post(site.url("/embed"), timeout=10, data={
        "email": "bot@example.net", "goal": "ultra", "website": "http://spam.example"})
    assert same_page(bot)[0] == 200 and "Check your inbox" in bot.text
    assert site.reader("bot@example.net") is None


def test_csrf_missing_or_forged_is_refused(site):
    session = requests.Session()
    page = session.get(site.url("/subscribe"), timeout=10)
    token = form_token(page.text)
    data = {"email": "csrf.victim@example.net", "goal": "5k"}

    assert requests.post(site.url("/subscribe"), data=data, timeout=10).status_code == 400
    assert session.post(site.url("/subscribe"), data={**data, "csrf": "forged"},
                        timeout=10).status_code == 400
    other = requests.Session()  # a valid token but another browser's cookie
    other.get(site.url("/subscribe"), timeout=10)
    assert other.post(site.url("/subscribe"), data={**data, "csrf": token},
                      timeout=10).status_code == 400
    assert site.reader("csrf.victim@example.net") is None

    prefs = site.url("/preferences/" + token_for(site, "preferences", "kwame.mensah@example.com"))
    response = requests.post(prefs, data={"action": "unsubscribe"}, timeout=10)
    assert response.status_code == 400
    assert site.reader("kwame.mensah@example.com").status == "active"


@pytest.mark.usefixtures("backend")
def test_rate_limit_answers_429(sample_root):
    server = start_site(sample_root, free_port(), signups_per_hour=2)
    try:
        for n in range(2):
            assert signup(server, f"limit{n}@example.net").status_code == 200
        refused = signup(server, "limit2@example.net")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "3600"
        assert "Too many signups" in refused.text
        assert server.reader("limit2@example.net") is None
    finally:
        server.stop()


# -- unsubscribe and tokens -----------------------------------------------------------------


def test_one_click_post_unsubscribes_and_get_does_not(site):
    address = "zoe.marchetti@example.com"
    url = site.url("/unsubscribe/" + token_for(site, "unsubscribe", address))

    page = requests.get(url, timeout=10)
    assert page.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
    assert site.reader(address).status == "active"  # a scanner's GET changes nothing

    response = requests.post(url, data="List-Unsubscribe=One-Click", allow_redirects=False,
                             headers={"Content-Type": "application/x-www-form-urlencoded"},
                             timeout=10)
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert site.reader(address).status == "unsubscribed"
    assert site.history(address)[-1] == ("active", "unsubscribed",
                                         "one-click unsubscribe (RFC 8058)")
    assert requests.post(url, data={"List-Unsubscribe": "One-Click"},
                         timeout=10).status_code == 200
    assert len(site.history(address)) == 2  # once only


def test_a_head_request_does_not_unsubscribe(site):
    address = "mateo.garcia@example.org"
    url = site.url("/unsubscribe/" + token_for(site, "unsubscribe", address))
    response = requests.head(url, timeout=10)  # a link scanner's probe
    assert response.status_code == 200
    assert site.reader(address).status == "active"
    assert len(site.history(address)) == 1


def test_a_get_of_the_confirmation_link_only_shows_a_button(site):
    address = "yuki.sato@example.com"
    link = site.url("/confirm/" + token_for(site, "confirm", address, ttl=3600))
    page = requests.get(link, timeout=10)  # a mail scanner following the link
    assert page.status_code == 200
    assert re.search(r'<form method="post"[^>]*>\s*<button', page.text)
    assert site.reader(address).status == "pending"
    assert len(site.history(address)) == 1


def test_the_preferences_page_answers_head_without_refusing_it(site):
    address = "chloe.lefevre@example.org"
    url = site.url("/preferences/" + token_for(site, "preferences", address))
    assert requests.head(url, timeout=10).status_code == 200
    assert site.reader(address).status == "active"


def test_no_page_changes_anything_on_get_or_head(site, monkeypatch):
    """Every rule of the app that answers GET, walked with valid links of every purpose for
    readers in every state (a paused one too): the store stays as it was, and no page fails."""
    monkeypatch.setenv("RUNLETTER_SECRET", SECRET)
    app, _, _ = prepare(None, None, None, start=site.root)
    with site.store() as store, store.transaction():
        store.set_status(store.get("maren.holm@example.com").id, "unsubscribed",
                         "paused (preferences page)")
    readers = ["ngozi.eze@example.com", "siobhan.kelly@example.com", "astrid.nilsen@example.com",
               "maren.holm@example.com", "olivia.brown@example.com", "carmen.vidal@example.com"]
    rules = [r for r in app.url_map.iter_rules() if "GET" in r.methods]
    assert {"confirm", "unsubscribe", "preferences", "subscribe"} <= {r.endpoint for r in rules}
    before = store_contents(site)
    for rule in rules:
        for address in readers:
            values = {arg: token_for(site, rule.endpoint, address, ttl=3600)
                      if arg == "token" and rule.endpoint in PURPOSES else "x"
                      for arg in rule.arguments}
            path = rule.build(values, append_unknown=False)[1]
            for method in (requests.get, requests.head):
                response = method(site.url(path), timeout=10, allow_redirects=False)
                assert response.status_code < 500, (method, path)
                assert store_contents(site) == before, (method.__name__, rule.rule, address)


@pytest.mark.usefixtures("backend")
def test_a_route_added_later_cannot_write_on_get_or_head(sample_root):
    app, _, _ = prepare(None, None, None, start=sample_root)
    readers = app.extensions["runletter.readers"]

    @app.route("/later/<address>", methods=["GET", "POST"])
    def later(address: str):  # a careless future page that changes a reader on any method
        store = readers.store()
        with store.transaction():
            store.add(address, goal="5k", first_name="Later")
        return "added"

    client = app.test_client()
    assert client.get("/later/get@example.net").status_code == 500
    assert client.head("/later/head@example.net").status_code == 500
    assert client.post("/later/post@example.net").status_code == 200
    with project_store(sample_root) as store:
        assert [store.get(f"{m}@example.net") is not None for m in ("get", "head", "post")] == [
            False, False, True]


def test_forged_and_expired_tokens_change_nothing(site):
    address = "amara.okafor@example.com"
    good = token_for(site, "unsubscribe", address)
    forged = good[:-2] + ("AA" if good[-2:] != "AA" else "BB")
    reader_id = good.split(".")[0]
    relabelled = good.replace(reader_id, format(int(reader_id, 16) + 1, "x"), 1)
    wrong_purpose = token_for(site, "preferences", address)
    for token in (forged, relabelled, wrong_purpose, "1.0.x", "nonsense"):
        for method in (requests.get, requests.post):
            response = method(site.url(f"/unsubscribe/{token}"), timeout=10,
                              data={"List-Unsubscribe": "One-Click"})
            assert response.status_code == 400, token
            assert "isn't valid" in html.unescape(response.text)
    assert requests.get(site.url(f"/preferences/{forged}"), timeout=10).status_code == 400
    assert requests.get(site.url(f"/confirm/{forged}"), timeout=10).status_code == 400

    expired = requests.get(site.url("/confirm/" + token_for(site, "confirm", address, ttl=-5)),
                           timeout=10)
    assert expired.status_code == 410 and "expired" in expired.text
    assert site.reader(address).status == "active"
    assert len(site.history(address)) == 1


# -- preferences -------------------------------------------------------------------------------


def test_preferences_goal_change_reaches_the_next_publish(site, monkeypatch):
    address = "darcy.obrien@example.org"
    assert site.reader(address).goal == "marathon"
    url = site.url("/preferences/" + token_for(site, "preferences", address))
    session = requests.Session()
    page = session.get(url, timeout=10)
    assert page.status_code == 200 and 'value="marathon" selected' in page.text
    saved = session.post(url, timeout=10, data={
        "csrf": form_token(page.text), "action": "save", "first_name": "Darcy",
        "goal": "comeback"})
    assert saved.status_code == 200 and "Saved." in saved.text
    assert saved.history[0].status_code == 303
    reader = site.reader(address)
    assert (reader.goal, reader.first_name, reader.status) == ("comeback", "Darcy", "active")

    monkeypatch.chdir(site.root)
    monkeypatch.setenv("RUNLETTER_SECRET", SECRET)
    monkeypatch.setenv(DATABASE_URL, site.env[DATABASE_URL])  # the server's store
    result = CliRunner().invoke(main, ["publish", POST, "--yes"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [message] = [m for m in messages_to(site.root, address)
                 if m["X-Runletter-Edition"].startswith(POST)]
    assert message["X-Runletter-Edition"] == f"{POST}/comeback"


def test_pause_resume_and_unsubscribe_from_preferences(site):
    address = "ingrid.solberg@example.com"
    url = site.url("/preferences/" + token_for(site, "preferences", address))
    session = requests.Session()

    def act(action: str) -> requests.Response:
        page = session.get(url, timeout=10)
        return session.post(url, data={"csrf": form_token(page.text), "action": action},
                            timeout=10)

    assert "Paused." in act("pause").text
    assert site.reader(address).status == "unsubscribed"
    assert "Resume emails" in session.get(url, timeout=10).text
    assert "Welcome back" in act("resume").text
    assert site.reader(address).status == "active"
    act("pause")
    assert "unsubscribed" in act("unsubscribe").text
    assert "Resume emails" not in session.get(url, timeout=10).text
    act("resume")  # no longer offered, and refused if sent anyway
    assert site.reader(address).status == "unsubscribed"
    assert [h[2] for h in site.history(address)][1:] == [
        "paused (preferences page)", "resumed (preferences page)",
        "paused (preferences page)", "unsubscribed (preferences page)"]

    resubscribe = act("resubscribe")  # coming back takes a new confirmation
    assert "Check your inbox" in resubscribe.text
    assert site.reader(address).status == "unsubscribed"
    assert press_confirm(link_in(messages_to(site.root, address)[-1], "confirm")
                         ).status_code == 200
    assert site.reader(address).status == "active"


def test_preferences_show_and_save_the_race_date_race_name_and_time_zone(site):
    address = "sven.karlsson@example.org"
    saved = save_preferences(site, address, race_date=RACE_DATE, race_name=RACE_NAME,
                             timezone=ZONE)
    assert saved.status_code == 200 and "Saved." in saved.text
    reader = site.reader(address)
    assert (reader.race_date, reader.race_name, reader.timezone) == (RACE_DATE, RACE_NAME,
                                                                     ZONE)
    assert f'value="{RACE_DATE}"' in saved.text and f'value="{RACE_NAME}"' in saved.text
    assert f'<option value="{ZONE}" selected>' in saved.text


def test_preferences_clear_the_race_and_time_zone_when_left_empty(site):
    address = "isabella.rossi@example.com"
    save_preferences(site, address, race_date=RACE_DATE, race_name=RACE_NAME, timezone=ZONE)
    save_preferences(site, address, race_date="", race_name="", timezone="")
    reader = site.reader(address)
    assert (reader.race_date, reader.race_name, reader.timezone) == (None, "", "")


@pytest.mark.parametrize(("fields", "shown"), [
    ({"race_date": "2027-02-30"}, "Please give your race date as a date, e.g. 2027-03-28."),
    ({"race_date": "9999-12-31"}, "Please give a race date from 1900-01-01 to 2199-12-31."),
    ({"timezone": "Mars/Olympus_Mons"}, "Please pick a time zone from the list.")])
def test_preferences_refuse_a_bad_race_date_or_time_zone_with_a_message(site, fields, shown):
    address = "arjun.reddy@example.com"
    before = site.reader(address)
    refused = save_preferences(site, address, race_name=RACE_NAME, **fields)
    assert refused.status_code == 400 and shown in html.unescape(refused.text)
    assert site.reader(address) == before


# -- webhooks -------------------------------------------------------------------------------


def test_postmark_webhooks(site):
    bounced, complained = "jamal.hassan@example.org", "elena.popescu@example.com"
    add_sent_row(site, bounced, "pm-7d1c2f9a-0000-4f3b-9e43-1c2b3a4d5e6f")
    add_sent_row(site, complained, "pm-11111111-2222-3333-4444-555555555555")
    bounce = wh.postmark_bounce(bounced, "pm-7d1c2f9a-0000-4f3b-9e43-1c2b3a4d5e6f")

    assert post_json(site, "postmark", bounce).status_code == 401
    wrong = {"Authorization": wh.postmark_auth(password="guess")}
    assert post_json(site, "postmark", bounce, wrong).status_code == 401
    auth = {"Authorization": wh.postmark_auth()}
    assert post_json(site, "postmark", b"{not json", auth).status_code == 400
    assert site.reader(bounced).status == "active"
    assert ledger_row(site, bounced) == ("sent", None)

    response = post_json(site, "postmark", bounce, auth)
    assert response.status_code == 200 and response.json()["changed"] == 1
    assert site.reader(bounced).status == "bounced"
    state, error = ledger_row(site, bounced)
    assert state == "rejected" and error.startswith("bounce (postmark): HardBounce")
    assert site.history(bounced)[-1][2].startswith("postmark webhook: bounce")

    complaint = wh.postmark_complaint(complained, "pm-11111111-2222-3333-4444-555555555555")
    assert post_json(site, "postmark", complaint, auth).status_code == 200
    assert site.reader(complained).status == "complained"
    assert ledger_row(site, complained) == ("sent", "complaint (postmark): spam complaint")
    # a later bounce never weakens a complaint
    post_json(site, "postmark", wh.postmark_bounce(complained, "x"), auth)
    assert site.reader(complained).status == "complained"


def test_mailgun_webhooks(site):
    bounced, left, complained = ("hannah.schmidt@example.com", "mei.chen@example.org",
                                 "noor.rahman@example.org")
    batch_id = "20261124093012.a1b2c3d4e5f6@runfreely.example.org"
    for address in (bounced, left, complained):
        add_sent_row(site, address, f"<{batch_id}>")  # one id for the whole API call

    forged = wh.mailgun_payload("failed", bounced, batch_id, severity="permanent",
                                key="not-the-key")
    assert post_json(site, "mailgun", forged).status_code == 403
    stale = wh.mailgun_payload("failed", bounced, batch_id, severity="permanent",
                               timestamp=int(time.time()) - 600)
    assert post_json(site, "mailgun", stale).status_code == 403
    unsigned = wh.mailgun_payload("failed", bounced, batch_id, severity="permanent")
    del unsigned["signature"]
    assert post_json(site, "mailgun", unsigned).status_code == 400
    assert site.reader(bounced).status == "active"
    assert ledger_row(site, bounced) == ("sent", None)

    temporary = wh.mailgun_payload("failed", bounced, batch_id, severity="temporary")
    assert post_json(site, "mailgun", temporary).status_code == 200
    assert site.reader(bounced).status == "active"

    good = wh.mailgun_payload("failed", bounced, batch_id, severity="permanent")
    assert post_json(site, "mailgun", good).status_code == 200
    assert site.reader(bounced).status == "bounced"
    state, error = ledger_row(site, bounced)
    assert state == "rejected" and "No such user" in error
    assert ledger_row(site, left) == ("sent", None)  # same batch id, other reader untouched

    history = len(site.history(bounced))
    assert post_json(site, "mailgun", good).status_code == 409  # replayed token
    assert len(site.history(bounced)) == history

    assert post_json(site, "mailgun", wh.mailgun_payload("unsubscribed", left, batch_id)
                     ).status_code == 200
    assert site.reader(left).status == "unsubscribed"
    assert ledger_row(site, left)[0] == "sent"
    assert post_json(site, "mailgun", wh.mailgun_payload("complained", complained, batch_id)
                     ).status_code == 200
    assert site.reader(complained).status == "complained"


def test_sendgrid_webhooks(site):
    bounced, reported, left = ("pedro.almeida@example.com", "priya.nair@example.com",
                               "daniel.cohen@example.com")
    for n, address in enumerate((bounced, reported, left)):
        add_sent_row(site, address, f"sgXMessageId{n}")
    events = [wh.sendgrid_event("delivered", bounced, "sgXMessageId0"),
              wh.sendgrid_event("bounce", bounced, "sgXMessageId0", type="bounce",
                                reason="550 5.1.1 unknown user", status="5.1.1"),
              wh.sendgrid_event("spamreport", reported, "sgXMessageId1"),
              wh.sendgrid_event("group_unsubscribe", left, "sgXMessageId2", asm_group_id=1)]
    body = json.dumps(events).encode()

    assert post_json(site, "sendgrid", body).status_code == 401
    tampered = body.replace(b"bounce", b"bounce ", 1)
    assert post_json(site, "sendgrid", tampered, wh.sendgrid_headers(body)).status_code == 403
    assert post_json(site, "sendgrid", body, wh.sendgrid_headers(body, timestamp="1")
                     | {"X-Twilio-Email-Event-Webhook-Timestamp": "2"}).status_code == 403
    assert [site.reader(a).status for a in (bounced, reported, left)] == ["active"] * 3

    response = post_json(site, "sendgrid", body, wh.sendgrid_headers(body))
    assert response.status_code == 200 and response.json()["changed"] == 3
    assert [site.reader(a).status for a in (bounced, reported, left)] == [
        "bounced", "complained", "unsubscribed"]
    assert ledger_row(site, bounced) == ("rejected",
                                         "bounce (sendgrid): 550 5.1.1 unknown user")
    assert ledger_row(site, reported) == ("sent", "complaint (sendgrid): spam report")
    # SendGrid retries whole batches: a retry is acknowledged and changes nothing
    history = [len(site.history(a)) for a in (bounced, reported, left)]
    assert post_json(site, "sendgrid", body, wh.sendgrid_headers(body)).json()["changed"] == 0
    assert [len(site.history(a)) for a in (bounced, reported, left)] == history


def test_a_signed_sendgrid_batch_older_than_the_window_is_refused(site):
    address = "tomasz.nowak@example.com"
    body = json.dumps([wh.sendgrid_event("spamreport", address, "sgXMessageIdOld")]).encode()
    captured = str(int(time.time()) - SENDGRID_TOLERANCE - 60)  # a request seen on the wire
    replayed = post_json(site, "sendgrid", body, wh.sendgrid_headers(body, timestamp=captured))
    assert replayed.status_code == 403 and "stale" in replayed.json()["error"]
    assert site.reader(address).status == "active"
    assert len(site.history(address)) == 1


def test_a_sendgrid_timestamp_far_in_the_future_is_refused(site):
    address = "aiyana.redcloud@example.org"
    body = json.dumps([wh.sendgrid_event("spamreport", address, "sgXMessageIdNew")]).encode()
    ahead = str(int(time.time()) + SENDGRID_TOLERANCE + 60)
    response = post_json(site, "sendgrid", body, wh.sendgrid_headers(body, timestamp=ahead))
    assert response.status_code == 403
    assert site.reader(address).status == "active"


def test_sendgrid_event_ids_are_kept_as_long_as_their_signature_is_accepted(site):
    address = "rahul.mehta@example.com"
    event = wh.sendgrid_event("unsubscribe", address, "sgXMessageIdEdge")
    body = json.dumps([event]).encode()
    oldest = time.time() - SENDGRID_TOLERANCE  # the earliest a still-valid batch was handled
    with site.store() as store, store.transaction() as conn:
        conn.execute("INSERT INTO serve_webhook_seen(provider, token, at) VALUES (:provider, "
                     ":token, :at)",
                     {"provider": "sendgrid", "token": event["sg_event_id"],
                      "at": oldest - SENDGRID_TOLERANCE + 5})
    edge = str(int(time.time()) - SENDGRID_TOLERANCE + 5)
    response = post_json(site, "sendgrid", body, wh.sendgrid_headers(body, timestamp=edge))
    assert response.status_code == 200 and response.json()["changed"] == 0
    assert site.reader(address).status == "active"


def test_ses_webhooks(site):
    bounced, complained = "hiroshi.tanaka@example.com", "bjorn.lindqvist@example.com"
    add_sent_row(site, bounced, "0100018c1d2e3f40-aaaa-bbbb-cccc-000000000001-000000")
    add_sent_row(site, complained, "0100018c1d2e3f40-aaaa-bbbb-cccc-000000000002-000000")
    bounce = wh.sns_notification(wh.ses_bounce(
        bounced, "0100018c1d2e3f40-aaaa-bbbb-cccc-000000000001-000000"))

    headers = {"x-amz-sns-message-type": "Notification"}
    assert post_json(site, "ses", bounce, headers).status_code == 401  # unsigned
    signed = wh.sign_sns(bounce, "1")
    altered = {**signed, "Message": signed["Message"].replace("Permanent", "Transient")}
    assert post_json(site, "ses", altered, headers).status_code == 403
    impostor = wh.sign_sns(bounce, "1", key=_other_rsa_key())
    assert post_json(site, "ses", impostor, headers).status_code == 403
    other_topic = wh.sign_sns(wh.sns_notification(wh.ses_bounce(bounced, "x"),
                                                  topic=wh.TOPIC_ARN + "-other"))
    assert post_json(site, "ses", other_topic, headers).status_code == 403
    assert site.reader(bounced).status == "active"

    response = post_json(site, "ses", signed, headers)  # SignatureVersion 1 (SHA1)
    assert response.status_code == 200 and response.json()["changed"] == 1
    assert site.reader(bounced).status == "bounced"
    assert ledger_row(site, bounced)[0] == "rejected"
    assert post_json(site, "ses", signed, headers).json()["changed"] == 0  # SNS retry

    complaint = wh.sign_sns(wh.sns_notification(wh.ses_complaint(
        complained, "0100018c1d2e3f40-aaaa-bbbb-cccc-000000000002-000000"),
        subject="Amazon SES Email Event Notification"), "2")  # SignatureVersion 2 (SHA256)
    assert post_json(site, "ses", complaint, headers).status_code == 200
    assert site.reader(complained).status == "complained"
    assert ledger_row(site, complained) == ("sent", "complaint (ses): complaint")

    confirmation = wh.sign_sns(wh.sns_subscription_confirmation(), "2")
    response = post_json(site, "ses", confirmation,
                         {"x-amz-sns-message-type": "SubscriptionConfirmation"})
    assert response.status_code == 200
    assert confirmation["SubscribeURL"] in site.log()  # logged for the operator, not fetched


def _other_rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_webhook_limits_and_unknown_providers(site):
    assert post_json(site, "sparkpost", {}).status_code == 404
    huge = b"[" + b'{"event":"open"},' * 150_000 + b"{}]"
    assert len(huge) > 2 * 1024 * 1024
    response = post_json(site, "sendgrid", huge, wh.sendgrid_headers(huge))
    assert response.status_code == 413
    assert "Traceback" not in response.text


DEEP = b"[" * 100_000


@pytest.mark.parametrize("provider", ["mailgun", "ses"])
def test_deeply_nested_json_is_a_400_not_a_crash(site, provider):
    logged = len(site.log())
    response = post_json(site, provider, DEEP, {"x-amz-sns-message-type": "Notification"})
    assert response.status_code == 400
    assert "RecursionError" not in site.log()[logged:]


def test_deeply_nested_json_after_valid_credentials_is_a_400(site):
    postmark = post_json(site, "postmark", DEEP, {"Authorization": wh.postmark_auth()})
    sendgrid = post_json(site, "sendgrid", DEEP, wh.sendgrid_headers(DEEP))
    assert (postmark.status_code, sendgrid.status_code) == (400, 400)


def test_deeply_nested_json_inside_a_signed_sns_message_is_a_400(site):
    signed = wh.sign_sns(wh.sns_notification({"notificationType": "Bounce"}) | {
        "Message": DEEP.decode()})
    response = post_json(site, "ses", signed, {"x-amz-sns-message-type": "Notification"})
    assert response.status_code == 400


def test_webhook_credentials_are_checked_before_the_body_is_read(site):
    postmark = post_json(site, "postmark", DEEP, {"Authorization": wh.postmark_auth("x", "y")})
    sendgrid = post_json(site, "sendgrid", DEEP)
    assert (postmark.status_code, sendgrid.status_code) == (401, 401)


def test_a_mailgun_signature_that_is_not_ascii_is_a_400(site):
    payload = wh.mailgun_payload("complained", "felix.wagner@example.org", "<x@y>")
    payload["signature"]["signature"] = "é" * 64
    assert post_json(site, "mailgun", payload).status_code == 400
    payload["signature"]["token"] = "\ud800"
    assert post_json(site, "mailgun", payload).status_code == 400
    assert site.reader("felix.wagner@example.org").status == "active"


# -- pages, headers and the audit trail ---------------------------------------------------------


def test_security_headers_and_error_pages(site):
    page = requests.get(site.url("/subscribe"), timeout=10)
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "HttpOnly" in page.headers["Set-Cookie"] and "SameSite=Lax" in page.headers["Set-Cookie"]
    assert '<link rel="stylesheet" href="/style.css">' in page.text
    assert requests.get(site.url("/style.css"), timeout=10).headers["Content-Type"].startswith(
        "text/css")
    missing = requests.get(site.url("/nowhere"), timeout=10)
    assert missing.status_code == 404 and "There is no page here" in missing.text
    too_big = requests.post(site.url("/embed"), data={"email": "x" * 20_000}, timeout=10)
    assert too_big.status_code == 413


def test_builtin_layouts_stand_in_for_missing_ones(sample_root):
    assert not (sample_root / "layouts/web").exists()  # the sample overrides no page
    app, options, _ = prepare(None, None, None, start=sample_root)
    assert options["bind"] == "127.0.0.1:8000" and options["worker_class"] == "gthread"
    client = app.test_client()
    assert client.get("/subscribe").status_code == 200
    assert client.get("/embed").status_code == 200


def test_bad_serve_settings_stop_the_start_with_a_message(sample_root):
    configure(sample_root, 8000, sendgrid_public_key="bm90IGEga2V5")
    with pytest.raises(RunletterError, match="sendgrid_public_key"):
        prepare(None, None, None, start=sample_root)
    configure(copy_sample(sample_root.parent / "other"), 8000, ses_certificate="missing.pem")
    with pytest.raises(RunletterError, match="ses_certificate"):
        prepare(None, None, None, start=sample_root.parent / "other")
    result = CliRunner().invoke(serve_command, ["--help"])
    assert result.exit_code == 0 and "--port" in result.output


def test_serve_warns_of_a_misspelled_provider_variable(sample_root, monkeypatch, capsys):
    monkeypatch.setenv("RUNLETTER_OUTBOX_PAHT", "elsewhere")
    prepare(None, None, None, start=sample_root)
    warning = capsys.readouterr().err
    assert "warning: RUNLETTER_OUTBOX_PAHT names no outbox setting" in warning
    assert "(did you mean RUNLETTER_OUTBOX_PATH?)" in warning


def test_the_audit_table_has_every_change(site):
    """Runs last in this module: every reader's history chains up to their current status."""
    with site.store() as store:
        readers = list(store.list())
        assert len(readers) > 70
        for reader in readers:
            history = store.history(reader.email)
            assert history, reader.email
            assert history[0].old_status is None
            for before, after in zip(history, history[1:], strict=False):
                assert after.old_status == before.new_status, (reader.email, history)
            assert history[-1].new_status == reader.status, (reader.email, history)


def test_a_removed_readers_link_does_not_work_for_a_new_reader_given_the_same_id(site):
    with site.store() as store:
        last = max(store.list(), key=lambda r: r.id)
        old_link = site.url("/unsubscribe/" + token_for(site, "unsubscribe", last.email))
        store.remove(last.email)
        if store.dialect == "postgresql":  # as SQLite does, reusing the highest id (a sequence
            # never gives one twice by itself, but a restored or copied store may)
            store.conn.execute("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), "
                               ":value0)",
                               {"value0": last.id - 1})
        newcomer = store.add("new.reader@example.net", goal="5k", first_name="Nia")
    assert newcomer.id == last.id  # SQLite reuses the highest rowid after a delete
    response = requests.post(old_link, data="List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"},
                             allow_redirects=False, timeout=10)
    assert 400 <= response.status_code < 500
    assert site.reader("new.reader@example.net").status == "active"


# -- the reader's plan: ready at a gate, and the calendar feed -------------------------------


def test_a_reader_says_ready_with_one_post_and_neither_get_nor_head_records_it(site):
    address = "freya.andersen@example.com"
    url = site.url("/ready/" + token_for(site, "ready", address, item=GATED))
    before = store_contents(site)
    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert "Set-Cookie" not in page.headers  # no CSRF cookie: the signed token is the authority
    assert requests.head(url, timeout=10).status_code == 200
    assert store_contents(site) == before

    pressed, again = requests.post(url, timeout=10), requests.post(url, timeout=10)
    assert same_page(pressed) == same_page(again)
    assert pressed.status_code == 200 and "You're ready" in html.unescape(pressed.text)
    with site.store() as store:
        assert store.ready_at(store.get(address).id, GATED) is not None
    assert [h[2] for h in site.history(address)].count(f"ready after {GATED}") == 1


def test_a_forged_ready_link_is_a_404_over_http(site):
    token = token_for(site, "ready", "freya.andersen@example.com", item=GATED)
    response = requests.post(site.url(f"/ready/{token[:-2]}xx"), timeout=10)
    assert response.status_code == 404 and "There is no page here" in response.text


def test_the_calendar_feed_is_text_calendar_with_the_readers_race_day(site):
    address = "connor.walsh@example.org"
    with site.store() as store:
        set_race(store, address, "2027-04-25", "London Marathon")
    response = requests.get(site.url(f"/calendar/{token_for(site, 'calendar', address)}.ics"),
                            timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    calendar = Calendar.from_ical(response.content)
    assert str(calendar["X-WR-CALNAME"]) == "Run Freely"
    [race] = [e for e in calendar.walk("VEVENT") if str(e["UID"]).startswith("race-day.")]
    assert (str(race["SUMMARY"]), race.decoded("DTSTART")) == ("London Marathon",
                                                               date(2027, 4, 25))
