"""The serve app in-process (Flask's test client): the request's store on `g` and its
teardown, and the reader's plan pages (/ready/<token>, /calendar/<token>.ics)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from html import unescape

import pytest
from icalendar import Calendar

from publisher.serve.db import get_store
from publisher.serve.server import prepare
from publisher.store import Store
from tests.helpers.live_server import signer
from tests.helpers.support import (
    import_sample,
    move_race,
    project_store,
    set_race,
    store_rows,
    wait_for_a_waiting_writer,
)
from tests.samples import GATED, ON_BOTH_BACKENDS

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets


def test_a_transaction_a_failed_request_left_open_is_rolled_back_at_teardown(sample_root):
    app, _, _ = prepare(None, None, None, start=sample_root)

    @app.post("/careless")
    def careless():  # a future view that opens a transaction by hand and then fails
        store = get_store()
        store.conn.execute("BEGIN IMMEDIATE" if store.dialect == "sqlite" else "BEGIN")
        raise RuntimeError("bug")

    @app.post("/add/<address>")
    def add(address: str):
        get_store().add(address, goal="5k")
        return "added"

    client = app.test_client()  # one thread: both requests use its one connection
    assert client.post("/careless").status_code == 500
    assert client.post("/add/after@example.net").status_code == 200
    with project_store(sample_root) as store:
        assert store.get("after@example.net") is not None  # committed, not left pending


def test_a_signup_while_another_adds_the_same_address_is_the_same_check_your_inbox(
        sample_root):
    app, _, _ = prepare(None, None, None, start=sample_root)
    answers = []

    def sign_up() -> None:
        answers.append(app.test_client().post("/embed", data={"email": "twice@example.net"}))

    with project_store(sample_root) as other, other.transaction():
        other.add("twice@example.net", status="pending")  # an earlier signup, not committed
        request = threading.Thread(target=sign_up)
        request.start()
        wait_for_a_waiting_writer(other)
    request.join(10)
    [answer] = answers
    assert answer.status_code == 200 and "Check your inbox" in answer.text


# -- /ready/<token> and /calendar/<token>.ics ---------------------------------------------

RUNNER = "maren.holm@example.com"  # an active sample reader, training for a marathon
LEFT_READER = "ana.souza@example.com"  # a sample reader who unsubscribed


@pytest.fixture
def client(sample_root):
    """A test client of the sample newsletter's app, its readers imported."""
    import_sample(sample_root)
    app, _, _ = prepare(None, None, None, start=sample_root)
    return app.test_client()


@pytest.fixture
def db(sample_root, client):
    """The store the client's app writes, opened beside it."""
    with project_store(sample_root) as opened:
        yield opened


def ready_path(store: Store, address: str, step: str = GATED) -> str:
    reader = store.get(address)
    return "/ready/" + signer.sign("ready", reader.id, bind=reader.email, item=step)


def calendar_path(store: Store, address: str) -> str:
    reader = store.get(address)
    return f"/calendar/{signer.sign('calendar', reader.id, bind=reader.email)}.ics"


def test_a_get_of_a_ready_link_shows_one_button_that_posts_back_and_records_nothing(client, db):
    before = store_rows(db)
    page = client.get(ready_path(db, RUNNER))
    assert page.status_code == 200
    assert page.text.count("<button") == 1 and "I'm ready for the next phase" in unescape(page.text)
    assert '<form method="post"' in page.text and "action=" not in page.text
    assert "rl_csrf" not in page.headers.get("Set-Cookie", "")
    assert store_rows(db) == before


def test_a_head_of_a_ready_link_records_nothing(client, db):
    before = store_rows(db)
    assert client.head(ready_path(db, RUNNER)).status_code == 200
    assert store_rows(db) == before


def test_a_post_to_a_ready_link_records_the_step_and_audits_it_once(client, db):
    path = ready_path(db, RUNNER)
    first, second = client.post(path), client.post(path)
    assert first.status_code == second.status_code == 200
    assert "You're ready" in unescape(first.text) and first.text.count("<button") == 0
    assert second.text.replace(_nonce(second), "") == first.text.replace(_nonce(first), "")
    assert db.ready_at(db.get(RUNNER).id, GATED) is not None
    assert [h.reason for h in db.history(RUNNER)].count(f"ready after {GATED}") == 1


def test_a_ready_link_for_a_step_with_a_long_key_works(client, db):
    step = "marathon-build-for-first-timers-spring/" + "07-" + "the-long-run-that-decides" * 4
    assert client.post(ready_path(db, RUNNER, step)).status_code == 200
    assert db.ready_at(db.get(RUNNER).id, step) is not None


