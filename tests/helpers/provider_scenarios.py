"""What every HTTP provider (Postmark, Mailgun, SendGrid) must do, as scenarios against its
contract server: the real publish path (the CLI, or send_post over the real SQLite ledger)
of the sample's Hip Drive post. test_postmark.py, test_mailgun.py and test_sendgrid.py run
them each for their provider."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.delivery.address import Addresser
from publisher.delivery.providers import REGISTRY, provider_class
from publisher.delivery.providers.base import Provider, provider_settings
from publisher.delivery.send import Outcome, send_post
from publisher.delivery.tokens import Signer
from publisher.project import open_project
from publisher.render.email import EmailRenderer
from publisher.store.ledger import Ledger
from tests.contract import ContractServer, running
from tests.helpers.support import Clock, Crash, import_sample, project_store
from tests.samples import AUDIENCE, SECRET
from tests.samples import HIP_DRIVE as POST

PROVIDERS = {
    "postmark": "publisher.delivery.providers.postmark.sending:PostmarkProvider",
    "mailgun": "publisher.delivery.providers.mailgun:MailgunProvider",
    "sendgrid": "publisher.delivery.providers.sendgrid:SendgridProvider",
}
CREDENTIALS = {  # what the contract servers accept by default
    "postmark": {"SERVER_TOKEN": "test-token"},
    "mailgun": {"API_KEY": "key-test", "DOMAIN": "mg.example.org"},
    "sendgrid": {"API_KEY": "SG.test"},
}
SECRET_SETTING = {"postmark": "server_token", "mailgun": "api_key", "sendgrid": "api_key"}


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
    with project_store(root) as store:
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
    with project_store(root) as store:
        return Counter(dict(store.conn.execute(
            "SELECT state, COUNT(*) FROM deliveries WHERE post = :post GROUP BY state",
            {"post": POST}).fetchall()))


def bounced_readers(root: Path) -> set[str]:
    """The addresses the store has marked bounced."""
    with project_store(root) as store:
        return {s.email for s in store.list(status="bounced")}


def max_attempts_used(root: Path) -> int:
    """The most attempts any ledger row has used."""
    with project_store(root) as store:
        return store.conn.execute("SELECT MAX(attempts) FROM deliveries").fetchone()[0]


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
    with project_store(root) as store:
        ledger = ledger_class(store)
        ledger.plan(POST, [g.slug for g in resolved.audience])
        with cls(config, addresser, settings) as provider:
            return send_post(resolved, ledger, provider, EmailRenderer(config), addresser,
                             sleep=clock.sleep, clock=clock, **kwargs)


# -- scenarios ----------------------------------------------------------------------------

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
    """429 (with the provider's wait header) and 5xx are retried, and each of those readers
    is delivered exactly once; a connection dropped after the call was read may have been
    taken, so its readers stay in flight (not retried); the first wait honours the
    provider's wait."""
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
        dropped = server.requests[2].recipients
        assert sum(outcome.in_flight.values()) == dropped > 0
        assert sum(outcome.sent.values()) == AUDIENCE - dropped and not outcome.failed
        assert all(n == 1 for n in server.counts().values())
    # Other goals' batches go on meanwhile; the publish cannot end before the wait it was
    # told, because the rate-limited readers are only retried after it.
    assert clock.waits and sum(clock.waits) >= told
    assert ledger_states(root) == Counter({"sent": AUDIENCE - dropped, "in-flight": dropped})


def scenario_rejection(provider: str, cls: type[Provider], root: Path) -> None:
    """A reader the provider refuses for good is marked bounced; the rest are sent."""
    import_sample(root)
    with project_store(root) as store:
        victim = next(s for s in store.list(status="active", goal="marathon"))
    with running(provider) as server:
        server.reject(victim.email)
        outcome = send_with_ledger(root, cls, provider_env(provider, server))
        assert outcome.rejected == Counter({"marathon": 1})
        assert sum(outcome.sent.values()) == AUDIENCE - 1
        assert_each_reader_got_their_own_copy(server, root, without=frozenset({victim.email}))
    with project_store(root) as store:
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
    """A rate_limit for scenario_transient_faults: a 429 with Retry-After: SECONDS."""
    def inject(server: ContractServer) -> float:
        server.fail_next(429, headers={"Retry-After": str(seconds)})
        return seconds
    return inject
