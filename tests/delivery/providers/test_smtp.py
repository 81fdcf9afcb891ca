"""The SMTP provider against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import email
from collections import Counter
from email import policy

import pytest

from publisher.delivery.address import Addresser
from publisher.delivery.providers.base import (
    ACCEPTED,
    FAILED,
    REJECTED,
    Batch,
    MessageRefused,
    ProviderConfigError,
    provider_settings,
)
from publisher.delivery.providers.smtp import SmtpProvider
from publisher.delivery.tokens import Signer
from publisher.project import open_project
from publisher.render.email import EmailRenderer
from tests.helpers.smtp_server import DMARC, running_smtp
from tests.helpers.support import free_port
from tests.samples import REPO as ROOT
from tests.samples import SECRET

SLUG = "2026-10-27-synchronicity"


@pytest.fixture(scope="module")
def project():
    return open_project(ROOT)


@pytest.fixture(scope="module")
def config(project):
    return project.config


@pytest.fixture(scope="module")
def addresser(config):
    return Addresser(config, Signer(SECRET))


@pytest.fixture(scope="module")
def edition(project, config):
    editions = EmailRenderer(config).editions(project.resolve(project.post(SLUG)))
    return next(iter(editions.values()))


@pytest.fixture(scope="module")
def compiled(addresser, edition):
    return addresser.compile(edition)


@pytest.fixture
def make_batch(addresser, edition, compiled):
    """Batch of readers r<first>@example.com … with ids first … first+count-1."""
    def make(count: int, first: int = 1) -> Batch:
        recipients = tuple(addresser.recipient(SLUG, i, f"r{i}@example.com", f"Reader{i}")
                           for i in range(first, first + count))
        return Batch(edition, compiled, recipients)
    return make


def smtp_provider(config, addresser, port: int, **env: str) -> SmtpProvider:
    environ = {"RUNLETTER_SMTP_HOST": "127.0.0.1", "RUNLETTER_SMTP_PORT": str(port),
               "RUNLETTER_SMTP_SECURITY": "none", "RUNLETTER_SMTP_TIMEOUT": "5"}
    environ.update({f"RUNLETTER_SMTP_{key.upper()}": value for key, value in env.items()})
    return SmtpProvider(config, addresser, provider_settings(SmtpProvider, config, environ))


def by_id(receipts):
    return {r.subscriber_id: r for r in receipts}


def received_counts(server) -> Counter:
    return Counter(rcpt for rcpts, _data in server.messages for rcpt in rcpts)


def test_every_recipient_receives_one_message_over_one_reused_connection(
        config, addresser, make_batch):
    with running_smtp() as server:
        with smtp_provider(config, addresser, server.port) as provider:
            first = provider.send(make_batch(20))
            second = provider.send(make_batch(5, first=21))
        assert server.connections == 1
        counts = received_counts(server)
        assert counts == Counter({f"r{i}@example.com": 1 for i in range(1, 26)})
    receipts = first + second
    assert sorted(r.subscriber_id for r in receipts) == list(range(1, 26))
    assert all(r.status == ACCEPTED for r in receipts)
    assert by_id(receipts)[7].provider_id == f"<{SLUG}.7@runfreely.example.org>"


def test_each_received_message_parses_with_that_readers_own_headers(
        config, addresser, make_batch):
    batch = make_batch(3)
    with running_smtp() as server:
        with smtp_provider(config, addresser, server.port) as provider:
            provider.send(batch)
        messages = server.messages
    assert len(messages) == 3
    by_rcpt = {rcpts[0]: data for rcpts, data in messages}
    for recipient in batch.recipients:
        parsed = email.message_from_bytes(by_rcpt[recipient.email], policy=policy.default)
        assert parsed["To"].addresses[0].addr_spec == recipient.email
        assert parsed["Message-ID"] == recipient.message_id
        assert f"<{recipient.values['unsubscribe_url']}>" in parsed["List-Unsubscribe"]
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed.get_content_type() == "multipart/alternative"
        parts = [part.get_content_type() for part in parsed.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        html = parsed.get_body(("html",)).get_content()
        assert recipient.values["unsubscribe_url"] in html


def test_messages_sent_over_smtp_are_dated_in_utc_as_plus_0000(config, addresser, make_batch):
    with running_smtp() as server:
        with smtp_provider(config, addresser, server.port) as provider:
            provider.send(make_batch(2))
        messages = server.messages
    dates = {str(email.message_from_bytes(data, policy=policy.default)["Date"])[-5:]
             for _, data in messages}
    assert dates == {"+0000"}


def test_a_refused_recipient_is_rejected_with_the_servers_reason_and_the_rest_accepted(
        config, addresser, make_batch):
    with running_smtp(refuse={"r3@example.com": "550 5.1.1 No such user"}) as server:
        with smtp_provider(config, addresser, server.port) as provider:
            receipts = by_id(provider.send(make_batch(5)))
        assert server.connections == 1  # RSET kept the connection usable
        assert set(received_counts(server)) == {f"r{i}@example.com" for i in (1, 2, 4, 5)}
    assert receipts[3].status == REJECTED
    assert receipts[3].reason == "550 5.1.1 No such user"
    assert [receipts[i].status for i in (1, 2, 4, 5)] == [ACCEPTED] * 4


def test_a_recipient_deferred_with_4xx_gets_a_failed_receipt(config, addresser, make_batch):
    with running_smtp(tempfail={"r2@example.com": "451 4.3.0 Try later"}) as server:
        with smtp_provider(config, addresser, server.port) as provider:
            receipts = by_id(provider.send(make_batch(3)))
        assert set(received_counts(server)) == {"r1@example.com", "r3@example.com"}
    assert receipts[2].status == FAILED
    assert receipts[2].reason == "451 4.3.0 Try later"
    assert receipts[1].status == receipts[3].status == ACCEPTED


def test_a_data_refusal_of_the_first_message_raises_and_nobody_is_accepted(
        config, addresser, make_batch):
    with running_smtp() as server:
        server.handler.refuse_data = DMARC
        with smtp_provider(config, addresser, server.port) as provider:
            with pytest.raises(MessageRefused, match="DMARC policy") as raised:
                provider.send(make_batch(3))
        assert server.messages == []
    assert "SPF, DKIM and DMARC" in str(raised.value)


def test_a_data_refusal_part_way_keeps_what_went_and_fails_the_rest(config, addresser,
                                                                    make_batch):
    with running_smtp() as server:
        server.handler.refuse_data, server.handler.refuse_data_after = DMARC, 2
        with smtp_provider(config, addresser, server.port) as provider:
            receipts = by_id(provider.send(make_batch(4)))
            with pytest.raises(MessageRefused):  # the next call stops before it sends
                provider.send(make_batch(1, first=5))
    assert [receipts[i].status for i in (1, 2, 3, 4)] == [ACCEPTED, ACCEPTED, FAILED, FAILED]


def test_a_policy_refusal_of_one_recipient_is_retried_not_rejected(config, addresser,
                                                                   make_batch):
    refuse = {"r2@example.com": "550 5.7.1 Recipient rejected by policy"}
    with running_smtp(refuse=refuse) as server:
        with smtp_provider(config, addresser, server.port) as provider:
            receipts = by_id(provider.send(make_batch(3)))
    assert receipts[2].status == FAILED
    assert receipts[2].reason == "550 5.7.1 Recipient rejected by policy"
    assert receipts[1].status == receipts[3].status == ACCEPTED


def test_an_unknown_mailbox_at_rcpt_is_still_rejected(config, addresser, make_batch):
    with running_smtp(refuse={"r1@example.com": "550 5.1.1 No such user"}) as server:
        with smtp_provider(config, addresser, server.port) as provider:
            [receipt] = provider.send(make_batch(1))
    assert (receipt.status, receipt.bounce) == (REJECTED, True)


def test_a_connection_dropped_after_the_final_dot_leaves_that_reader_in_flight_not_retried(
        config, addresser, make_batch):
    # The server had the whole message when it went away: it may have queued it, so no
    # receipt (in flight, reported) and no second try; the readers after it never went.
    with running_smtp(drop_after=4) as server:
        with smtp_provider(config, addresser, server.port) as provider:
            receipts = by_id(provider.send(make_batch(10)))
        assert server.handler.dropped == 1
        assert server.connections == 1
        counts = received_counts(server)
    assert max(counts.values()) == 1  # nobody twice
    assert [receipts[i].status for i in range(1, 5)] == [ACCEPTED] * 4
    assert 5 not in receipts
    assert [receipts[i].status for i in range(6, 11)] == [FAILED] * 5


def test_a_server_that_goes_away_leaves_failed_receipts_and_raises_nothing(
        config, addresser, make_batch):
    with running_smtp() as server:
        provider = smtp_provider(config, addresser, server.port)
        provider.open()
        assert [r.status for r in provider.send(make_batch(2))] == [ACCEPTED] * 2
    try:
        receipts = provider.send(make_batch(3, first=3))  # the server is gone now
    finally:
        provider.close()
    assert sorted(r.subscriber_id for r in receipts) == [3, 4, 5]
    assert all(r.status == FAILED and "reconnect failed" in r.reason for r in receipts)


def test_starttls_and_login_deliver_over_an_encrypted_authenticated_session(
        config, addresser, make_batch):
    with running_smtp(starttls=True, auth=("maya", "s3cret")) as server:
        provider = smtp_provider(config, addresser, server.port, security="starttls",
                                 username="maya", password="s3cret", cafile=server.cafile)
        with provider:
            receipts = provider.send(make_batch(2))
        assert server.sessions == [{"tls": True, "authenticated": True}] * 2
        assert server.connections == 1
    assert all(r.status == ACCEPTED for r in receipts)


def test_implicit_tls_delivers_when_security_is_ssl(config, addresser, make_batch):
    with running_smtp(smtps=True, auth=("maya", "s3cret")) as server:
        provider = smtp_provider(config, addresser, server.port, security="ssl",
                                 username="maya", password="s3cret", cafile=server.cafile)
        with provider:
            receipts = provider.send(make_batch(2))
        assert server.sessions == [{"tls": True, "authenticated": True}] * 2
    assert all(r.status == ACCEPTED for r in receipts)


def test_a_wrong_password_is_a_config_error(config, addresser):
    with running_smtp(starttls=True, auth=("maya", "s3cret")) as server:
        provider = smtp_provider(config, addresser, server.port, security="starttls",
                                 username="maya", password="wrong", cafile=server.cafile)
        with pytest.raises(ProviderConfigError, match="refused the login"):
            provider.open()
        assert server.messages == []


def test_an_untrusted_certificate_is_a_config_error(config, addresser):
    with running_smtp(starttls=True) as server:
        provider = smtp_provider(config, addresser, server.port, security="starttls")
        with pytest.raises(ProviderConfigError, match="not trusted"):
            provider.open()


def test_a_password_in_runletter_toml_is_refused(config):
    with_password = dataclasses.replace(config, providers={"smtp": {"password": "x"}})
    with pytest.raises(ProviderConfigError, match="RUNLETTER_SMTP_PASSWORD"):
        provider_settings(SmtpProvider, with_password, environ={})


def test_connection_refused_on_first_connect_is_a_config_error(config, addresser):
    provider = smtp_provider(config, addresser, free_port())  # nobody listens there
    with pytest.raises(ProviderConfigError, match="cannot connect"):
        provider.open()


def test_a_refused_envelope_sender_is_a_config_error(config, addresser, make_batch):
    with running_smtp(refuse_sender="553 5.7.1 Sender not allowed") as server:
        with smtp_provider(config, addresser, server.port) as provider:
            with pytest.raises(ProviderConfigError, match="envelope sender"):
                provider.send(make_batch(2))
        assert server.messages == []


def test_an_unknown_security_mode_is_a_config_error(config, addresser):
    with pytest.raises(ProviderConfigError, match="starttls, ssl, none"):
        smtp_provider(config, addresser, 25, security="tls")
