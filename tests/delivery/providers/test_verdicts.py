"""What a provider's refusal is about (providers/verdicts.py), by RFC 5321 reply codes and
RFC 3463 enhanced status codes: only an answer about one recipient's address bounces them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.delivery.providers.base import FAILED, REJECTED, MessageRefused
from publisher.delivery.providers.verdicts import (
    ADDRESS,
    COPY,
    DATA,
    MAIL,
    MESSAGE,
    RCPT,
    RETRY,
    receipt_for,
    sendgrid_field_verdict,
    ses_verdict,
    smtp_verdict,
)
from tests.samples import FAST

STAGES = st.sampled_from([MAIL, RCPT, DATA, "SMTP"])
WORDS = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


def enhanced(klass: int, subject: int | None = None):
    """Enhanced codes `klass.subject.detail` (any subject unless one is given)."""
    subjects = st.just(subject) if subject is not None else st.integers(0, 9)
    return st.tuples(st.just(klass), subjects, st.integers(0, 20)).map(
        lambda c: f"{c[0]}.{c[1]}.{c[2]}")


@pytest.mark.parametrize("code, text, stage, verdict", [
    (554, "5.7.1 Message rejected: DMARC policy of example.org says reject", DATA, MESSAGE),
    (550, "5.7.1 Message rejected: SPF fail", DATA, MESSAGE),
    (554, "Transaction failed", DATA, MESSAGE),
    (552, "5.3.4 Message size exceeds fixed limit", DATA, MESSAGE),
    (554, "5.6.0 Message content rejected", DATA, MESSAGE),
    (550, "5.1.1 No such user", DATA, ADDRESS),  # one recipient a transaction: about them
    (550, "5.1.1 <r3@example.com>: Recipient address rejected: User unknown", RCPT, ADDRESS),
    (550, "5.2.1 Mailbox disabled", RCPT, ADDRESS),
    (553, "5.1.3 Bad destination mailbox address syntax", RCPT, ADDRESS),
    (550, "Requested action not taken: mailbox unavailable", RCPT, ADDRESS),
    (551, "User not local", RCPT, ADDRESS),
    (553, "mailbox name not allowed", RCPT, ADDRESS),
    (550, "5.7.1 Recipient rejected by policy", RCPT, RETRY),
    (554, "5.7.1 Relay access denied", RCPT, RETRY),
    (552, "5.2.2 Mailbox full", RCPT, RETRY),
    (554, "Transaction failed", RCPT, RETRY),
    (550, "4.1.1 a class that contradicts the reply", RCPT, ADDRESS),
    (550, "5.1.8 Bad sender's system address", RCPT, MESSAGE),
    (552, "5.3.4 Message too big", RCPT, MESSAGE),
    (550, "5.1.1 Sender unknown", MAIL, MESSAGE),
    (451, "4.7.1 Greylisted, try again", RCPT, RETRY),
    (450, "4.2.1 Mailbox busy", DATA, RETRY),
    (550, "5.1.1 out of place", "SMTP", RETRY),
])
def test_each_smtp_reply_is_judged_by_its_codes(code, text, stage, verdict):
    assert smtp_verdict(code, text, stage) == verdict


@FAST
@given(code=st.integers(400, 499), status=st.one_of(st.just(""), enhanced(4), enhanced(5)),
       words=WORDS, stage=STAGES)
def test_no_4xx_reply_ever_bounces_a_reader_or_stops_the_run(code, status, words, stage):
    assert smtp_verdict(code, f"{status} {words}", stage) == RETRY


@FAST
@given(code=st.integers(500, 599), status=enhanced(5, 7), words=WORDS, stage=STAGES)
def test_a_policy_answer_never_bounces_a_reader(code, status, words, stage):
    assert smtp_verdict(code, f"{status} {words}", stage) != ADDRESS


@FAST
@given(code=st.integers(500, 599), status=st.one_of(st.just(""), enhanced(5)), words=WORDS)
def test_a_refused_data_bounces_only_on_an_address_code(code, status, words):
    address = status.split(".")[1:] in (["1", "1"], ["1", "2"], ["1", "3"], ["1", "6"],
                                        ["1", "10"], ["2", "1"])
    assert smtp_verdict(code, f"{status} {words}", DATA) == (ADDRESS if address else MESSAGE)


@FAST
@given(code=st.integers(500, 599), status=st.one_of(st.just(""), enhanced(5)), words=WORDS)
def test_a_refused_sender_always_stops_the_run(code, status, words):
    assert smtp_verdict(code, f"{status} {words}", MAIL) == MESSAGE


@pytest.mark.parametrize("text, verdict", [
    ("Illegal address", ADDRESS),
    ("Local address contains control or whitespace", ADDRESS),
    ("Message rejected: the message content was refused", MESSAGE),
    ("Illegal header in the message", MESSAGE),
    ("Sender address rejected", MESSAGE),
])
def test_ses_message_rejected_is_about_the_address_only_when_it_says_so(text, verdict):
    assert ses_verdict(text, "r1@example.com") == verdict


@pytest.mark.parametrize("field, verdict", [
    ("personalizations.0.to.0.email", ADDRESS),
    ("personalizations.3.to", ADDRESS),
    ("personalizations.1.headers", COPY),
    ("personalizations.2.substitutions", COPY),
])
def test_a_sendgrid_field_names_the_address_or_another_part_of_the_copy(field, verdict):
    assert sendgrid_field_verdict(field) == verdict


def test_an_address_verdict_rejects_and_bounces():
    receipt = receipt_for(7, ADDRESS, "550 5.1.1 No such user")
    assert (receipt.status, receipt.bounce) == (REJECTED, True)


def test_a_copy_verdict_rejects_without_bouncing():
    receipt = receipt_for(7, COPY, "cannot build the message")
    assert (receipt.status, receipt.bounce) == (REJECTED, False)


def test_a_retry_verdict_fails_with_the_wait_asked():
    receipt = receipt_for(7, RETRY, "451 later", retry_after=30)
    assert (receipt.status, receipt.retry_after) == (FAILED, 30)


def test_a_message_verdict_raises_the_refusal_given():
    refusal = MessageRefused("smtp: refused the message")
    with pytest.raises(MessageRefused) as raised:
        receipt_for(7, MESSAGE, "554 5.7.1", refusal=refusal)
    assert raised.value is refusal
