"""The Postmark provider against the Postmark contract server on 127.0.0.1.

Everything runs the real publish path (the CLI, or send_post over the real SQLite ledger)
against a server that speaks Postmark's documented `/email/batch`. The helpers at the top
are shared with test_mailgun.py and test_sendgrid.py: the same promises hold for every
HTTP provider.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from publisher.address import Addresser
from publisher.cli import main
from publisher.deliver import Ledger, Outcome, send_post
from publisher.project import open_project
from publisher.providers import REGISTRY, provider_class
from publisher.providers.base import Provider, ProviderConfigError, provider_settings
from publisher.providers.http import parse_rate_limit_reset, parse_retry_after
from publisher.providers.postmark import PostmarkProvider
from publisher.render import EmailRenderer
from publisher.store import Store
from publisher.tokens import Signer

from .conftest import SECRET
from .contract import ContractServer, running
from .test_deliver import POST, Crash, import_sample

AUDIENCE = 59  # active sample readers whose goal is in the Hip Drive audience

PROVIDERS = {
    "postmark": "publisher.providers.postmark:PostmarkProvider",
    "mailgun": "publisher.providers.mailgun:MailgunProvider",
    "sendgrid": "publisher.providers.sendgrid:SendgridProvider",
}
CREDENTIALS = {  # what the contract servers accept by default
    "postmark": {"SERVER_TOKEN": "test-token"},
    "mailgun": {"API_KEY": "key-test", "DOMAIN": "mg.example.org"},
    "sendgrid": {"API_KEY": "SG.test"},
}
SECRET_SETTING = {"postmark": "server_token", "mailgun": "api_key", "sendgrid": "api_key"}


# -- shared helpers (also used by test_mailgun.py and test_sendgrid.py) --------------------

def register(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    """Make sure the registry names the HTTP providers (and any test subclasses)."""
    for name, target in {**PROVIDERS, **extra}.items():
        monkeypatch.setitem(REGISTRY, name, target)


def provider_env(provider: str, server: ContractServer, **overrides: str) -> dict[str, str]:
    """RUNLETTER_<PROVIDER>_* pointing the provider at the contract server."""
    env = {f"RUNLETTER_{provider.upper()}_{k}": v for k, v in CREDENTIALS[provider].items()}
    env[f"RUNLETTER_{provider.upper()}_BASE_URL"] = server.url
    env.update({f"RUNLETTER_{provider.upper()}_{k.upper()}": v for k, v in overrides.items()})
    return env


def publish(provider: str, env: dict[str, str], *extra: str, catch: bool = False):
    """`runletter publish POST --yes --provider PROVIDER` with these environment variables."""
    return CliRunner().invoke(main, ["publish", POST, "--yes", "--provider", provider, *extra],
                              env=env, catch_exceptions=catch)


@dataclass(frozen=True)
class Expected:
    """What one reader's copy must be: exactly what the outbox would have written."""

    subject: str
    html: str
    text: str
    first_name: str
    unsubscribe_url: str
    unsubscribe_mailto: str


def expected_copies(root: Path) -> dict[str, Expected]:
    """Each reader of the audience -> their copy, built from their goal's edition."""
    project = open_project(root)
    resolved = project.resolve(project.post(POST))
    editions = EmailRenderer(project.config).editions(resolved)
    addresser = Addresser(project.config, Signer(SECRET))
    goals = {g.slug for g in resolved.audience}
    out = {}
    with Store.open(project.config.store_path) as store:
        for s in store.list(status="active"):
            if s.goal not in goals:
                continue
            values = addresser.values_for(POST, s.id, s.email, s.first_name)
            edition = editions[s.goal]
            out[s.email] = Expected(edition.subject, edition.html(values), edition.text(values),
                                    s.first_name, values["unsubscribe_url"],
                                    values["unsubscribe_mailto"])
    return out


def assert_each_reader_got_their_own_copy(server: ContractServer, root: Path,
                                          without: frozenset[str] = frozenset()) -> None:
    """Every reader (but `without`) got exactly one copy, with their own name and links."""
    expected = expected_copies(root)
    postal = open_project(root).config.postal_address
    assert server.counts() == Counter({e: 1 for e in expected if e not in without})
    for copy in server.delivered:
        want = expected[copy.to]
        headers = {name.lower(): value for name, value in copy.headers.items()}
        assert copy.subject == want.subject
        assert html.escape(want.first_name or "runner", quote=True) in copy.html
        assert (want.first_name or "runner") in copy.text
        assert html.escape(want.unsubscribe_url, quote=True) in copy.html
        assert want.unsubscribe_url in copy.text
        assert headers["list-unsubscribe"] == (f"<{want.unsubscribe_url}>, "
                                               f"<{want.unsubscribe_mailto}>")
        assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
        assert html.escape(postal, quote=False) in copy.html and postal in copy.text
        assert copy.html == want.html and copy.text == want.text  # nothing else differs


