"""The Postmark provider against the Postmark contract server on 127.0.0.1.

Everything runs the real publish path (the CLI, or send_post over the real SQLite ledger)
against a server that speaks Postmark's documented `/email/batch`. The scenarios come from
provider_scenarios.py, as for test_mailgun.py and test_sendgrid.py: the same promises hold
for every HTTP provider.
"""

from __future__ import annotations

import time
from collections import Counter
from email.utils import formatdate

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.delivery.address import Addresser
from publisher.delivery.providers.base import ProviderConfigError, provider_settings
from publisher.delivery.providers.http import parse_rate_limit_reset, parse_retry_after
from publisher.delivery.providers.postmark.sending import PostmarkProvider
from publisher.delivery.tokens import Signer
from publisher.project import open_project
from tests.contract import running
from tests.helpers.provider_scenarios import (
    assert_each_reader_got_their_own_copy,
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
from tests.helpers.support import Clock, Crash, import_sample, project_store
from tests.samples import AUDIENCE, ON_BOTH_BACKENDS, SECRET
from tests.samples import HIP_DRIVE as POST

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets

# -- Postmark ------------------------------------------------------------------------------

class CrashingPostmark(PostmarkProvider):
    """Sends its first batch, then the process 'dies' before the ledger hears about it."""

    max_batch = 7

    def send_prepared(self, prepared):
        super().send_prepared(prepared)
        raise Crash()


def test_publish_sends_every_reader_one_copy_with_their_own_name_and_links(
        sample_root, monkeypatch):
    scenario_publish("postmark", sample_root, monkeypatch)


def test_batches_never_exceed_max_batch(sample_root):
    scenario_small_batches("postmark", PostmarkProvider, sample_root)


def test_429_and_5xx_are_retried_once_a_dropped_call_stays_in_flight_honouring_retry_after(
        sample_root):
    scenario_transient_faults("postmark", PostmarkProvider, sample_root,
                              rate_limit_with_retry_after(7))


def test_an_inactive_recipient_is_marked_bounced_and_the_rest_go_on(sample_root):
    scenario_rejection("postmark", PostmarkProvider, sample_root)


def test_a_wrong_server_token_stops_the_publish_and_marks_nothing(sample_root, monkeypatch):
    output = scenario_auth_error("postmark", sample_root, monkeypatch)
    assert "Postmark refused the server token" in output


def test_a_crash_after_the_first_batch_and_a_rerun_send_no_duplicates(sample_root,
                                                                      monkeypatch):
    scenario_crash_and_rerun("postmark", f"{__name__}:CrashingPostmark", sample_root,
                             monkeypatch, first_batch=7)


def test_the_server_token_in_runletter_toml_is_refused(sample_root, monkeypatch):
    scenario_secret_in_file("postmark", sample_root, monkeypatch)


def test_a_missing_server_token_is_a_clear_error(sample_root, monkeypatch):
    scenario_missing_secret("postmark", sample_root, monkeypatch)


def test_an_unknown_message_stream_stops_the_publish_naming_the_setting(sample_root,
                                                                         monkeypatch):
    register(monkeypatch)
    import_sample(sample_root)
    with running("postmark") as server:
        result = publish("postmark", provider_env("postmark", server,
                                                  message_stream="newsletter"))
        assert result.exit_code == 1
        assert "message_stream 'newsletter'" in result.output
        assert "1235" in result.output and not server.delivered
    assert ledger_states(sample_root) == Counter({"planned": AUDIENCE})


def test_a_batch_over_the_size_limit_is_split_into_several_calls(sample_root):
    import_sample(sample_root)
    # Each sample message is ~45 kB; a 200 kB cap makes several calls of one batch.
    big = type("CappedPostmark", (PostmarkProvider,), {"max_body": 200_000})
    with running("postmark") as server:
        outcome = send_with_ledger(sample_root, big, provider_env("postmark", server))
        assert sum(outcome.sent.values()) == AUDIENCE
        assert outcome.batches == 1  # every goal's readers fit one batch of 500
        assert len(server.requests) > 6
        assert all(r.size <= 200_000 for r in server.requests)
        assert_each_reader_got_their_own_copy(server, sample_root)


def test_a_413_splits_the_call_in_two_and_everyone_is_sent_once(sample_root):
    import_sample(sample_root)
    with running("postmark") as server:
        server.fail_next(413)
        outcome = send_with_ledger(sample_root, PostmarkProvider,
                                   provider_env("postmark", server))
        assert [r.status for r in server.requests[:3]] == [413, 200, 200]
        first = server.requests[0].recipients
        assert [r.recipients for r in server.requests[1:3]] == [first // 2, first - first // 2]
        assert sum(outcome.sent.values()) == AUDIENCE
        assert_each_reader_got_their_own_copy(server, sample_root)


def test_a_5xx_maintenance_answer_fails_the_batch_transiently(sample_root):
    """ErrorCode 100 (maintenance) with 503: failed, retried, nothing bounced."""
    import_sample(sample_root)
    clock = Clock()
    with running("postmark") as server:
        server.fail_next(503, times=2, headers={"Retry-After": formatdate(time.time() + 30,
                                                                          usegmt=True)})
        outcome = send_with_ledger(sample_root, PostmarkProvider,
                                   provider_env("postmark", server), clock)
        assert sum(outcome.sent.values()) == AUDIENCE and not outcome.rejected
    assert clock.waits[0] >= 25  # the HTTP-date form of Retry-After, honoured


def test_a_test_copy_goes_through_the_batch_call_with_the_optional_settings(sample_root,
                                                                            monkeypatch):
    """A test copy (--to) goes through the same call and tells which edition it is."""
    register(monkeypatch)
    import_sample(sample_root)
    with running("postmark") as server:
        result = CliRunner().invoke(
            main, ["publish", POST, "--provider", "postmark", "--to", "me@example.org",
                   "--goal", "comeback"],
            env=provider_env("postmark", server, tag="hip-drive", track_opens="true"))
        assert result.exit_code == 0, result.output
        [copy] = server.delivered
        assert copy.to == "me@example.org"
        assert copy.headers["X-Runletter-Edition"] == f"{POST}/comeback"
        assert copy.headers["Reply-To"] == "coach@runfreely.example.org"
        assert server.requests[0].path == "/email/batch"


def test_settings_have_the_documented_defaults_and_the_base_url_is_configurable(
        sample_root):
    config = open_project(sample_root).config
    settings = provider_settings(PostmarkProvider, config, environ={})
    assert settings["base_url"] == "https://api.postmarkapp.com"
    assert settings["message_stream"] == "broadcast" and settings["timeout"] == 30.0
    env = {"RUNLETTER_POSTMARK_BASE_URL": "http://127.0.0.1:9/",
           "RUNLETTER_POSTMARK_SERVER_TOKEN": "t"}
    provider = PostmarkProvider(config, Addresser(config, Signer(SECRET)),
                                provider_settings(PostmarkProvider, config, environ=env))
    assert provider.base_url == "http://127.0.0.1:9"
    with pytest.raises(ProviderConfigError, match="base_url"):
        PostmarkProvider(config, Addresser(config, Signer(SECRET)),
                         {"server_token": "t", "base_url": "api.postmarkapp.com"})


def test_a_refused_connection_fails_the_batch_transiently(sample_root):
    """Nothing listening: every reader FAILED (retryable), none bounced, none sent."""
    import_sample(sample_root)
    with running("postmark") as server:
        url = server.url  # the server stops at the end of the block: the port is closed
    env = {"RUNLETTER_POSTMARK_SERVER_TOKEN": "test-token", "RUNLETTER_POSTMARK_BASE_URL": url,
           "RUNLETTER_POSTMARK_TIMEOUT": "2"}
    outcome = send_with_ledger(sample_root, PostmarkProvider, env, max_attempts=2)
    assert not outcome.sent and not outcome.rejected
    assert sum(outcome.failed.values()) == AUDIENCE
    with project_store(sample_root) as store:
        error = store.conn.execute("SELECT error FROM deliveries LIMIT 1").fetchone()[0]
    assert error.startswith("Postmark: connection failed")


def test_retry_after_reads_seconds_and_http_dates():
    now = 1_700_000_000.0
    assert parse_retry_after("7", lambda: now) == 7
    assert parse_retry_after(formatdate(now + 30, usegmt=True), lambda: now) == 30
    assert parse_retry_after(formatdate(now - 30, usegmt=True), lambda: now) == 0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_rate_limit_reset(str(int(now) + 12), lambda: now) == 12
    assert parse_rate_limit_reset("x") is None



def test_goals_share_calls_so_a_publish_needs_the_fewest_requests(sample_root):
    import_sample(sample_root)
    small = type("SmallPostmark", (PostmarkProvider,), {"max_batch": 7})
    with running("postmark") as server:
        outcome = send_with_ledger(sample_root, small, provider_env("postmark", server))
        assert sum(outcome.sent.values()) == AUDIENCE
        assert len(server.requests) == -(-AUDIENCE // 7)  # ceil: no call is left part-empty
        assert all(r.recipients <= 7 for r in server.requests)
        assert_each_reader_got_their_own_copy(server, sample_root)
