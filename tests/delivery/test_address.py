"""Addressing: per-recipient MIME bytes, checked by parsing what was produced."""

import dataclasses
import datetime as dt
import email
import email.header
import email.policy
import email.utils
import re

import pytest

from publisher.delivery.address import Addresser, HeaderInjection, encode_header
from publisher.delivery.tokens import Signer
from tests.helpers.support import address_in
from tests.samples import SECRET


def build(setup, goal="marathon", name="Zoë", addr="zoe@example.com", sid=7):
    project, editions, addresser = setup
    compiled = addresser.compile(editions[goal])
    recipient = addresser.recipient("2026-11-24-hip-drive", sid, addr, name)
    message = addresser.message(compiled, recipient)
    return recipient, message, email.message_from_bytes(message.data, policy=email.policy.SMTP)


def test_a_message_is_multipart_alternative_with_text_then_html(setup):
    _, _, parsed = build(setup)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]


def test_headers_name_sender_reader_and_a_stable_message_id(setup):
    project, _, _ = setup
    _, message, parsed = build(setup)
    assert parsed["From"].addresses[0].addr_spec == project.config.sender_email
    assert parsed["Reply-To"] == project.config.reply_to
    assert parsed["To"].addresses[0].addr_spec == "zoe@example.com"
    assert parsed["To"].addresses[0].display_name == "Zoë"
    assert parsed["Subject"] == setup[1]["marathon"].subject
    assert parsed["Date"] is not None
    assert parsed["Message-ID"] == "<2026-11-24-hip-drive.7@runfreely.example.org>"
    assert parsed["MIME-Version"] == "1.0"


def test_list_unsubscribe_has_the_readers_signed_https_url_and_a_mailto(setup):
    recipient, _, parsed = build(setup)
    value = str(parsed["List-Unsubscribe"])
    urls = re.findall(r"<([^>]+)>", value)
    assert urls[0] == recipient.values["unsubscribe_url"]
    assert urls[0].startswith("https://runfreely.example.org/unsubscribe/")
    token = urls[0].rsplit("/", 1)[1]
    assert Signer(SECRET).verify("unsubscribe", token, bind="zoe@example.com"
                                 ).subscriber_id == 7
    assert urls[1].startswith("mailto:unsubscribe@runfreely.example.org?subject=")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_html_part_carries_the_readers_own_unsubscribe_link_and_postal_address(setup):
    project, _, _ = setup
    recipient, _, parsed = build(setup)
    html = parsed.get_body(("html",)).get_content()
    assert f'href="{recipient.values["unsubscribe_url"]}"' in html
    assert project.config.postal_address in html
    text = parsed.get_body(("plain",)).get_content()
    assert recipient.values["unsubscribe_url"] in text
    assert project.config.postal_address in text


def test_the_first_name_is_html_escaped_in_html_and_plain_in_text(setup):
    _, _, parsed = build(setup, name="<script>alert(1)</script>")
    html = parsed.get_body(("html",)).get_content()
    text = parsed.get_body(("plain",)).get_content()
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;," in html
    assert "<script>alert(1)</script>" not in html
    assert "Hi <script>alert(1)</script>," in text


def test_an_empty_first_name_falls_back_to_the_default(setup):
    _, _, parsed = build(setup, name="")
    assert "Hi runner," in parsed.get_body(("plain",)).get_content()


def test_two_readers_get_different_tokens_and_message_ids(setup):
    a, ma, _ = build(setup, sid=1, addr="a@example.com")
    b, mb, _ = build(setup, sid=2, addr="b@example.com")
    assert a.values["unsubscribe_url"] != b.values["unsubscribe_url"]
    assert ma.message_id != mb.message_id


@pytest.mark.parametrize("name", ["Eve\r\nBcc: victim@example.com", "Eve\nX: y"])
def test_a_line_break_in_a_name_is_refused(setup, name):
    with pytest.raises(HeaderInjection):
        build(setup, name=name)


def test_a_line_break_in_an_address_is_refused(setup):
    with pytest.raises(HeaderInjection):
        build(setup, addr="a@example.com\r\nBcc: b@example.com")


LONG_ADDR = "anna-katharina.vonderheide-lindqvist@example.com"


