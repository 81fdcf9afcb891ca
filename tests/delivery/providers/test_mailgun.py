"""The Mailgun provider against the Mailgun contract server on 127.0.0.1.

The scenarios are shared with the other HTTP providers (see provider_scenarios.py); what is
Mailgun's own: one call per batch with recipient-variables, the refused address found by
halving the batch, the sending domain.
"""

from __future__ import annotations

from collections import Counter

import pytest

from publisher.delivery.address import Addresser
from publisher.delivery.providers.base import ProviderConfigError, provider_settings
from publisher.delivery.providers.mailgun import MailgunProvider
from publisher.delivery.tokens import Signer
from publisher.project import open_project
from publisher.store import Store
from tests.contract import running
from tests.helpers.provider_scenarios import (
    assert_each_reader_got_their_own_copy,
    bounced_readers,
    ledger_states,
    provider_env,
    publish,
    rate_limit_with_retry_after,
    register,
    scenario_auth_error,
    scenario_crash_and_rerun,
    scenario_missing_secret,
    scenario_publish,
    scenario_rejection,
    scenario_secret_in_file,
    scenario_small_batches,
    scenario_transient_faults,
    send_with_ledger,
)
from tests.helpers.support import Crash, import_sample
from tests.samples import AUDIENCE, SECRET


class CrashingMailgun(MailgunProvider):
    """Sends its first batch, then the process 'dies' before the ledger hears about it."""

    max_batch = 9

    def send(self, batch):
        super().send(batch)
        raise Crash()


def test_publish_sends_every_reader_one_copy_with_their_own_name_and_links(
        sample_root, monkeypatch):
    scenario_publish("mailgun", sample_root, monkeypatch)


def test_each_batch_is_one_call_with_every_reader_in_it(sample_root):
    import_sample(sample_root)
    with running("mailgun") as server:
        outcome = send_with_ledger(sample_root, MailgunProvider,
                                   provider_env("mailgun", server))
        assert len(server.requests) == outcome.batches == 6  # one per goal
        assert sum(r.recipients for r in server.requests) == AUDIENCE
        assert {r.path for r in server.requests} == {"/v3/mg.example.org/messages"}


def test_batches_never_exceed_max_batch(sample_root):
    scenario_small_batches("mailgun", MailgunProvider, sample_root)


def test_429_and_5xx_are_retried_once_a_dropped_call_stays_in_flight_honouring_retry_after(
        sample_root):
    scenario_transient_faults("mailgun", MailgunProvider, sample_root,
                              rate_limit_with_retry_after(7))


def test_a_refused_address_is_found_by_halving_marked_bounced_and_the_rest_go_on(
        sample_root):
    scenario_rejection("mailgun", MailgunProvider, sample_root)


def test_halving_costs_a_few_calls_and_never_delivers_twice(sample_root):
    import_sample(sample_root)
    with Store.open(sample_root / "subscribers/runletter.db") as store:
        victims = [s.email for s in store.list(status="active", goal="marathon")][:2]
    with running("mailgun") as server:
        for victim in victims:
            server.reject(victim)
        outcome = send_with_ledger(sample_root, MailgunProvider,
                                   provider_env("mailgun", server))
        assert outcome.rejected == Counter({"marathon": 2})
        assert_each_reader_got_their_own_copy(server, sample_root, without=frozenset(victims))
        assert len(server.requests) < 6 + 2 * 8  # about log2(batch) extra calls per address


def test_a_wrong_api_key_stops_the_publish_and_marks_nothing(sample_root, monkeypatch):
    output = scenario_auth_error("mailgun", sample_root, monkeypatch)
    assert "Mailgun refused the API key" in output


def test_an_unknown_domain_stops_the_publish_naming_the_domain_and_region(sample_root,
                                                                          monkeypatch):
    register(monkeypatch)
    import_sample(sample_root)
    with running("mailgun") as server:
        result = publish("mailgun", provider_env("mailgun", server, domain="mg.other.org"))
        assert result.exit_code == 1
        assert "mg.other.org" in result.output and "api.eu.mailgun.net" in result.output
        assert not server.delivered
    assert ledger_states(sample_root) == Counter({"planned": AUDIENCE})


def test_a_crash_after_the_first_batch_and_a_rerun_send_no_duplicates(sample_root,
                                                                      monkeypatch):
    scenario_crash_and_rerun("mailgun", f"{__name__}:CrashingMailgun", sample_root,
                             monkeypatch, first_batch=9)


def test_the_api_key_in_runletter_toml_is_refused(sample_root, monkeypatch):
    scenario_secret_in_file("mailgun", sample_root, monkeypatch)


def test_a_missing_api_key_is_a_clear_error(sample_root, monkeypatch):
    scenario_missing_secret("mailgun", sample_root, monkeypatch)


def test_the_domain_is_required(sample_root):
    config = open_project(sample_root).config
    addresser = Addresser(config, Signer(SECRET))
    with pytest.raises(ProviderConfigError, match="RUNLETTER_MAILGUN_DOMAIN"):
        MailgunProvider(config, addresser, {"api_key": "key-test"})
    settings = provider_settings(MailgunProvider, config, environ={
        "RUNLETTER_MAILGUN_API_KEY": "k", "RUNLETTER_MAILGUN_DOMAIN": "mg.example.org",
        "RUNLETTER_MAILGUN_BASE_URL": "https://api.eu.mailgun.net"})
    provider = MailgunProvider(config, addresser, settings)
    assert provider.base_url == "https://api.eu.mailgun.net"
    assert provider.path == "/v3/mg.example.org/messages"
    assert provider_settings(MailgunProvider, config, environ={})["base_url"] == (
        "https://api.mailgun.net")


def test_a_400_about_the_request_itself_stops_without_bouncing_anyone(sample_root,
                                                                      monkeypatch):
    register(monkeypatch)
    import_sample(sample_root)
    bounced = bounced_readers(sample_root)
    with running("mailgun") as server:
        server.fail_next(400, body={"message": "from parameter is missing"})
        result = publish("mailgun", provider_env("mailgun", server))
        assert result.exit_code == 1
        assert "from parameter is missing" in result.output
    assert ledger_states(sample_root) == Counter({"planned": AUDIENCE})
    assert bounced_readers(sample_root) == bounced  # nobody new


def test_a_413_splits_the_call_in_two(sample_root):
    import_sample(sample_root)
    with running("mailgun") as server:
        server.fail_next(413)
        outcome = send_with_ledger(sample_root, MailgunProvider,
                                   provider_env("mailgun", server))
        assert [r.status for r in server.requests[:3]] == [413, 200, 200]
        assert sum(outcome.sent.values()) == AUDIENCE
        assert_each_reader_got_their_own_copy(server, sample_root)