def test_a_get_after_the_reader_said_ready_says_so_without_a_button(client, db):
    path = ready_path(db, RUNNER)
    client.post(path)
    page = client.get(path)
    assert page.status_code == 200 and "You're ready" in unescape(page.text)
    assert "<button" not in page.text


def test_a_forged_ready_link_is_a_404_and_records_nothing(client, db):
    reader = db.get(RUNNER)
    genuine = ready_path(db, RUNNER).removeprefix("/ready/")
    forged = [genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB"),
              signer.sign("preferences", reader.id, bind=reader.email, item=GATED),
              signer.sign("ready", reader.id, bind=reader.email),  # names no step
              "nonsense", "x" * 500]
    before = store_rows(db)
    for token in forged:
        for method in (client.get, client.post):
            response = method(f"/ready/{token}")
            assert response.status_code == 404, (method, token)
            assert "There is no page here" in response.text
    assert store_rows(db) == before


def test_a_ready_link_for_one_reader_cannot_mark_another(client, db):
    reader, other = db.get(RUNNER), db.get("lukas.berger@example.org")
    token = ready_path(db, RUNNER).removeprefix("/ready/")
    _, rest = token.split(".", 1)
    assert client.post(f"/ready/{other.id:x}.{rest}").status_code == 404
    assert db.ready_at(other.id, GATED) is None and db.ready_at(reader.id, GATED) is None


def test_a_ready_link_of_a_reader_who_is_not_active_says_so_and_records_nothing(client, db):
    response = client.post(ready_path(db, LEFT_READER))
    assert response.status_code == 200
    assert "You're not getting emails" in unescape(response.text)
    assert db.ready_at(db.get(LEFT_READER).id, GATED) is None
    assert len(db.history(LEFT_READER)) == 1


def test_the_calendar_is_an_icalendar_feed_holding_the_readers_race_day(client, db):
    set_race(db, RUNNER, "2027-03-28", "Rome Marathon")
    response = client.get(calendar_path(db, RUNNER))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    [race] = [e for e in Calendar.from_ical(response.data).walk("VEVENT")
              if str(e["UID"]).startswith("race-day.")]
    assert (str(race["SUMMARY"]), race.decoded("DTSTART")) == ("Rome Marathon", date(2027, 3, 28))


def test_the_calendar_of_a_reader_whose_stored_race_cannot_be_computed_still_answers(client,
                                                                                     db):
    move_race(db, RUNNER, "9999-12-31")
    response = client.get(calendar_path(db, RUNNER))
    assert response.status_code == 200
    assert Calendar.from_ical(response.data).walk("VEVENT") == []


def test_the_calendar_holds_each_upcoming_step_at_its_send_time(client, db, sample_root):
    folder = sample_root / "content" / "sequences" / "calendar-build"
    folder.mkdir(parents=True)
    (folder / "sequence.toml").write_text('name = "Build"\nanchor = "race"\n')
    for name, when in (("01-two-weeks", "2 weeks before race"), ("02-race-day", "race day")):
        (folder / f"{name}.md").write_text(f'---\ntitle: "{name}"\ntopic: strength\n'
                                           f'when: "{when}"\n---\nGo.\n')
    set_race(db, RUNNER, "2030-05-12", "Rome Marathon")
    response = client.get(calendar_path(db, RUNNER))
    steps = {str(e["SUMMARY"]): e.decoded("DTSTART") for e in
             Calendar.from_ical(response.data).walk("VEVENT")
             if str(e["UID"]).startswith("calendar-build/")}
    assert steps == {"01-two-weeks": datetime(2030, 4, 28, 6, tzinfo=UTC),
                     "02-race-day": datetime(2030, 5, 12, 6, tzinfo=UTC)}


def test_the_calendar_of_a_reader_without_a_race_date_has_no_race_day_and_no_race_steps(client,
                                                                                       db):
    response = client.get(calendar_path(db, RUNNER))
    assert response.status_code == 200
    uids = [str(e["UID"]) for e in Calendar.from_ical(response.data).walk("VEVENT")]
    assert not [uid for uid in uids if uid.startswith(("race-day.", "marathon-build/"))]


def test_the_calendar_of_an_unknown_reader_is_a_404(client, db):
    path = calendar_path(db, RUNNER)
    db.remove(RUNNER)
    response = client.get(path)
    assert response.status_code == 404 and "There is no page here" in response.text


def test_a_calendar_link_signed_for_another_purpose_is_a_404(client, db):
    reader = db.get(RUNNER)
    token = signer.sign("preferences", reader.id, bind=reader.email)
    assert client.get(f"/calendar/{token}.ics").status_code == 404


def _nonce(response) -> str:
    return response.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
