"""The SendGrid provider against the SendGrid contract server on 127.0.0.1.

The scenarios are shared with the other HTTP providers (see provider_scenarios.py); what is
SendGrid's own: personalizations with substitutions, X-RateLimit-Reset, 400 errors that
point at one personalization, 413 splitting.
"""

from __future__ import annotations

import time
from collections import Counter

from publisher.delivery.providers.sendgrid import SendgridProvider
from publisher.store import Store
from tests.contract import ContractServer, running
from tests.helpers.provider_scenarios import (
    assert_each_reader_got_their_own_copy,
    bounced_readers,
    ledger_states,
    provider_env,
    publish,
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
from tests.helpers.support import Clock, Crash, import_sample
from tests.samples import AUDIENCE


class CrashingSendgrid(SendgridProvider):
    """Sends its first batch, then the process 'dies' before the ledger hears about it."""

    max_batch = 5

    def send(self, batch):
        super().send(batch)
        raise Crash()


def rate_limit_reset_in(seconds: int):
    """A 429 whose X-RateLimit-Reset (unix time) is `seconds` away."""
    def inject(server: ContractServer) -> float:
        server.fail_next(429, headers={"X-RateLimit-Reset": str(int(time.time()) + seconds)})
        return seconds - 2  # whole seconds, and the clock moves on while the test runs
    return inject


def test_publish_sends_every_reader_one_copy_with_their_own_name_and_links(
        sample_root, monkeypatch):
    scenario_publish("sendgrid", sample_root, monkeypatch)


def test_each_batch_is_one_call_with_a_personalization_per_reader(sample_root):
    import_sample(sample_root)
    with running("sendgrid") as server:
        outcome = send_with_ledger(sample_root, SendgridProvider,
                                   provider_env("sendgrid", server))
        assert len(server.requests) == outcome.batches == 6  # one per goal
        assert sum(r.recipients for r in server.requests) == AUDIENCE
        assert {r.status for r in server.requests} == {202}


def test_batches_never_exceed_max_batch(sample_root):
    scenario_small_batches("sendgrid", SendgridProvider, sample_root)


def test_429_and_5xx_are_retried_once_a_dropped_call_stays_in_flight_honouring_rate_limit_reset(
        sample_root):
    scenario_transient_faults("sendgrid", SendgridProvider, sample_root,
                              rate_limit_reset_in(12))


def test_a_retry_after_later_than_the_rate_limit_reset_wins(sample_root):
    import_sample(sample_root)
    clock = Clock()
    with running("sendgrid") as server:
        server.clock = clock
        server.fail_next(429, headers={"Retry-After": "40",
                                       "X-RateLimit-Reset": str(int(time.time()) + 5)})
        send_with_ledger(sample_root, SendgridProvider, provider_env("sendgrid", server), clock)
        refused, following = server.requests[:2]
        assert refused.status == 429 and following.at - refused.at >= 40


def test_an_invalid_address_is_marked_bounced_and_the_rest_go_on(sample_root):
    scenario_rejection("sendgrid", SendgridProvider, sample_root)


def test_a_wrong_api_key_stops_the_publish_and_marks_nothing(sample_root, monkeypatch):
    output = scenario_auth_error("sendgrid", sample_root, monkeypatch)
    assert "SendGrid refused the API key" in output


def test_a_403_also_stops_the_publish(sample_root, monkeypatch):
    register(monkeypatch)
    import_sample(sample_root)
    with running("sendgrid") as server:
        server.fail_next(403)
        result = publish("sendgrid", provider_env("sendgrid", server))
        assert result.exit_code == 1 and "SendGrid refused the API key" in result.output
    assert ledger_states(sample_root) == Counter({"planned": AUDIENCE})


def test_a_crash_after_the_first_batch_and_a_rerun_send_no_duplicates(sample_root,
                                                                      monkeypatch):
    scenario_crash_and_rerun("sendgrid", f"{__name__}:CrashingSendgrid", sample_root,
                             monkeypatch, first_batch=5)


def test_the_api_key_in_runletter_toml_is_refused(sample_root, monkeypatch):
    scenario_secret_in_file("sendgrid", sample_root, monkeypatch)


def test_a_missing_api_key_is_a_clear_error(sample_root, monkeypatch):
    scenario_missing_secret("sendgrid", sample_root, monkeypatch)


def test_a_413_splits_the_call_in_two(sample_root):
    import_sample(sample_root)
    with running("sendgrid") as server:
        server.fail_next(413)
        outcome = send_with_ledger(sample_root, SendgridProvider,
                                   provider_env("sendgrid", server))
        assert [r.status for r in server.requests[:3]] == [413, 202, 202]
        first = server.requests[0].recipients
        assert [r.recipients for r in server.requests[1:3]] == [first // 2, first - first // 2]
        assert sum(outcome.sent.values()) == AUDIENCE
        assert_each_reader_got_their_own_copy(server, sample_root)


def test_a_400_about_the_request_itself_stops_without_bouncing_anyone(sample_root,
                                                                      monkeypatch):
    register(monkeypatch)
    import_sample(sample_root)
    bounced = bounced_readers(sample_root)
    with running("sendgrid") as server:
        server.fail_next(400, body={"errors": [{"message": "The from object must be provided",
                                                "field": "from.email", "help": None}]})
        result = publish("sendgrid", provider_env("sendgrid", server))
        assert result.exit_code == 1 and "from.email" in result.output
    assert ledger_states(sample_root) == Counter({"planned": AUDIENCE})
    assert bounced_readers(sample_root) == bounced  # nobody new


def test_the_message_id_comes_from_the_x_message_id_header(sample_root):
    import_sample(sample_root)
    with running("sendgrid") as server:
        send_with_ledger(sample_root, SendgridProvider, provider_env("sendgrid", server))
    with Store.open(sample_root / "subscribers/runletter.db") as store:
        ids = [row[0] for row in store.conn.execute("SELECT provider_id FROM deliveries")]
    assert all(ids) and len(set(ids)) == 6  # one X-Message-Id per call, per goal