@pytest.mark.parametrize("name", [
    "Anna-Katharina Marie-Louise Josefine",
    "Zoë-Anne Marie-Thérèse de la Fontaine-Smith",
    'O"Brien, Jr. (the \\ one) <x@evil.test>',
    "Anne-Marie " * 9 + "X",
    "Ægir " * 19 + "Ø",
    "=?utf-8?q?not_encoded?=",
])
def test_the_to_header_parses_back_to_the_stored_address_and_name(setup, name):
    _, message, _ = build(setup, name=name, addr=LONG_ADDR)
    assert address_in(message.data) == (name, LONG_ADDR)


def test_only_the_display_name_is_encoded_never_the_address(setup):
    _, message, _ = build(setup, name="Zoë-Anne Marie-Thérèse de la Fontaine-Smith",
                          addr=LONG_ADDR)
    head = message.data.split(b"\r\n\r\n", 1)[0]
    to = re.search(rb"^To: .*?(?=\r\n[^ ])", head, re.M | re.S).group()
    assert f"<{LONG_ADDR}>".encode() in to
    assert to.count(b"=?utf-8?") == to.count(b"?=")  # whole encoded-words, none nested
    assert max(len(line) for line in to.split(b"\r\n")) <= 78


def test_a_long_sender_name_leaves_the_from_address_parseable(setup):
    project, editions, _ = setup
    config = dataclasses.replace(project.config,
                                 sender_name="Coach Maya Lind-Åkerström, DPT, Run Freely Ltd.")
    addresser = Addresser(config, Signer(SECRET))
    recipient = addresser.recipient("2026-11-24-hip-drive", 7, "zoe@example.com", "Zoë")
    data = addresser.message(addresser.compile(editions["marathon"]), recipient).data
    assert address_in(data, "From") == (config.sender_name, config.sender_email)


def test_the_date_is_in_utc_marked_plus_0000_not_an_unknown_zone(setup):
    _, message, parsed = build(setup)
    assert re.search(rb"\r\nDate: [^\r]+ \+0000\r\n", message.data)
    assert parsed["Date"].datetime.utcoffset() == dt.timedelta(0)


def test_a_line_break_in_a_subject_is_refused():
    with pytest.raises(HeaderInjection):
        encode_header("Subject", "Hello\r\nBcc: x@example.com")


@pytest.mark.parametrize("separator", ["\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
                                       "\u2029"])
def test_a_unicode_line_break_in_a_subject_is_refused(separator):
    # The stdlib splits on these when it re-folds a header: a relay would forge a Bcc.
    with pytest.raises(HeaderInjection):
        encode_header("Subject", f"Hello{separator}Bcc: x@example.com")


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\v"])
def test_a_unicode_line_break_in_a_name_is_refused(setup, separator):
    with pytest.raises(HeaderInjection):
        build(setup, name=f"Eve{separator}Bcc: victim@example.com")


def test_a_non_ascii_subject_is_encoded():
    line = encode_header("Subject", "Zoë's tempo run")
    assert line.isascii() and b"=?utf-8?" in line


def test_an_international_domain_is_sent_as_idna(setup):
    _, _, parsed = build(setup, addr="jurgen@bücher.example")
    assert parsed["To"].addresses[0].domain == "xn--bcher-kva.example"


def test_every_line_ends_in_crlf_and_none_is_longer_than_rfc_5322_allows(setup):
    _, message, _ = build(setup, name="Zoë-Anne Marie-Thérèse de la Fontaine-Smith")
    lines = message.data.split(b"\r\n")
    assert b"\n" not in b"".join(lines) and b"\r" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 998
    assert max(len(line) for line in lines[lines.index(b""):]) <= 78  # QP bodies


def test_the_bytes_survive_a_round_trip_through_the_stdlib_smtp_policy(setup):
    _, message, parsed = build(setup)
    again = email.message_from_bytes(parsed.as_bytes(policy=email.policy.SMTP),
                                     policy=email.policy.SMTP)
    assert again.get_body(("html",)).get_content() == parsed.get_body(("html",)).get_content()
    assert (re.findall(r"<([^>]+)>", str(again["List-Unsubscribe"]))
            == re.findall(r"<([^>]+)>", str(parsed["List-Unsubscribe"])))
