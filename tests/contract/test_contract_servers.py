"""The contract servers, driven with plain `requests` calls built from the providers' docs.

Each test is one behaviour: a documented request is accepted and delivered the provider's
way, a documented validation rule gives the documented status and body and delivers
nothing, and the fault controls (fail_next, drop_next, reject) do what they say.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.contract import Delivered, RequestRecord, running, stats_of
from tests.samples import REPO

MB = 1024 * 1024

# -- requests as the docs show them -----------------------------------------------------

POSTMARK_EXAMPLE = [  # "Send batch emails", example request
    {
        "From": "sender@example.com",
        "To": "receiver1@example.com",
        "Subject": "Postmark test #1",
        "TextBody": "Hello dear Postmark user.",
        "HtmlBody": "<html><body><strong>Hello</strong> dear Postmark user.</body></html>",
        "MessageStream": "outbound",
    },
    {
        "From": "sender@example.com",
        "To": "receiver2@example.com",
        "Subject": "Postmark test #2",
        "TextBody": "Hello dear Postmark user.",
        "HtmlBody": "<html><body><strong>Hello</strong> dear Postmark user.</body></html>",
        "MessageStream": "outbound",
    },
]

MAILGUN_EXAMPLE = [  # "Batch Sending", example request
    ("from", "Excited User <postmaster@mg.example.org>"),
    ("to", "alice@example.com"),
    ("to", "bob@example.com"),
    ("subject", "Hey, %recipient.first%"),
    ("text", "If you wish to unsubscribe, click http://mailgun/unsubscribe/%recipient.id%"),
    ("recipient-variables", json.dumps({"bob@example.com": {"first": "Bob", "id": 1},
                                        "alice@example.com": {"first": "Alice", "id": 2}})),
]

SENDGRID_EXAMPLE = {  # "Mail Send", with the substitutions of "Personalizations"
    "personalizations": [
        {"to": [{"email": "john.doe@example.com", "name": "John Doe"}],
         "substitutions": {"-name-": "John", "-unsub-": "u/1"},
         "headers": {"List-Unsubscribe": "<https://example.com/-unsub->"}},
        {"to": [{"email": "jane.doe@example.com", "name": "Jane Doe"}],
         "substitutions": {"-name-": "Jane", "-unsub-": "u/2"},
         "subject": "Only for you, -name-"},
    ],
    "from": {"email": "orders@example.com", "name": "Example Order Confirmation"},
    "reply_to": {"email": "customer_service@example.com", "name": "Example Customer Service"},
    "subject": "Your Example Order Confirmation, -name-",
    "content": [
        {"type": "text/plain", "value": "Hello -name-, thank you."},
        {"type": "text/html", "value": "<p>Hello -name-, thank you.</p>"},
    ],
    "headers": {"List-Unsubscribe": "<https://example.com/all>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
}


@pytest.fixture
def http():
    with requests.Session() as session:
        session.trust_env = False  # 127.0.0.1 never goes through a proxy
        yield session


@pytest.fixture
def postmark():
    with running("postmark") as server:
        yield server


@pytest.fixture
def mailgun():
    with running("mailgun") as server:
        yield server


@pytest.fixture
def sendgrid():
    with running("sendgrid") as server:
        yield server


def batch_call(http, server, batch, token="test-token", **headers):
    headers = {"X-Postmark-Server-Token": token, "Accept": "application/json", **headers}
    if isinstance(batch, bytes):
        headers.setdefault("Content-Type", "application/json")
        return http.post(server.url + "/email/batch", data=batch, headers=headers)
    return http.post(server.url + "/email/batch", json=batch, headers=headers)


def message(i=0, **fields):
    msg = {"From": "coach@example.com", "To": f"reader{i}@example.org", "Subject": "Tempo",
           "HtmlBody": "<p>Run</p>", "TextBody": "Run", "MessageStream": "broadcast"}
    msg.update(fields)
    return {k: v for k, v in msg.items() if v is not None}


def mailgun_call(http, server, fields, key="key-test", domain="mg.example.org", form=False):
    url = f"{server.url}/v3/{domain}/messages"
    if form:  # application/x-www-form-urlencoded
        return http.post(url, data=fields, auth=("api", key))
    return http.post(url, files=[(name, (None, value)) for name, value in fields],
                     auth=("api", key))


def mailgun_fields(count=1, **extra):
    fields = [("from", "Coach <coach@mg.example.org>"), ("subject", "Tempo"),
              ("text", "Run"), ("html", "<p>Run</p>")]
    fields += [("to", f"reader{i}@example.org") for i in range(count)]
    return fields + list(extra.items())


def without(fields, name):
    return [(n, v) for n, v in fields if n != name]


def sendgrid_call(http, server, mail, key="SG.test"):
    headers = {"Authorization": f"Bearer {key}"}
    if isinstance(mail, bytes):
        return http.post(server.url + "/v3/mail/send", data=mail,
                         headers={**headers, "Content-Type": "application/json"})
    return http.post(server.url + "/v3/mail/send", json=mail, headers=headers)


def sendgrid_mail(people=1, **extra):
    mail = {"personalizations": [{"to": [{"email": f"reader{i}@example.org"}]}
                                 for i in range(people)],
            "from": {"email": "coach@example.com"}, "subject": "Tempo",
            "content": [{"type": "text/plain", "value": "Run"},
                        {"type": "text/html", "value": "<p>Run</p>"}]}
    mail.update(extra)
    return {k: v for k, v in mail.items() if v is not None}


def first_error(answer):
    return answer.json()["errors"][0]


# -- the harness -------------------------------------------------------------------------


def test_running_serves_on_a_free_loopback_port_and_stops_within_five_seconds(http):
    started = time.monotonic()
    with running("sendgrid") as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert sendgrid_call(http, server, sendgrid_mail()).status_code == 202
        port = int(server.url.rsplit(":", 1)[1])
    assert time.monotonic() - started < 5
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_running_refuses_an_unknown_provider():
    with pytest.raises(ValueError, match="unknown provider"), running("mandrill"):
        pass


def test_running_takes_the_credential_as_token_or_api_key(http):
    with running("sendgrid", api_key="SG.other") as server:
        assert sendgrid_call(http, server, sendgrid_mail(), key="SG.other").status_code == 202


def test_every_request_is_recorded_with_method_path_status_recipients_and_size(http, postmark):
    body = json.dumps([message(0), message(1, Cc="coach2@example.com")]).encode()
    batch_call(http, postmark, body)
    http.get(postmark.url + "/email/batch")
    assert postmark.requests == [
        RequestRecord("POST", "/email/batch", 200, 3, len(body)),
        RequestRecord("GET", "/email/batch", 405, 0, 0),
    ]


def test_stats_endpoint_counts_requests_deliveries_and_the_largest_call(http, mailgun):
    mailgun_call(http, mailgun, mailgun_fields(3))
    mailgun_call(http, mailgun, mailgun_fields(2))
    assert stats_of(mailgun.url) == {"requests": 2, "delivered": 5,
                                     "max_recipients_per_request": 3}


def test_count_only_keeps_counts_but_no_delivered_copies(http):
    with running("postmark", count_only=True) as server:
        batch_call(http, server, [message(0), message(0), message(1)])
        assert server.delivered == []
        assert server.counts() == {"reader0@example.org": 2, "reader1@example.org": 1}


def test_the_command_line_server_prints_its_url_first_and_answers_stats(http):
    proc = subprocess.Popen([sys.executable, "-m", "tests.contract", "mailgun", "--count-only"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        answer = http.post(url + "/v3/mg.example.org/messages", auth=("api", "key-test"),
                           files=[(n, (None, v)) for n, v in mailgun_fields(2)])
        assert answer.status_code == 200
        assert http.get(url + "/_contract/stats").json() == {
            "requests": 1, "delivered": 2, "max_recipients_per_request": 2}
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


# -- Postmark: POST /email/batch ---------------------------------------------------------


def test_postmark_accepts_the_documented_batch_and_delivers_each_message(http, postmark):
    answer = batch_call(http, postmark, POSTMARK_EXAMPLE)
    assert answer.status_code == 200
    assert postmark.delivered == [
        Delivered("receiver1@example.com", "Postmark test #1", POSTMARK_EXAMPLE[0]["HtmlBody"],
                  "Hello dear Postmark user.", {"From": "sender@example.com"}),
        Delivered("receiver2@example.com", "Postmark test #2", POSTMARK_EXAMPLE[1]["HtmlBody"],
                  "Hello dear Postmark user.", {"From": "sender@example.com"}),
    ]


def test_postmark_answers_one_documented_entry_per_message_in_order(http, postmark):
    entries = batch_call(http, postmark, POSTMARK_EXAMPLE).json()
    assert [(e["ErrorCode"], e["Message"], e["To"]) for e in entries] == [
        (0, "OK", "receiver1@example.com"), (0, "OK", "receiver2@example.com")]
    assert all(set(e) == {"ErrorCode", "Message", "MessageID", "SubmittedAt", "To"}
               for e in entries)
    assert entries[0]["MessageID"] != entries[1]["MessageID"]


def test_postmark_delivers_headers_and_reply_to_as_the_reader_gets_them(http, postmark):
    unsubscribe = [{"Name": "List-Unsubscribe", "Value": "<https://run.example/u/1>"},
                   {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"}]
    batch_call(http, postmark, [message(0, Headers=unsubscribe, ReplyTo="maya@example.com",
                                        TrackOpens=True, TrackLinks="None",
                                        Metadata={"subscriber": "17"}, Tag="tempo")])
    assert postmark.delivered[0].headers == {
        "From": "coach@example.com", "Reply-To": "maya@example.com",
        "List-Unsubscribe": "<https://run.example/u/1>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def test_postmark_delivers_one_copy_to_each_of_to_cc_and_bcc(http, postmark):
    batch_call(http, postmark, [message(0, To="A <a@example.org>, b@example.org",
                                        Cc="c@example.org", Bcc="d@example.org")])
    assert [d.to for d in postmark.delivered] == [
        "a@example.org", "b@example.org", "c@example.org", "d@example.org"]


def test_postmark_refuses_a_missing_token_with_401_and_error_code_10(http, postmark):
    answer = http.post(postmark.url + "/email/batch", json=POSTMARK_EXAMPLE)
    assert answer.status_code == 401
    assert answer.json()["ErrorCode"] == 10
    assert postmark.delivered == []


def test_postmark_refuses_a_wrong_token_with_401_and_error_code_10(http, postmark):
    answer = batch_call(http, postmark, POSTMARK_EXAMPLE, token="nope")
    assert answer.status_code == 401
    assert answer.json() == {"ErrorCode": 10, "Message": (
        "The Server Token you provided in the X-Postmark-Server-Token request header was "
        "invalid. Please verify that you are using a valid token.")}
    assert postmark.delivered == []


def test_postmark_reads_the_token_case_insensitively(http, postmark):
    answer = batch_call(http, postmark, POSTMARK_EXAMPLE, token="TEST-TOKEN")
    assert answer.status_code == 200


def test_postmark_answers_404_for_an_unknown_path(http, postmark):
    answer = http.post(postmark.url + "/email/batches", json=POSTMARK_EXAMPLE,
                       headers={"X-Postmark-Server-Token": "test-token"})
    assert answer.status_code == 404
    assert postmark.delivered == []


def test_postmark_answers_405_for_get_on_the_batch_endpoint(http, postmark):
    assert http.get(postmark.url + "/email/batch").status_code == 405


def test_postmark_refuses_a_body_that_is_not_json_with_422_and_error_code_402(http, postmark):
    answer = batch_call(http, postmark, b"[{'From': 'single quotes'}]")
    assert (answer.status_code, answer.json()["ErrorCode"]) == (422, 402)


def test_postmark_refuses_a_request_that_is_not_sent_as_json_with_error_code_409(http, postmark):
    answer = batch_call(http, postmark, json.dumps(POSTMARK_EXAMPLE).encode(),
                        **{"Content-Type": "text/plain"})
    assert (answer.status_code, answer.json()["ErrorCode"]) == (422, 409)


def test_postmark_refuses_one_message_object_instead_of_an_array(http, postmark):
    answer = batch_call(http, postmark, POSTMARK_EXAMPLE[0])
    assert (answer.status_code, answer.json()["ErrorCode"]) == (422, 403)
    assert postmark.delivered == []


def test_postmark_refuses_501_messages_with_422_and_error_code_410(http, postmark):
    answer = batch_call(http, postmark, [message(i) for i in range(501)])
    assert (answer.status_code, answer.json()["ErrorCode"]) == (422, 410)
    assert postmark.delivered == []


def test_postmark_accepts_exactly_500_messages(http, postmark):
    answer = batch_call(http, postmark, [message(i) for i in range(500)])
    assert answer.status_code == 200
    assert len(postmark.delivered) == 500


def test_postmark_refuses_a_body_over_50_mb_with_413(http, postmark):
    answer = batch_call(http, postmark, b" " * (50 * MB + 1))
    assert answer.status_code == 413
    assert postmark.requests[-1].size == 50 * MB + 1
    assert postmark.delivered == []


def test_postmark_refuses_a_misspelt_field_name_with_422(http, postmark):
    misspelt = message(0)
    misspelt["HTMLBody"] = misspelt.pop("HtmlBody")
    answer = batch_call(http, postmark, [message(1), misspelt])
    assert (answer.status_code, answer.json()["ErrorCode"]) == (422, 403)
    assert "'HTMLBody'" in answer.json()["Message"]
    assert postmark.delivered == []


def test_postmark_refuses_headers_that_are_not_a_list_of_name_value_objects(http, postmark):
    answer = batch_call(http, postmark, [message(0, Headers={"List-Unsubscribe": "<x>"})])
    assert (answer.status_code, answer.json()["ErrorCode"]) == (422, 403)
    assert postmark.delivered == []


def test_postmark_refuses_an_unknown_message_stream_with_422_and_error_code_1235(http, postmark):
    answer = batch_call(http, postmark, [message(0), message(1, MessageStream="newsletter")])
    assert answer.status_code == 422
    assert answer.json() == {"ErrorCode": 1235, "Message":
                             "The 'MessageStream' provided does not exist on this server."}
    assert postmark.delivered == []


@pytest.mark.parametrize("stream", ["outbound", "broadcast", None])
def test_postmark_accepts_the_outbound_and_broadcast_streams_and_none(http, postmark, stream):
    assert batch_call(http, postmark, [message(0, MessageStream=stream)]).status_code == 200
    assert len(postmark.delivered) == 1


@pytest.mark.parametrize(("fields", "text"), [
    ({"From": None}, "Invalid 'From' value."),
    ({"To": None}, "Zero recipients specified"),
    ({"HtmlBody": None, "TextBody": None}, "Provide either email TextBody or HtmlBody or both."),
    ({"To": "not-an-address"}, "Invalid 'To' address: 'not-an-address'."),
], ids=["no From", "no To", "no body", "bad To"])
def test_postmark_answers_an_invalid_message_in_its_own_entry_and_sends_the_rest(
        http, postmark, fields, text):
    answer = batch_call(http, postmark, [message(0), message(1, **fields)])
    assert answer.status_code == 200
    assert answer.json()[1] == {"ErrorCode": 300, "Message": text}
    assert [d.to for d in postmark.delivered] == ["reader0@example.org"]


def test_postmark_refuses_a_message_with_more_than_50_recipients(http, postmark):
    many = ", ".join(f"r{i}@example.org" for i in range(51))
    entry = batch_call(http, postmark, [message(0, To=many)]).json()[0]
    assert entry["ErrorCode"] == 300
    assert postmark.delivered == []


def test_postmark_reject_answers_406_for_that_message_and_delivers_the_rest(http, postmark):
    postmark.reject("Reader1@example.org")
    answer = batch_call(http, postmark, [message(0), message(1), message(2)])
    assert answer.status_code == 200
    entry = answer.json()[1]
    assert entry["ErrorCode"] == 406
    assert entry["Message"].startswith(
        "You tried to send to recipient(s) that have been marked as inactive.")
    assert "reader1@example.org" in entry["Message"]
    assert [d.to for d in postmark.delivered] == ["reader0@example.org", "reader2@example.org"]


def test_postmark_fail_next_429_answers_retry_after_and_delivers_nothing(http, postmark):
    postmark.fail_next(429)
    answer = batch_call(http, postmark, POSTMARK_EXAMPLE)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["ErrorCode"] == 429
    assert postmark.delivered == []
    assert postmark.requests[-1] == RequestRecord("POST", "/email/batch", 429, 2,
                                                  postmark.requests[-1].size)


def test_postmark_fail_next_lasts_exactly_the_given_number_of_requests(http, postmark):
    postmark.fail_next(500, times=2)
    statuses = [batch_call(http, postmark, POSTMARK_EXAMPLE).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert len(postmark.delivered) == 2


def test_postmark_fail_next_answers_the_given_body_and_headers(http, postmark):
    postmark.fail_next(503, headers={"Retry-After": "7"}, body={"ErrorCode": 100,
                                                                 "Message": "Maintenance"})
    answer = batch_call(http, postmark, POSTMARK_EXAMPLE)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "7"
    assert answer.json() == {"ErrorCode": 100, "Message": "Maintenance"}


def test_postmark_drop_next_closes_without_an_answer_and_delivers_nothing(http, postmark):
    postmark.drop_next()
    with pytest.raises(requests.ConnectionError):
        batch_call(http, postmark, POSTMARK_EXAMPLE)
    assert postmark.delivered == []
    assert postmark.requests[-1].status == 0
    assert batch_call(http, postmark, POSTMARK_EXAMPLE).status_code == 200


def test_postmark_counts_deliveries_per_recipient(http, postmark):
    batch_call(http, postmark, POSTMARK_EXAMPLE)
    batch_call(http, postmark, POSTMARK_EXAMPLE[:1])
    assert postmark.counts() == {"receiver1@example.com": 2, "receiver2@example.com": 1}



def test_pace_answers_every_request_that_many_seconds_late(http, postmark):
    postmark.pace(delay=0.3)
    start = time.monotonic()
    assert batch_call(http, postmark, POSTMARK_EXAMPLE).status_code == 200
    assert time.monotonic() - start >= 0.3


def test_pace_with_hold_until_answers_nothing_until_that_many_requests_are_in(postmark):
    postmark.pace(hold_until=2, hold_timeout=10)
    answered: list[float] = []

    def call() -> None:
        with requests.Session() as session:
            session.trust_env = False
            assert batch_call(session, postmark, POSTMARK_EXAMPLE).status_code == 200
        answered.append(time.monotonic())

    first = threading.Thread(target=call)
    first.start()
    time.sleep(0.5)
    assert answered == []  # held: the second request has not come
    second_sent = time.monotonic()
    call()
    first.join(10)
    assert len(answered) == 2 and min(answered) >= second_sent
    assert len(postmark.delivered) == 4

# -- Mailgun: POST /v3/{domain}/messages -------------------------------------------------


def test_mailgun_accepts_the_documented_batch_and_substitutes_per_recipient(http, mailgun):
    answer = mailgun_call(http, mailgun, MAILGUN_EXAMPLE)
    assert answer.status_code == 200
    assert [(d.to, d.subject, d.text) for d in mailgun.delivered] == [
        ("alice@example.com", "Hey, Alice",
         "If you wish to unsubscribe, click http://mailgun/unsubscribe/2"),
        ("bob@example.com", "Hey, Bob",
         "If you wish to unsubscribe, click http://mailgun/unsubscribe/1"),
    ]


def test_mailgun_answers_an_id_and_queued_thank_you(http, mailgun):
    body = mailgun_call(http, mailgun, MAILGUN_EXAMPLE).json()
    assert body["message"] == "Queued. Thank you."
    assert body["id"].startswith("<") and body["id"].endswith("@mg.example.org>")


def test_mailgun_substitutes_recipient_variables_in_html_and_h_headers(http, mailgun):
    fields = [("from", "coach@mg.example.org"), ("to", "ana@example.org"),
              ("subject", "Tempo"), ("html", "<p>Hi %recipient.name%</p>"),
              ("h:List-Unsubscribe", "<https://run.example/u/%recipient.token%>"),
              ("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
              ("o:tag", "tempo"),
              ("recipient-variables", json.dumps({"ana@example.org": {"name": "Ana",
                                                                      "token": "t1"}}))]
    mailgun_call(http, mailgun, fields)
    assert mailgun.delivered == [Delivered(
        "ana@example.org", "Tempo", "<p>Hi Ana</p>", "",
        {"From": "coach@mg.example.org", "List-Unsubscribe": "<https://run.example/u/t1>",
         "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})]


def test_mailgun_delivers_v_variables_as_the_x_mailgun_variables_header(http, mailgun):
    mailgun_call(http, mailgun, mailgun_fields(1, **{"v:post": "tempo"}))
    assert json.loads(mailgun.delivered[0].headers["X-Mailgun-Variables"]) == {"post": "tempo"}


def test_mailgun_accepts_a_urlencoded_form(http, mailgun):
    assert mailgun_call(http, mailgun, MAILGUN_EXAMPLE, form=True).status_code == 200
    assert mailgun.counts() == {"alice@example.com": 1, "bob@example.com": 1}


def test_mailgun_sends_comma_separated_to_addresses_to_each_recipient(http, mailgun):
    fields = without(mailgun_fields(), "to") + [("to", "a@example.org, Bee <b@example.org>")]
    mailgun_call(http, mailgun, fields)
    assert [d.to for d in mailgun.delivered] == ["a@example.org", "b@example.org"]


def test_mailgun_refuses_a_wrong_key_with_401_forbidden(http, mailgun):
    answer = mailgun_call(http, mailgun, MAILGUN_EXAMPLE, key="key-wrong")
    assert (answer.status_code, answer.text) == (401, "Forbidden")
    assert mailgun.delivered == []


def test_mailgun_refuses_a_user_other_than_api_with_401(http, mailgun):
    answer = http.post(mailgun.url + "/v3/mg.example.org/messages", auth=("key", "key-test"),
                       files=[(n, (None, v)) for n, v in MAILGUN_EXAMPLE])
    assert answer.status_code == 401


def test_mailgun_refuses_missing_credentials_with_401(http, mailgun):
    answer = http.post(mailgun.url + "/v3/mg.example.org/messages", data=MAILGUN_EXAMPLE)
    assert answer.status_code == 401


def test_mailgun_answers_404_for_another_domain(http, mailgun):
    answer = mailgun_call(http, mailgun, MAILGUN_EXAMPLE, domain="mg.other.org")
    assert answer.status_code == 404
    assert answer.json() == {"message": "Domain not found: mg.other.org"}


def test_mailgun_answers_404_for_an_unknown_path(http, mailgun):
    answer = http.post(mailgun.url + "/v3/mg.example.org/message", auth=("api", "key-test"))
    assert answer.status_code == 404


def test_mailgun_answers_405_for_get_on_the_messages_endpoint(http, mailgun):
    answer = http.get(mailgun.url + "/v3/mg.example.org/messages", auth=("api", "key-test"))
    assert answer.status_code == 405


def test_mailgun_refuses_a_json_body_because_it_has_no_form_parameters(http, mailgun):
    answer = http.post(mailgun.url + "/v3/mg.example.org/messages", auth=("api", "key-test"),
                       json=dict(MAILGUN_EXAMPLE))
    assert answer.status_code == 400
    assert answer.json() == {"message": "from parameter is missing"}


@pytest.mark.parametrize(("missing", "text"), [
    ("from", "from parameter is missing"),
    ("to", "to parameter is missing"),
    ("subject", "subject parameter is missing"),
], ids=["from", "to", "subject"])
def test_mailgun_refuses_a_missing_required_parameter_with_400(http, mailgun, missing, text):
    answer = mailgun_call(http, mailgun, without(mailgun_fields(2), missing))
    assert answer.status_code == 400
    assert answer.json() == {"message": text}
    assert mailgun.delivered == []


def test_mailgun_refuses_a_message_without_text_or_html_with_400(http, mailgun):
    answer = mailgun_call(http, mailgun, without(without(mailgun_fields(), "text"), "html"))
    assert answer.status_code == 400
    assert answer.json() == {
        "message": "Need at least one of 'text' or 'html' parameters specified"}


def test_mailgun_refuses_1001_recipients_with_400(http, mailgun):
    answer = mailgun_call(http, mailgun, mailgun_fields(1001))
    assert answer.status_code == 400
    assert answer.json() == {"message": "Too many recipients; max is 1000"}
    assert mailgun.delivered == []


def test_mailgun_accepts_exactly_1000_recipients(http, mailgun):
    assert mailgun_call(http, mailgun, mailgun_fields(1000)).status_code == 200
    assert len(mailgun.delivered) == 1000


def test_mailgun_refuses_recipient_variables_that_are_not_json(http, mailgun):
    fields = without(MAILGUN_EXAMPLE, "recipient-variables") + [
        ("recipient-variables", "{'alice@example.com': {}}")]
    answer = mailgun_call(http, mailgun, fields)
    assert answer.status_code == 400
    assert "recipient-variables" in answer.json()["message"]
    assert mailgun.delivered == []


def test_mailgun_refuses_recipient_variables_without_an_entry_for_a_to_address(http, mailgun):
    fields = without(MAILGUN_EXAMPLE, "recipient-variables") + [
        ("recipient-variables", json.dumps({"alice@example.com": {"first": "A", "id": 2}}))]
    answer = mailgun_call(http, mailgun, fields)
    assert answer.status_code == 400
    assert "bob@example.com" in answer.json()["message"]
    assert mailgun.delivered == []


def test_mailgun_refuses_send_options_over_16_kb(http, mailgun):
    answer = mailgun_call(http, mailgun, mailgun_fields(1, **{"h:X-Padding": "x" * 16400}))
    assert answer.status_code == 400
    assert answer.json()["message"].startswith("Send options")


def test_mailgun_reject_refuses_the_whole_request_with_400(http, mailgun):
    mailgun.reject("bob@example.com")
    answer = mailgun_call(http, mailgun, MAILGUN_EXAMPLE)
    assert answer.status_code == 400
    assert answer.json() == {
        "message": "'to' parameter is not a valid address. please check documentation"}
    assert mailgun.delivered == []


def test_mailgun_fail_next_429_answers_retry_after_and_delivers_nothing(http, mailgun):
    mailgun.fail_next(429)
    answer = mailgun_call(http, mailgun, MAILGUN_EXAMPLE)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "1"
    assert "message" in answer.json()
    assert mailgun.delivered == []
    assert mailgun.requests[-1].recipients == 2


def test_mailgun_drop_next_closes_without_an_answer_and_delivers_nothing(http, mailgun):
    mailgun.drop_next()
    with pytest.raises(requests.ConnectionError):
        mailgun_call(http, mailgun, MAILGUN_EXAMPLE)
    assert mailgun.delivered == []
    assert mailgun_call(http, mailgun, MAILGUN_EXAMPLE).status_code == 200


# -- SendGrid: POST /v3/mail/send --------------------------------------------------------


def test_sendgrid_accepts_a_documented_send_with_202_an_empty_body_and_a_message_id(
        http, sendgrid):
    answer = sendgrid_call(http, sendgrid, SENDGRID_EXAMPLE)
    assert answer.status_code == 202
    assert answer.content == b""
    assert answer.headers["X-Message-Id"]


def test_sendgrid_substitutes_each_personalization_in_subject_content_and_headers(
        http, sendgrid):
    sendgrid_call(http, sendgrid, SENDGRID_EXAMPLE)
    john, jane = sendgrid.delivered
    assert (john.to, john.subject, john.text, john.html) == (
        "john.doe@example.com", "Your Example Order Confirmation, John",
        "Hello John, thank you.", "<p>Hello John, thank you.</p>")
    assert (jane.to, jane.subject) == ("jane.doe@example.com", "Only for you, Jane")


def test_sendgrid_lays_personalization_headers_over_the_message_headers(http, sendgrid):
    sendgrid_call(http, sendgrid, SENDGRID_EXAMPLE)
    john, jane = sendgrid.delivered
    assert john.headers == {
        "List-Unsubscribe": "<https://example.com/u/1>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "From": "Example Order Confirmation <orders@example.com>",
        "Reply-To": "Example Customer Service <customer_service@example.com>"}
    assert jane.headers["List-Unsubscribe"] == "<https://example.com/all>"


def test_sendgrid_refuses_a_missing_key_with_401(http, sendgrid):
    answer = http.post(sendgrid.url + "/v3/mail/send", json=sendgrid_mail())
    assert answer.status_code == 401
    assert first_error(answer)["message"] == "authorization required"
    assert sendgrid.delivered == []


def test_sendgrid_refuses_a_wrong_key_with_401(http, sendgrid):
    answer = sendgrid_call(http, sendgrid, sendgrid_mail(), key="SG.wrong")
    assert answer.status_code == 401
    assert first_error(answer) == {
        "message": "The provided authorization grant is invalid, expired, or revoked",
        "field": None, "help": None}


def test_sendgrid_answers_404_for_an_unknown_path(http, sendgrid):
    answer = http.post(sendgrid.url + "/v3/mail/sends", json=sendgrid_mail(),
                       headers={"Authorization": "Bearer SG.test"})
    assert answer.status_code == 404


def test_sendgrid_answers_405_for_get_on_mail_send(http, sendgrid):
    answer = http.get(sendgrid.url + "/v3/mail/send", headers={"Authorization": "Bearer SG.test"})
    assert answer.status_code == 405


def test_sendgrid_refuses_a_body_that_is_not_json_with_400(http, sendgrid):
    answer = sendgrid_call(http, sendgrid, b"personalizations=none")
    assert answer.status_code == 400
    assert "errors" in answer.json()


def test_sendgrid_refuses_a_body_not_sent_as_json_with_415(http, sendgrid):
    answer = http.post(sendgrid.url + "/v3/mail/send", data=json.dumps(sendgrid_mail()),
                       headers={"Authorization": "Bearer SG.test", "Content-Type": "text/plain"})
    assert answer.status_code == 415


def test_sendgrid_refuses_1001_personalizations_with_400(http, sendgrid):
    answer = sendgrid_call(http, sendgrid, sendgrid_mail(1001))
    assert answer.status_code == 400
    assert first_error(answer)["field"] == "personalizations"
    assert "1001 personalizations" in first_error(answer)["message"]
    assert sendgrid.delivered == []


def test_sendgrid_accepts_exactly_1000_personalizations(http, sendgrid):
    assert sendgrid_call(http, sendgrid, sendgrid_mail(1000)).status_code == 202
    assert len(sendgrid.delivered) == 1000


@pytest.mark.parametrize(("missing", "field"), [
    ("from", "from.email"), ("subject", "subject"), ("content", "content"),
])
def test_sendgrid_refuses_a_missing_from_subject_or_content_with_400(
        http, sendgrid, missing, field):
    answer = sendgrid_call(http, sendgrid, sendgrid_mail(**{missing: None}))
    assert answer.status_code == 400
    assert first_error(answer)["field"] == field
    assert sendgrid.delivered == []


def test_sendgrid_refuses_html_content_before_plain_text(http, sendgrid):
    content = [{"type": "text/html", "value": "<p>Run</p>"}, {"type": "text/plain",
                                                              "value": "Run"}]
    answer = sendgrid_call(http, sendgrid, sendgrid_mail(content=content))
    assert answer.status_code == 400
    assert first_error(answer)["message"] == (
        "If present, text/plain must be first, followed by text/html, followed by any other "
        "content.")
    assert sendgrid.delivered == []


def test_sendgrid_refuses_a_personalization_without_to(http, sendgrid):
    mail = sendgrid_mail(2)
    mail["personalizations"][1] = {"cc": [{"email": "cc@example.org"}]}
    answer = sendgrid_call(http, sendgrid, mail)
    assert answer.status_code == 400
    assert first_error(answer) == {
        "message": "The to parameter is required for all personalization objects.",
        "field": "personalizations.1.to",
        "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
                "#message.personalizations"}
    assert sendgrid.delivered == []


def test_sendgrid_reject_refuses_the_request_naming_the_address_field(http, sendgrid):
    sendgrid.reject("reader1@example.org")
    answer = sendgrid_call(http, sendgrid, sendgrid_mail(3))
    assert answer.status_code == 400
    assert [{k: e[k] for k in ("message", "field")} for e in answer.json()["errors"]] == [
        {"message": "Does not contain a valid address.",
         "field": "personalizations.1.to.0.email"}]
    assert sendgrid.delivered == []


def test_sendgrid_refuses_a_body_over_30_mb_with_413(http, sendgrid):
    answer = sendgrid_call(http, sendgrid, b" " * (30 * MB + 1))
    assert answer.status_code == 413
    assert sendgrid.delivered == []


def test_sendgrid_sandbox_mode_answers_200_and_delivers_nothing(http, sendgrid):
    mail = sendgrid_mail(mail_settings={"sandbox_mode": {"enable": True}})
    assert sendgrid_call(http, sendgrid, mail).status_code == 200
    assert sendgrid.delivered == []


def test_sendgrid_fail_next_429_answers_the_rate_limit_headers(http, sendgrid):
    sendgrid.fail_next(429)
    before = time.time()
    answer = sendgrid_call(http, sendgrid, sendgrid_mail())
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["X-RateLimit-Remaining"] == "0"
    assert int(before) <= int(answer.headers["X-RateLimit-Reset"]) <= before + 2
    assert first_error(answer)["message"] == "too many requests"
    assert sendgrid.delivered == []


def test_sendgrid_drop_next_closes_without_an_answer_and_delivers_nothing(http, sendgrid):
    sendgrid.drop_next(times=2)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            sendgrid_call(http, sendgrid, sendgrid_mail())
    assert sendgrid.delivered == []
    assert sendgrid_call(http, sendgrid, sendgrid_mail()).status_code == 202
