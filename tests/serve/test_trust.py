"""What a stranger can do to `runletter serve` over real HTTP, on each backend.

Token links: whatever the token (forged, cut off, made up, an id beyond the store's
integers), every route answers one fixed page, the same for an id on the list and one that
is not, and never fails. Signups: however often one address signs up, it gets one email per
link lifetime, and the form answers every time as for a first signup. Webhooks: a signed
request whose fields no provider sends (a 400-digit timestamp, a huge id) is a 4xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import string
import time
from urllib.parse import quote

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import webhooks as wh
from tests.helpers.live_server import LiveServer, messages_to, post_json, sample_site
from tests.samples import FAST

TOKEN_ROUTES = ("/confirm/{}", "/unsubscribe/{}", "/preferences/{}", "/ready/{}",
                "/calendar/{}.ics")
ON_THE_LIST = "amara.okafor@example.com"  # an active sample reader
FORGED_MAC = "A" * 24  # the length of a genuine MAC, and no reader's
HUGE_STAMP = "9" * 400


@pytest.fixture(scope="module")
def stranger_site(tmp_path_factory: pytest.TempPathFactory, module_database: str):
    """One server for the module's tests, on each backend in turn."""
    with sample_site(tmp_path_factory.mktemp("trust") / "news", module_database) as server:
        yield server


def answer(site: LiveServer, method: str, route: str, token: str) -> tuple[int, str]:
    """Status and body of a token route, the per-response CSP nonce taken out."""
    response = requests.request(method, site.url(route.format(quote(token, safe=""))),
                                timeout=30, allow_redirects=False)
    return response.status_code, re.sub(r'nonce="[^"]*"', 'nonce=""', response.text)


def methods(route: str) -> tuple[str, ...]:
    """The methods a token route takes (the calendar is a feed: GET only)."""
    return ("GET",) if route.startswith("/calendar") else ("GET", "POST")


def refused_pages(site: LiveServer) -> dict[tuple[str, str], tuple[int, str]]:
    """What each route and method answers a token that is plainly not one."""
    return {(route, method): answer(site, method, route, "nonsense")
            for route in TOKEN_ROUTES for method in methods(route)}


def embed_signup(site: LiveServer, address: str) -> tuple[int, str]:
    """Sign up through the embeddable form (no CSRF token); status and body, nonce out."""
    response = requests.post(site.url("/embed"), timeout=30,
                             data={"email": address, "first_name": "Sam", "goal": "5k"})
    return response.status_code, re.sub(r'nonce="[^"]*"', 'nonce=""', response.text)


def mailgun_signed(stamp: str, token: str = "t" * 50, **event_data: object) -> dict:
    """A Mailgun bounce for nobody on the list, signed with the key over this timestamp."""
    payload = wh.mailgun_payload("failed", "nobody@example.net", "<id@x>", severity="permanent")
    payload["event-data"].update(event_data)
    signature = hmac.new(wh.MAILGUN_KEY.encode(), (stamp + token).encode(),
                         hashlib.sha256).hexdigest()
    payload["signature"] = {"timestamp": stamp, "token": token, "signature": signature}
    return payload


# -- token links ------------------------------------------------------------------------------


def test_a_token_whose_id_is_beyond_the_stores_integers_gets_the_refused_page_on_every_route(
        stranger_site):
    refused = refused_pages(stranger_site)
    for (route, method), page in refused.items():
        huge = f"{'9' * 40}.0.{FORGED_MAC}"
        assert answer(stranger_site, method, route, huge) == page, (route, method)


def test_a_forged_token_for_a_reader_on_the_list_looks_like_one_for_an_id_nobody_has(
        stranger_site):
    with stranger_site.store() as store:
        on_list = store.get(ON_THE_LIST).id
        nobody = max(r.id for r in store.list()) + 1000
    for route in TOKEN_ROUTES:
        for method in methods(route):
            existing = answer(stranger_site, method, route, f"{on_list:x}.0.{FORGED_MAC}")
            missing = answer(stranger_site, method, route, f"{nobody:x}.0.{FORGED_MAC}")
            assert existing == missing, (route, method)
            assert 400 <= existing[0] < 500


hex_text = st.text("0123456789abcdefABCDEF", min_size=0, max_size=60)
token_text = st.one_of(
    st.text(string.ascii_letters + string.digits + "._-~%=+ ", min_size=1, max_size=120),
    st.builds(lambda reader, expiry, mac: f"{reader}.{expiry}.{mac}",
              st.one_of(hex_text, st.integers(-10, 2**200).map(lambda n: format(n, "x"))),
              st.one_of(hex_text, st.just("0")),
              st.text(string.ascii_letters + string.digits + "-_=", max_size=40)),
).filter(lambda t: t not in (".", ".."))  # a path's dot segments, not a token


