"""One mailbox, one reader: every spelling of an address (Unicode or punycode domain, NFC or
NFD, any case) is the same reader on every route, and migration 0007 merges the readers an
older store holds twice (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import hmac
import os
import re
import unicodedata

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.config import ENV as DATABASE_URL
from publisher.delivery.tokens import Signer
from publisher.emails import canonical, mailbox_key, validate_email
from publisher.store import Store
from publisher.store.upgrade import HEAD
from tests.helpers.live_server import signer, start_site
from tests.helpers.support import copy_sample, free_port, import_csv, run, write_csv
from tests.samples import GOALS, HEADER, ON_BOTH_BACKENDS, STORE

UNICODE = "hans@bücher.example"
PUNYCODE = "hans@xn--bcher-kva.example"
NFD = unicodedata.normalize("NFD", UNICODE)
LABELS = st.sampled_from(["bücher", "straße", "münchen", "ελλάδα", "日本語", "example", "b-c"])


def spellings(local: str, labels: list[str]) -> list[str]:
    """The ways a person or a provider may write one mailbox."""
    unicode_domain = ".".join(labels) + ".example"
    ascii_domain = canonical(f"x@{unicode_domain}").split("@")[1]
    # 'ß'.upper() is 'SS': another domain (IDNA 2008), so it is no spelling of this one.
    shouted = unicode_domain.upper() if unicode_domain.upper().lower() == unicode_domain \
        else unicode_domain
    return [f"{local}@{unicode_domain}", unicodedata.normalize("NFD", f"{local}@{unicode_domain}"),
            f"{local}@{shouted}", f"{local}@{ascii_domain}",
            f"{local.upper()}@{ascii_domain.upper()}", f"  {local}@{unicode_domain} "]


@settings(deadline=None)  # the first call loads idna's tables
@given(st.from_regex(r"[a-z][a-z0-9.+]{0,10}[a-z]", fullmatch=True).filter(
    lambda s: ".." not in s), st.lists(LABELS, min_size=1, max_size=3))
def test_every_spelling_of_a_mailbox_has_one_key_and_canonical_is_idempotent(local, labels):
    forms = spellings(local, labels)
    assert all(validate_email(form) is None for form in forms)
    assert len({mailbox_key(form) for form in forms}) == 1
    assert all(canonical(canonical(form)) == canonical(form) for form in forms)
    assert canonical(forms[0]).isascii()


def test_the_stored_form_keeps_the_local_parts_case_and_puts_the_domain_in_punycode():
    assert canonical("Hans@BÜCHER.Example") == "Hans@xn--bcher-kva.example"


def test_a_punycode_that_is_no_domain_is_refused():
    assert "not a valid international domain name" in validate_email("hans@xn--zz.example")


@ON_BOTH_BACKENDS
def test_adding_another_spelling_of_a_stored_mailbox_is_refused(store):
    store.add(UNICODE)
    for spelling in (PUNYCODE, NFD, "HANS@BÜCHER.EXAMPLE"):
        try:
            store.add(spelling)
        except Exception as exc:  # noqa: BLE001 - the message is what is checked
            assert "is already a subscriber" in str(exc)
        else:
            raise AssertionError(f"{spelling!r} was added as a second reader")
    assert [r.email for r in store.list()] == [PUNYCODE]


@ON_BOTH_BACKENDS
def test_an_import_in_other_spellings_does_not_bring_a_leaver_back(store, tmp_path):
    store.add(UNICODE, goal="5k")
    store.set_status(UNICODE, "unsubscribed", "their choice")
    path = write_csv(tmp_path, HEADER + f"{PUNYCODE},Hans,5k,,active\n{NFD},Hans,5k,,active\n")

    report = import_csv(store, path, GOALS)

    assert report.added == 0
    assert [(r.email, r.status) for r in store.list()] == [(PUNYCODE, "unsubscribed")]


@ON_BOTH_BACKENDS
def test_a_providers_bounce_for_the_punycode_spelling_bounces_the_reader(store):
    store.add(NFD)

    reader, moved = store.apply_event(PUNYCODE, "bounced", "postmark webhook: bounce")

    assert moved and reader is not None
    assert store.get(UNICODE).status == "bounced"


@ON_BOTH_BACKENDS
def test_remove_finds_the_reader_by_any_spelling(store):
    store.add(PUNYCODE)
    assert store.remove(NFD)
    assert store.get(PUNYCODE) is None


def back_to_version_6(conn) -> None:
    """Take away what migrations 0007 and later added, and say the store is at version 6."""
    conn.execute("DROP TABLE merged_readers")
    conn.execute("DROP TABLE proposals")  # 0008
    conn.execute("ALTER TABLE subscribers DROP COLUMN enrolled_at")  # 0010
    conn.execute("DROP INDEX IF EXISTS subscribers_email_c")  # 0011 (PostgreSQL only)
    conn.execute("UPDATE alembic_version SET version_num = '0006'")


def two_spellings_at_version_6(url: str) -> None:
    """A store as version 6 could leave it: one mailbox as three readers (written the way
    version 6 stored them), one ledger row each for one post, then marked as version 6."""
    with Store.open(url) as store, store.transaction() as conn:
        for email, status, consent in ((UNICODE, "active", "2026-03-01T00:00:00+00:00"),
                                       (PUNYCODE, "unsubscribed", "2026-02-01T00:00:00+00:00"),
                                       (NFD, "pending", "2026-01-01T00:00:00+00:00")):
            conn.execute("INSERT INTO subscribers(email, status, consent_source, consent_at, "
                         "created_at, updated_at) VALUES (:email, :status, :source, :at, :at, "
                         ":at)", {"email": email, "status": status,
                                  "source": f"source of {status}", "at": consent})
        ids = [row[0] for row in conn.execute("SELECT id FROM subscribers ORDER BY id")]
        for reader_id, state in zip(ids, ("planned", "sent", "failed"), strict=True):
            conn.execute("INSERT INTO deliveries(post, subscriber_id, email, goal, state, "
                         "updated_at) VALUES ('p', :id, 'x', 'general', :state, 'now')",
                         {"id": reader_id, "state": state})
        back_to_version_6(conn)


@ON_BOTH_BACKENDS
def test_upgrade_merges_the_spellings_of_one_mailbox_keeping_the_strictest_status(
        project_dir):
    url = os.environ.get(DATABASE_URL) or f"sqlite:///{project_dir / STORE}"
    two_spellings_at_version_6(url)

    result = run("db", "upgrade")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == [
        f"merged 3 readers into {PUNYCODE} (kept: unsubscribed)"]
    with Store.open(url) as store:
        (reader,) = store.list()
        assert (reader.email, reader.status) == (PUNYCODE, "unsubscribed")
        assert store.schema_version == int(HEAD)


@ON_BOTH_BACKENDS
def test_a_merged_reader_keeps_the_earliest_consent_and_the_most_sent_ledger_row(
        project_dir):
    url = os.environ.get(DATABASE_URL) or f"sqlite:///{project_dir / STORE}"
    two_spellings_at_version_6(url)

    with Store.open(url) as store:
        (reader,) = store.list()
        # The pending spelling's signup was never confirmed: it is not consent.
        assert (reader.consent_source, reader.consent_at) == (
            "source of unsubscribed", "2026-02-01T00:00:00+00:00")
        assert dict(store.conn.execute("SELECT subscriber_id, state FROM deliveries")
                    .fetchall()) == {reader.id: "sent"}
        assert store.history(UNICODE)[-1].new_status == "merged"


def legacy_token(signer: Signer, purpose: str, reader_id: int, spelling: str) -> str:
    """A link's token as runletter minted it before schema 0007: the MAC over the stored
    spelling, lowercased."""
    body = f"{reader_id:x}.0"
    mac = hmac.digest(signer._keys[purpose], f"{body}|{spelling.lower()}".encode(), "sha256")
    return f"{body}.{base64.urlsafe_b64encode(mac[:18]).decode('ascii')}"


def test_a_link_sent_to_the_unicode_spelling_still_works_once_the_store_holds_punycode():
    signer = Signer("a-signing-secret-for-tests")
    token = legacy_token(signer, "unsubscribe", 7, UNICODE)

    data = signer.verify("unsubscribe", token, bind=PUNYCODE)

    assert data is not None and data.subscriber_id == 7


def test_a_link_is_bound_to_the_mailbox_not_to_its_spelling():
    signer = Signer("a-signing-secret-for-tests")
    token = signer.sign("preferences", 7, bind=NFD)

    assert signer.verify("preferences", token, bind="HANS@xn--BCHER-KVA.example") is not None
    assert signer.verify("preferences", token, bind="hans@other.example") is None


@ON_BOTH_BACKENDS
def test_an_unsubscribe_link_sent_to_a_merged_away_spelling_unsubscribes_the_mailbox(tmp_path):
    live = start_site(copy_sample(tmp_path / "news"), free_port())
    try:
        with live.store() as store, store.transaction() as conn:
            for spelling in (UNICODE, PUNYCODE):  # as version 6 stored them: two readers
                conn.execute("INSERT INTO subscribers(email, status, created_at, updated_at) "
                             "VALUES (:email, 'active', 'then', 'then')", {"email": spelling})
            merged_away = conn.execute("SELECT MAX(id) FROM subscribers").fetchone()[0]
            back_to_version_6(conn)
        link = live.url("/unsubscribe/" + signer.sign("unsubscribe", merged_away, bind=PUNYCODE))
        live.store().close()  # opening it ran migration 0007: the two are one reader now

        response = requests.post(link, data="List-Unsubscribe=One-Click", timeout=10, headers={
            "Content-Type": "application/x-www-form-urlencoded"})

        assert response.status_code == 200
        assert live.reader(UNICODE).status == "unsubscribed"
    finally:
        live.stop()


@ON_BOTH_BACKENDS
def test_a_signup_in_another_spelling_of_a_leavers_mailbox_is_no_second_reader(tmp_path):
    live = start_site(copy_sample(tmp_path / "news"), free_port())
    try:
        with live.store() as store:
            store.add(PUNYCODE)
            store.set_status(PUNYCODE, "unsubscribed", "their choice")
        session = requests.Session()
        page = session.get(live.url("/subscribe"), timeout=10)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)

        response = session.post(live.url("/subscribe"), timeout=10, data={
            "email": NFD, "first_name": "Hans", "goal": "general", "csrf": csrf})

        assert response.status_code == 200
        with live.store() as store:
            assert [(r.email, r.status) for r in store.list() if r.email.startswith("hans@")
                    ] == [(PUNYCODE, "unsubscribed")]
    finally:
        live.stop()