def ledger_states(root: Path) -> Counter:
    """How many ledger rows of the post are in each state."""
    with Store.open(root / "subscribers/runletter.db") as store:
        return Counter(dict(store.conn.execute(
            "SELECT state, COUNT(*) FROM deliveries WHERE post = ? GROUP BY state",
            (POST,)).fetchall()))


def bounced_readers(root: Path) -> set[str]:
    with Store.open(root / "subscribers/runletter.db") as store:
        return {s.email for s in store.list(status="bounced")}


def max_attempts_used(root: Path) -> int:
    with Store.open(root / "subscribers/runletter.db") as store:
        return store.conn.execute("SELECT MAX(attempts) FROM deliveries").fetchone()[0]


class Clock:
    """A fake clock that only moves when the publish sleeps; records every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def send_with_ledger(root: Path, cls: type[Provider], env: dict[str, str],
                     clock: Clock | None = None, ledger_class: type[Ledger] = Ledger,
                     **kwargs: Any) -> Outcome:
    """send_post with the real ledger and the settings read the way the CLI reads them."""
    clock = clock or Clock()
    project = open_project(root)
    config = project.config
    resolved = project.resolve(project.post(POST))
    addresser = Addresser(config, Signer(SECRET))
    settings = provider_settings(cls, config, environ=env)
    with Store.open(config.store_path) as store:
        ledger = ledger_class(store)
        ledger.plan(POST, [g.slug for g in resolved.audience])
        with cls(config, addresser, settings) as provider:
            return send_post(resolved, ledger, provider, EmailRenderer(config), addresser,
                             sleep=clock.sleep, clock=clock, **kwargs)


# -- shared scenarios ----------------------------------------------------------------------

def scenario_publish(provider: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI publish: every reader one copy of their own; calls within the limit."""
    register(monkeypatch)
    import_sample(root)
    with running(provider) as server:
        result = publish(provider, provider_env(provider, server))
        assert result.exit_code == 0, result.output
        assert f"sent {AUDIENCE} messages" in result.output
        assert_each_reader_got_their_own_copy(server, root)
        limit = provider_class(provider).max_batch
        assert all(0 < r.recipients <= limit for r in server.requests)
        assert all(r.status in (200, 202) for r in server.requests)
    assert ledger_states(root) == Counter({"sent": AUDIENCE})


def scenario_small_batches(provider: str, cls: type[Provider], root: Path) -> None:
    """With a smaller max_batch the ledger hands out more batches; none exceeds it."""
    import_sample(root)
    small = type(f"Small{cls.__name__}", (cls,), {"max_batch": 4})
    with running(provider) as server:
        outcome = send_with_ledger(root, small, provider_env(provider, server))
        assert sum(outcome.sent.values()) == AUDIENCE
        assert all(r.recipients <= 4 for r in server.requests)
        assert len(server.requests) == outcome.batches >= AUDIENCE // 4
        assert_each_reader_got_their_own_copy(server, root)


def scenario_transient_faults(provider: str, cls: type[Provider], root: Path,
                              rate_limit: Callable[[ContractServer], float]) -> None:
    """429 (with the provider's wait header), 5xx and a dropped connection: each reader is
    still delivered exactly once, and the first wait honours the provider's wait."""
    import_sample(root)
    clock = Clock()
    with running(provider) as server:
        told = rate_limit(server)  # queues the 429 and says how long it asked to wait
        server.fail_next(503)
        server.drop_next()
        outcome = send_with_ledger(root, cls, provider_env(provider, server), clock,
                                   backoff_base=1, backoff_max=60)
        statuses = [r.status for r in server.requests]
        assert statuses[:3] == [429, 503, 0]
        assert sum(outcome.sent.values()) == AUDIENCE and not outcome.failed
        assert_each_reader_got_their_own_copy(server, root)
    # Other goals' batches go on meanwhile; the publish cannot end before the wait it was
    # told, because the rate-limited readers are only retried after it.
    assert clock.waits and sum(clock.waits) >= told
    assert ledger_states(root) == Counter({"sent": AUDIENCE})


