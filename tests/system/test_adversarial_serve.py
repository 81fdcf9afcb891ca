"""Hostile requests against `runletter serve` over real HTTP: properties, not examples.

Reader pages: whatever the method, path, query or body, a GET or HEAD never changes the store,
a forged link never changes it whatever the method, and no request makes the server fail.
Webhooks: unsigned bodies of any shape (deeply nested, huge, not JSON, not UTF-8) are refused
with a 4xx; signed ones of any shape never make the server fail, and a refused one changes
nothing (nothing half-written). And the linear-time nesting measure that guards the JSON
parser agrees with the real nesting of any JSON text.
"""

from __future__ import annotations

import json
import string
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.delivery.providers.webhook import json_depth
from publisher.delivery.tokens import PURPOSES
from tests.helpers import webhooks as wh
from tests.helpers.live_server import post_json, start_site, store_contents, token_for
from tests.helpers.support import copy_sample, free_port

READERS = ["amara.okafor@example.com", "ngozi.eze@example.com", "ana.souza@example.com",
           "nikolai.ivanov@example.com", "carmen.vidal@example.com", "yuki.sato@example.com"]
READER_PAGES = ["/confirm/{}", "/unsubscribe/{}", "/preferences/{}"]
OTHER_PAGES = ["/", "/subscribe", "/embed", "/healthz", "/style.css", "/favicon.ico"]
FIELDS = ["email", "first_name", "goal", "action", "List-Unsubscribe", "csrf", "website",
          "done"]

PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    live = start_site(copy_sample(tmp_path_factory.mktemp("adversarial") / "news"), free_port())
    try:
        yield live
    finally:
        live.stop()


def send(server, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, server.url(path), timeout=30, allow_redirects=False,
                            **kwargs)


# -- strategies -------------------------------------------------------------------------------

form = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)),
                       st.one_of(st.sampled_from(["One-Click", "unsubscribe", "pause", "save",
                                                  "5k", "x@example.org"]),
                                 st.text(max_size=40)),
                       max_size=5)
bodies = st.one_of(form, st.binary(max_size=300))
junk_token = st.text(string.ascii_letters + string.digits + "._-~%", min_size=1, max_size=80)


@st.composite
def forged_token(draw, server) -> str:
    """A link a reader was never sent: altered, relabelled, for another page, or made up."""
    purpose, address = draw(st.sampled_from(PURPOSES)), draw(st.sampled_from(READERS))
    token = token_for(server, purpose, address, ttl=3600)
    kind = draw(st.sampled_from(["altered", "relabelled", "junk"]))
    if kind == "altered":
        at = draw(st.integers(0, len(token) - 1))
        swap = draw(st.sampled_from(string.ascii_letters + string.digits + "-_.").filter(
            lambda c: c != token[at]))
        return token[:at] + swap + token[at + 1:]
    if kind == "relabelled":
        reader_id, rest = token.split(".", 1)
        return f"{int(reader_id, 16) + draw(st.integers(1, 50)):x}.{rest}"
    return draw(junk_token)


def any_path(server):
    """A reader page with a genuine, foreign or forged token; another page; or any path."""
    def reader_page(choice):
        template, purpose, address = choice
        return template.format(token_for(server, purpose, address, ttl=3600))

    genuine = st.tuples(st.sampled_from(READER_PAGES), st.sampled_from(PURPOSES),
                        st.sampled_from(READERS)).map(reader_page)
    forged = st.tuples(st.sampled_from(READER_PAGES), forged_token(server)).map(
        lambda pair: pair[0].format(quote(pair[1], safe="")))
    anything = st.text(max_size=60).map(lambda text: "/" + quote(text, safe="/"))
    return st.one_of(genuine, forged, st.sampled_from(OTHER_PAGES), anything)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=30), st.sampled_from(READERS)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=20)


@st.composite
def hostile_body(draw) -> bytes:
    """Bodies a parser chokes on: deep, huge, truncated, not UTF-8, lone surrogates, junk."""
    kind = draw(st.sampled_from(["deep", "huge", "json", "truncated", "encoding", "surrogate",
                                 "bytes"]))
    if kind == "deep":
        opener = draw(st.sampled_from([b"[", b'{"a":', b'[{"event-data":', b'{"Message":[']))
        return opener * draw(st.integers(33, 120_000))
    if kind == "huge":
        return b"[" + b'{"event":"open"},' * draw(st.integers(100_000, 130_000)) + b"{}]"
    text = json.dumps(draw(json_values))
    if kind == "json":
        return text.encode()
    if kind == "truncated":
        return text.encode()[:draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == "encoding":
        return draw(st.text(min_size=1, max_size=40)).encode(
            draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"])), errors="replace")
    if kind == "surrogate":
        return json.dumps({"RecordType": "Bounce", "Email": "\ud800@example.com",
                           "signature": {"token": "\udfff"}}).encode()
    return draw(st.binary(max_size=500))


# -- reader pages -----------------------------------------------------------------------------


def test_get_and_head_never_change_anything_on_any_page(server):
    @PROPERTY
    @given(method=st.sampled_from(["GET", "HEAD"]), path=any_path(server), query=form,
           body=bodies)
    def check(method, path, query, body):
        before = store_contents(server)
        response = send(server, method, path, params=query, data=body)
        assert response.status_code < 500, (method, path)
        assert store_contents(server) == before, (method, path, query, body)

    check()


def test_a_forged_link_changes_nothing_whatever_the_method(server):
    @PROPERTY
    @given(method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "GET"]),
           page=st.sampled_from(READER_PAGES), token=forged_token(server), body=bodies)
    def check(method, page, token, body):
        before = store_contents(server)
        response = send(server, method, page.format(quote(token, safe="")), data=body)
        assert response.status_code < 500
        assert method == "OPTIONS" or response.status_code >= 400, (method, token)
        assert store_contents(server) == before, (method, page, token, body)

    check()