def test_any_token_string_gets_its_routes_one_refused_page_and_never_a_failure(stranger_site):
    refused = refused_pages(stranger_site)

    @FAST
    @given(token=token_text, key=st.sampled_from(sorted(refused)))
    def check(token, key):
        route, method = key
        assert answer(stranger_site, method, route, token) == refused[key], token

    check()


# -- signups ---------------------------------------------------------------------------------


def test_six_signups_of_one_address_send_one_confirmation_email(stranger_site):
    address = "six.times@example.net"
    for _ in range(6):
        assert embed_signup(stranger_site, address)[0] == 200
    assert len(messages_to(stranger_site.root, address)) == 1


def test_six_signups_of_an_active_reader_send_one_already_subscribed_email(stranger_site):
    address = "ngozi.eze@example.com"
    before = len(messages_to(stranger_site.root, address))
    for _ in range(6):
        assert embed_signup(stranger_site, address)[0] == 200
    assert len(messages_to(stranger_site.root, address)) == before + 1


def test_a_signup_past_the_limit_per_address_is_answered_as_a_first_signup(stranger_site):
    first = embed_signup(stranger_site, "first.of.many@example.net")
    again = [embed_signup(stranger_site, "first.of.many@example.net") for _ in range(3)]
    assert again == [first] * 3
    assert first == embed_signup(stranger_site, "someone.else@example.net")


def test_the_limit_per_address_does_not_hold_back_another_address(stranger_site):
    for n in range(3):
        embed_signup(stranger_site, "flooded@example.net")
        assert embed_signup(stranger_site, f"neighbour{n}@example.net")[0] == 200
        assert len(messages_to(stranger_site.root, f"neighbour{n}@example.net")) == 1


# -- webhooks ---------------------------------------------------------------------------------


def test_a_mailgun_timestamp_of_400_digits_with_a_valid_signature_is_a_4xx(stranger_site):
    response = post_json(stranger_site, "mailgun", mailgun_signed(HUGE_STAMP))
    assert 400 <= response.status_code < 500, response.text


def test_a_sendgrid_timestamp_of_400_digits_with_a_valid_signature_is_a_4xx(stranger_site):
    body = json.dumps([wh.sendgrid_event("bounce", "nobody@example.net", "sgX")]).encode()
    response = post_json(stranger_site, "sendgrid", body,
                         wh.sendgrid_headers(body, timestamp=HUGE_STAMP))
    assert 400 <= response.status_code < 500, response.text


def signed_with_ids(provider: str, ident: object) -> tuple[bytes, dict[str, str]]:
    """A signed request about nobody on the list whose ids (message, event, request) are
    `ident`."""
    if provider == "postmark":
        record = wh.postmark_bounce("nobody@example.net", "x") | {"MessageID": ident}
        return json.dumps(record).encode(), {"Authorization": wh.postmark_auth()}
    if provider == "sendgrid":
        event = wh.sendgrid_event("bounce", "nobody@example.net", "sgX") | {
            "sg_event_id": ident, "sg_message_id": ident, "smtp-id": ident}
        body = json.dumps([event]).encode()
        return body, wh.sendgrid_headers(body)
    if provider == "mailgun":
        stamp = str(int(time.time()))
        payload = mailgun_signed(stamp, message={"headers": {"message-id": ident}})
        return json.dumps(payload).encode(), {}
    ses = wh.ses_bounce("nobody@example.net", "x")
    ses["mail"]["messageId"] = ident
    notification = wh.sns_notification(ses) | {"MessageId": ident}
    return json.dumps(wh.sign_sns(notification)).encode(), {
        "x-amz-sns-message-type": "Notification"}


@pytest.mark.parametrize("provider", ["postmark", "sendgrid", "mailgun", "ses"])
def test_a_signed_webhook_with_an_id_of_100000_characters_is_a_400(stranger_site, provider):
    body, headers = signed_with_ids(provider, "i" * 100_000)
    response = post_json(stranger_site, provider, body, headers)
    assert response.status_code == 400, response.text


weird = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                  st.integers(10**300, 10**301), st.text(string.digits, max_size=500),
                  st.text(max_size=300), st.lists(st.integers(), max_size=3),
                  st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
                  st.text(string.printable, min_size=250, max_size=3000))


def test_a_signed_webhook_with_weird_fields_never_fails(stranger_site):
    @FAST
    @given(provider=st.sampled_from(["postmark", "sendgrid", "mailgun", "ses"]), ident=weird,
           stamp=st.one_of(st.text(string.digits, min_size=1, max_size=20),
                           st.integers(300, 500).map(lambda n: "9" * n)))
    def check(provider, ident, stamp):
        body, headers = signed_with_ids(provider, ident)
        if provider == "sendgrid":
            headers = wh.sendgrid_headers(body, timestamp=stamp)
        if provider == "mailgun":
            body = json.dumps(mailgun_signed(stamp, message={"headers": {"message-id": ident}},
                                             event=ident)).encode()
        response = post_json(stranger_site, provider, body, headers)
        assert response.status_code < 500, (provider, ident, stamp, response.text)

    check()