def scenario_rejection(provider: str, cls: type[Provider], root: Path) -> None:
    """A reader the provider refuses for good is marked bounced; the rest are sent."""
    import_sample(root)
    with Store.open(root / "subscribers/runletter.db") as store:
        victim = next(s for s in store.list(status="active", goal="marathon"))
    with running(provider) as server:
        server.reject(victim.email)
        outcome = send_with_ledger(root, cls, provider_env(provider, server))
        assert outcome.rejected == Counter({"marathon": 1})
        assert sum(outcome.sent.values()) == AUDIENCE - 1
        assert_each_reader_got_their_own_copy(server, root, without=frozenset({victim.email}))
    with Store.open(root / "subscribers/runletter.db") as store:
        assert store.get(victim.email).status == "bounced"
        assert [h.new_status for h in store.history(victim.email)][-1] == "bounced"
    assert ledger_states(root) == Counter({"sent": AUDIENCE - 1, "rejected": 1})


def scenario_auth_error(provider: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A wrong credential stops the publish with a clear message and marks nothing."""
    register(monkeypatch)
    import_sample(root)
    setting = SECRET_SETTING[provider]
    with running(provider) as server:
        result = publish(provider, provider_env(provider, server, **{setting: "wrong"}))
        assert result.exit_code == 1
        assert f"RUNLETTER_{provider.upper()}_{setting.upper()}" in result.output
        assert len(server.requests) == 1 and server.requests[0].status in (401, 403)
        assert not server.delivered
    assert ledger_states(root) == Counter({"planned": AUDIENCE})
    assert max_attempts_used(root) == 0
    return result.output


def scenario_crash_and_rerun(provider: str, crashy: str, root: Path,
                             monkeypatch: pytest.MonkeyPatch, first_batch: int) -> None:
    """Killed right after the first batch went out: the re-run sends the others, and the
    readers of the unsure batch are reported in flight, never sent twice."""
    register(monkeypatch, crashy=crashy)
    import_sample(root)
    with running(provider) as server:
        env = provider_env(provider, server)
        with pytest.raises(Crash):
            publish("crashy", env)
        assert sum(server.counts().values()) == first_batch
        assert ledger_states(root) == Counter({"in-flight": first_batch,
                                               "planned": AUDIENCE - first_batch})
        result = publish(provider, env)
        assert result.exit_code == 0, result.output
        assert f"{first_batch} deliveries were in flight" in result.output
        counts = server.counts()
        assert len(counts) == AUDIENCE and set(counts.values()) == {1}
    assert ledger_states(root) == Counter({"sent": AUDIENCE - first_batch,
                                           "in-flight": first_batch})


def scenario_secret_in_file(provider: str, root: Path, monkeypatch: pytest.MonkeyPatch
                            ) -> None:
    """A secret written into runletter.toml is refused before anything is sent."""
    register(monkeypatch)
    import_sample(root)
    setting = SECRET_SETTING[provider]
    with (root / "runletter.toml").open("a") as toml:
        toml.write(f'\n[providers.{provider}]\n{setting} = "oops-committed"\n')
    with running(provider) as server:
        result = publish(provider, provider_env(provider, server))
        assert result.exit_code == 1
        assert "is a secret" in result.output
        assert f"RUNLETTER_{provider.upper()}_{setting.upper()}" in result.output
        assert not server.requests


def scenario_missing_secret(provider: str, root: Path, monkeypatch: pytest.MonkeyPatch
                            ) -> None:
    """Without the secret in the environment the publish stops and says which variable."""
    register(monkeypatch)
    import_sample(root)
    setting = SECRET_SETTING[provider]
    env_name = f"RUNLETTER_{provider.upper()}_{setting.upper()}"
    monkeypatch.delenv(env_name, raising=False)
    with running(provider) as server:
        env: dict[str, Any] = {**provider_env(provider, server), env_name: None}  # unset
        result = publish(provider, env)
        assert result.exit_code == 1 and env_name in result.output
        assert not server.requests
    assert ledger_states(root)["sent"] == 0


def rate_limit_with_retry_after(seconds: int) -> Callable[[ContractServer], float]:
    def inject(server: ContractServer) -> float:
        server.fail_next(429, headers={"Retry-After": str(seconds)})
        return seconds
    return inject


# -- Postmark ------------------------------------------------------------------------------

class CrashingPostmark(PostmarkProvider):
    """Sends its first batch, then the process 'dies' before the ledger hears about it."""

    max_batch = 7

    def send_many(self, batches):
        super().send_many(batches)
        raise Crash()


def test_publish_sends_every_reader_one_copy_with_their_own_name_and_links(
        sample_root, monkeypatch):
    scenario_publish("postmark", sample_root, monkeypatch)


def test_batches_never_exceed_max_batch(sample_root):
    scenario_small_batches("postmark", PostmarkProvider, sample_root)


def test_429_5xx_and_a_dropped_connection_end_delivered_once_honouring_retry_after(
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
    scenario_crash_and_rerun("postmark", "tests.test_postmark:CrashingPostmark", sample_root,
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
    with Store.open(sample_root / "subscribers/runletter.db") as store:
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