def test_no_method_but_post_changes_a_reader_with_a_genuine_link(server):
    @PROPERTY
    @given(method=st.sampled_from(["PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "GET"]),
           page=st.sampled_from(READER_PAGES), reader=st.sampled_from(READERS), body=bodies)
    def check(method, page, reader, body):
        purpose = page.split("/")[1]
        before = store_contents(server)
        response = send(server, method, page.format(token_for(server, purpose, reader, 3600)),
                        data=body)
        assert response.status_code < 500
        assert store_contents(server) == before, (method, page, reader, body)

    check()


# -- webhooks ---------------------------------------------------------------------------------


def test_an_unsigned_webhook_of_any_shape_is_refused_and_changes_nothing(server):
    @PROPERTY
    @given(provider=st.sampled_from(["postmark", "mailgun", "sendgrid", "ses"]),
           body=hostile_body())
    def check(provider, body):
        before = store_contents(server)
        response = post_json(server, provider, body,
                             {"x-amz-sns-message-type": "Notification"})
        assert 400 <= response.status_code < 500, (provider, body[:80], response.text)
        assert store_contents(server) == before

    check()


def signed(provider: str, body: bytes) -> tuple[bytes, dict[str, str]]:
    """The body and headers a provider would send, signed with the test's keys."""
    if provider == "postmark":
        return body, {"Authorization": wh.postmark_auth()}
    if provider == "sendgrid":
        return body, wh.sendgrid_headers(body)
    text = body.decode("utf-8", errors="replace")
    if provider == "mailgun":
        payload = wh.mailgun_payload("failed", READERS[0], "<id@x>")
        try:
            payload["event-data"] = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or too deep for the test's parser
            payload["event-data"] = text
        return json.dumps(payload).encode(), {}
    message = wh.sign_sns(wh.sns_notification({}) | {"Message": text})
    return json.dumps(message).encode(), {"x-amz-sns-message-type": "Notification"}


def test_a_signed_webhook_of_any_shape_never_fails_and_a_refused_one_changes_nothing(server):
    @PROPERTY
    @given(provider=st.sampled_from(["postmark", "mailgun", "sendgrid", "ses"]),
           body=st.one_of(hostile_body(), json_values.map(lambda v: json.dumps(v).encode())))
    def check(provider, body):
        payload, headers = signed(provider, body)
        before = store_contents(server)
        response = post_json(server, provider, payload, headers)
        assert response.status_code < 500, (provider, payload[:120], response.text)
        if response.status_code >= 400:
            assert store_contents(server) == before, (provider, payload[:120])

    check()


def test_a_batch_with_one_bad_event_changes_nobody(server):
    good = st.builds(lambda kind, reader: wh.sendgrid_event(kind, reader, "sgX"),
                     st.sampled_from(["bounce", "spamreport", "unsubscribe"]),
                     st.sampled_from(READERS))
    not_an_address = st.one_of(st.none(), st.booleans(), st.integers(),
                               st.text(max_size=20).filter(lambda t: "@" not in t),
                               st.lists(json_values, max_size=3),
                               st.dictionaries(st.text(max_size=5), json_values, max_size=3))
    bad = st.builds(lambda kind, junk: wh.sendgrid_event(kind, "x", "sgX") | {"email": junk},
                    st.sampled_from(["bounce", "spamreport", "unsubscribe"]), not_an_address)

    @PROPERTY
    @given(events=st.lists(good, max_size=4), poison=bad, at=st.integers(0, 4))
    def check(events, poison, at):
        events.insert(min(at, len(events)), poison)
        body = json.dumps(events).encode()
        before = store_contents(server)
        response = post_json(server, "sendgrid", body, wh.sendgrid_headers(body))
        assert response.status_code == 400, response.text
        assert store_contents(server) == before

    check()


def depth_of(value) -> int:
    """How deep lists and dicts nest in a parsed JSON value."""
    children = value.values() if isinstance(value, dict) else value
    if not isinstance(value, dict | list):
        return 0
    return 1 + max((depth_of(child) for child in children), default=0)


tricky_text = st.text(alphabet='[]{}"\\/ :,ab\u00e9\u2028', max_size=12)
tricky_json = st.recursive(
    st.one_of(st.none(), st.integers(), tricky_text),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(tricky_text, children, max_size=3)),
    max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(value=tricky_json, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_the_measured_depth_of_any_json_text_is_its_nesting(value, ascii_only, indent):
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode()
    assert json_depth(text) == depth_of(value)
