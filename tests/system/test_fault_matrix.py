"""The fault matrix: every provider against every fault a provider, its network or its
server can have, through the real CLI publish and a re-run on the healed service.

Whatever the fault, the same invariants hold: no reader gets a message twice across the
run and the re-run, nobody who left is sent to, no reader's status changes except from a
per-recipient answer, and the exit code and the summary say what happened. A fault a
provider cannot meet is skipped with the reason.

Outcomes a fault must end in:
  DONE       everyone delivered in the run itself (a retry inside the run), exit 0
  IN_FLIGHT  the call may have been taken: exit 1 naming the provider, the count and
             `--resend-in-flight`; the re-run sends those readers nothing
  FAILED     provably not sent, retried until max_attempts: exit 1, the re-run sends
  STOPPED    nothing sent and the run stopped (a refusal no retry fixes): exit 1
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.delivery.providers import REGISTRY
from tests.contract import running
from tests.helpers import moto_server
from tests.helpers.fault_proxy import fault_proxy
from tests.helpers.provider_scenarios import PROVIDERS, provider_env
from tests.helpers.smtp_server import running_smtp
from tests.helpers.support import (
    free_port,
    import_sample,
    outbox_messages,
    project_store,
    scheduled_post,
)
from tests.samples import HIP_DRIVE as POST

DONE, IN_FLIGHT, FAILED, STOPPED = "done", "in flight", "failed", "stopped"
TIMEOUT = "2.0"  # seconds: the client's timeout, roomy for a busy CI machine (moto runs in
# this process, so its answers wait on the GIL); a late answer comes after LATE
LATE = 3.0
FAULTS = ("none", "refused", "reset before the body", "reset after the body",
          "answer after the timeout", "200 with a garbage body", "429 with Retry-After",
          "5xx", "message-level 5xx", "per-recipient rejection")
SENDER = "coach@runfreely.example.org"


@dataclass
class Rig:
    """One provider's service for a test: how to reach it, how it counts what it got."""

    name: str
    env: dict[str, str]
    service: Any = None
    broken_env: dict[str, str] = field(default_factory=dict)  # for the first run only
    root: Path | None = None

    def counts(self) -> Counter:
        """Recipient address -> copies the service took."""
        if self.name == "outbox":
            return Counter(str(m["To"].addresses[0].addr_spec).lower()
                           for m in outbox_messages(self.root))
        if self.name == "smtp":
            return Counter(to.lower() for tos, _ in self.service.messages for to in tos)
        if self.name == "ses":
            # moto lists the envelope and the To header: count each message once.
            return Counter(to for m in self.service[0].sent()
                           for to in {parseaddr(d)[1].lower() for d in m["destinations"]})
        return Counter({k.lower(): v for k, v in self.service.counts().items()})


# -- starting each provider's service ---------------------------------------------------


@contextlib.contextmanager
def rig(name: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    """The provider's real service on 127.0.0.1, with its environment for the CLI."""
    if name == "outbox":
        yield Rig(name, {}, root=root)
    elif name == "smtp":
        with running_smtp() as server:
            yield Rig(name, {"RUNLETTER_SMTP_HOST": server.host,
                             "RUNLETTER_SMTP_PORT": str(server.port),
                             "RUNLETTER_SMTP_SECURITY": "none",
                             "RUNLETTER_SMTP_TIMEOUT": TIMEOUT}, server.handler)
    elif name == "ses":
        with moto_server.running_moto() as moto, fault_proxy(moto.url) as proxy:
            ses_environment(moto, monkeypatch)
            yield Rig(name, {"RUNLETTER_SES_ENDPOINT_URL": proxy.url,
                             "RUNLETTER_SES_REGION": "us-east-1",
                             "RUNLETTER_SES_MAX_RATE": "1000"}, (moto, proxy))
    else:
        for provider, target in PROVIDERS.items():
            monkeypatch.setitem(REGISTRY, provider, target)
        with running(name) as server:
            yield Rig(name, provider_env(name, server, timeout=TIMEOUT), server)


def ses_environment(moto, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh SES (moto keeps state in this process), test credentials only, the sender
    verified, and a short read timeout."""
    import boto3

    moto.reset()
    for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                     "AWS_ENDPOINT_URL_SESV2"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_EC2_METADATA_DISABLED": "true",
                            "AWS_CONFIG_FILE": "/nonexistent",
                            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setattr("publisher.delivery.providers.ses.sending.READ_TIMEOUT", float(TIMEOUT))
    boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto.url
                 ).create_email_identity(EmailIdentity=SENDER.split("@")[1])


# -- how each fault is made, per provider ----------------------------------------------


def inject(r: Rig, fault: str, victim: str) -> str:
    """Arm `fault` for the first run; the outcome it must end in (or skip with why)."""
    maker = {"outbox": _outbox, "smtp": _smtp, "ses": _ses}.get(r.name, _http)
    return maker(r, fault, victim)


def _outbox(r: Rig, fault: str, victim: str) -> str:
    if fault != "none":
        pytest.skip("the outbox writes files: it has no network, server or answer to fail")
    return DONE


def _http(r: Rig, fault: str, victim: str) -> str:
    server = r.service
    if fault == "refused":
        r.broken_env = {f"RUNLETTER_{r.name.upper()}_BASE_URL": f"http://127.0.0.1:{free_port()}"}
        return FAILED
    if fault == "reset before the body":
        server.reset_before_body_next()
        return IN_FLIGHT
    if fault == "reset after the body":
        server.take_then_next("drop")
        return IN_FLIGHT
    if fault == "answer after the timeout":
        server.take_then_next("late", LATE)
        return IN_FLIGHT
    if fault == "200 with a garbage body":
        server.take_then_next("garbage", b"<html>upstream error</html>")
        # Mailgun and SendGrid mean "queued" by the 2xx alone; Postmark's body says which.
        return IN_FLIGHT if r.name == "postmark" else DONE
    if fault == "429 with Retry-After":
        server.fail_next(429, headers={"Retry-After": "1"})
        return DONE
    if fault == "5xx":
        server.fail_next(503)
        return DONE
    if fault == "message-level 5xx":
        # The call's content refused as a whole (Postmark 422, Mailgun/SendGrid 400
        # naming nobody): no retry fixes it.
        server.fail_next(422 if r.name == "postmark" else 400,
                         body={"ErrorCode": 300, "Message": "Invalid message body"}
                         if r.name == "postmark" else {"message": "the message is refused"})
        return STOPPED
    if fault == "per-recipient rejection":
        server.reject(victim)
        return DONE
    return DONE


def _smtp(r: Rig, fault: str, victim: str) -> str:
    handler = r.service
    if fault == "refused":
        r.broken_env = {"RUNLETTER_SMTP_PORT": str(free_port())}
        return STOPPED
    if fault == "reset before the body":
        handler.next_fault = ("mail", 0)  # before DATA: provably not sent, retried
        return DONE
    if fault == "reset after the body":
        handler.next_fault = ("drop", 0)
        return IN_FLIGHT
    if fault == "answer after the timeout":
        handler.next_fault = ("late", LATE)
        return IN_FLIGHT
    if fault == "200 with a garbage body":
        pytest.skip("SMTP answers with reply codes: there is no body to garble")
    if fault == "429 with Retry-After":
        handler.tempfail = {victim: "451 4.7.1 Too many messages, slow down"}
        return FAILED
    if fault == "5xx":
        pytest.skip("SMTP has no call-level 5xx; a 421 is the reset before the body")
    if fault == "message-level 5xx":
        handler.next_fault = ("554", 0)
        return STOPPED  # the message refused, not a reader: nobody changes (RFC 3463 5.7.x)
    if fault == "per-recipient rejection":
        handler.refuse = {victim: "550 5.1.1 No such user"}
        return DONE
    return DONE


def _ses_error(status: int, code: str, message: str) -> tuple[Any, ...]:
    body = json.dumps({"__type": code, "message": message}).encode()
    return ("answer", status, {"Content-Type": "application/json",
                               "x-amzn-ErrorType": code}, body)


def _ses(r: Rig, fault: str, victim: str) -> str:
    proxy = r.service[1]
    if fault == "refused":
        r.broken_env = {"RUNLETTER_SES_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
        return STOPPED  # never reached in this publish: a wrong endpoint, said so
    if fault in ("reset before the body", "reset after the body", "answer after the timeout"):
        proxy.next({"reset before the body": "reset-before", "reset after the body": "drop",
                    "answer after the timeout": "late"}[fault], LATE)
        return IN_FLIGHT
    if fault == "200 with a garbage body":
        proxy.next("garbage", b"<html>")
        return DONE  # SES's 200 says it took the message; only the id is missing
    if fault == "429 with Retry-After":
        proxy.next(*_ses_error(429, "TooManyRequestsException", "Maximum sending rate"))
        return DONE
    if fault == "5xx":
        proxy.next(*_ses_error(500, "InternalFailure", "internal failure"))
        return DONE
    if fault == "message-level 5xx":
        proxy.next(*_ses_error(400, "MessageRejected", "Email content rejected"))
        return STOPPED  # the message refused, not a reader: nobody changes (RFC 3463 5.7.x)
    if fault == "per-recipient rejection":
        pytest.skip("SES refuses no single recipient at SendEmail: its bounces come later, "
                    "by webhook (tests/delivery/providers/test_ses.py)")
    return DONE


# -- the runs ---------------------------------------------------------------------------


def quick_retries(root: Path, provider: str) -> None:
    """A short backoff and two tries, so a FAILED run ends in well under a second; the
    sender on the domain the SES rig verified."""
    toml = root / "runletter.toml"
    text = toml.read_text()
    text = re.sub(r"(?m)^max_attempts = .*$", "max_attempts = 2", text)
    text = re.sub(r"(?m)^backoff_base = .*$", "backoff_base = 0.05", text)
    text = re.sub(r"(?m)^backoff_max = .*$", "backoff_max = 0.1", text)
    toml.write_text(text)


def publish(provider: str, env: dict[str, str]):
    """`runletter publish POST --yes --provider PROVIDER`, as an author runs it."""
    return CliRunner().invoke(main, ["publish", POST, "--yes", "--provider", provider],
                              env=env, catch_exceptions=False)


def statuses(root: Path) -> dict[str, str]:
    """Every reader's status, by address."""
    with project_store(root) as store:
        return {s.email.lower(): s.status for s in store.list()}


@dataclass(frozen=True)
class Ran:
    """What a faulted run and its re-run did."""

    expected: str
    first: Any
    again: Any
    counts: Counter
    before: dict[str, str]
    after: dict[str, str]
    leaver: str
    victim: str
    audience: frozenset[str]  # the readers the post was planned for


def run_fault(provider: str, fault: str, root: Path, monkeypatch) -> Ran:
    """Publish with the fault armed, then again on the healed service."""
    import_sample(root)
    quick_retries(root, provider)
    with project_store(root) as store:
        active = [s for s in store.list(status="active") if s.goal == "marathon"]
        leaver, victim = active[0].email.lower(), active[1].email.lower()
        store.set_status(active[0].id, "unsubscribed", "left before the publish")
    before = statuses(root)
    with rig(provider, root, monkeypatch) as r:
        expected = inject(r, fault, victim)
        first = publish(provider, {**r.env, **r.broken_env})
        if r.name == "smtp":
            r.service.tempfail = {}
        again = publish(provider, r.env)
        counts = r.counts()
    with project_store(root) as store:
        audience = frozenset(row[0].lower() for row in store.conn.execute(
            "SELECT email FROM deliveries WHERE post = :post", {"post": POST}))
    return Ran(expected, first, again, counts, before, statuses(root), leaver, victim,
               audience)


MATRIX = [pytest.param(p, f, id=f"{p}-{f.replace(' ', '_')}")
          for p in ("outbox", "smtp", "ses", "postmark", "mailgun", "sendgrid") for f in FAULTS]


@pytest.mark.parametrize(("provider", "fault"), MATRIX)
def test_no_fault_sends_twice_mails_a_leaver_or_changes_a_reader_unasked(
        provider, fault, sample_root, monkeypatch):
    ran = run_fault(provider, fault, sample_root, monkeypatch)
    output = ran.first.output
    assert "Traceback" not in output
    assert all(n == 1 for n in ran.counts.values()), ran.counts.most_common(3)
    assert ran.counts[ran.leaver] == 0
    changed = {a for a in ran.before if ran.before[a] != ran.after.get(a)}
    assert changed <= ({ran.victim} if fault == "per-recipient rejection" else set()), changed
    if fault == "per-recipient rejection":
        assert ran.after[ran.victim] == "bounced"
    if ran.expected == DONE:
        assert ran.first.exit_code == 0, output
    else:
        assert ran.first.exit_code == 1, output
    if ran.expected == IN_FLIGHT:
        line = re.search(rf"{provider}: (\d+) messages? (is|are) in flight \(sent, but no "
                         rf"answer was read\); run 'runletter publish {POST} "
                         rf"--resend-in-flight'", output)
        assert line, output
        assert int(line.group(1)) >= 1
    if ran.expected == FAILED:
        assert "failed after 2 tries; run publish again" in output
    if ran.expected != IN_FLIGHT:
        # Nothing was in doubt: the run, or the re-run, reached every reader once.
        assert ran.again.exit_code == 0, ran.again.output
        refused = {ran.victim} if fault == "per-recipient rejection" else set()
        assert set(ran.counts) == {a for a, s in ran.before.items() if s == "active"
                                   and a in ran.audience} - refused


@pytest.mark.parametrize("provider", ("smtp", "ses", "postmark", "mailgun", "sendgrid"))
def test_a_message_level_refusal_changes_no_reader_and_stops_the_run(
        provider, sample_root, monkeypatch):
    ran = run_fault(provider, "message-level 5xx", sample_root, monkeypatch)
    assert ran.after == ran.before
    assert ran.first.exit_code == 1, ran.first.output


# -- the other commands say the same -------------------------------------------------------


def test_publish_due_exits_1_naming_the_provider_the_count_and_the_command_for_rows_in_flight(
        sample_root, monkeypatch):
    import_sample(sample_root)
    slug = scheduled_post(sample_root, "2027-01-10-due-note", "2027-01-10T05:00:00Z")
    with rig("smtp", sample_root, monkeypatch) as r:
        r.service.next_fault = ("drop", 0)
        result = CliRunner().invoke(main, ["publish", "--due", "--now", "2027-01-10T06:00:00Z",
                                           "--yes", "--provider", "smtp"], env=r.env,
                                    catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert (f"error: smtp: 1 message is in flight (sent, but no answer was read); run "
            f"'runletter publish {slug} --resend-in-flight' once you have checked") \
        in result.output


def test_report_names_rows_left_in_flight_and_the_command_that_resolves_them(
        sample_root, monkeypatch):
    import_sample(sample_root)
    with rig("postmark", sample_root, monkeypatch) as r:
        r.service.take_then_next("drop")
        assert publish("postmark", r.env).exit_code == 1
    result = CliRunner().invoke(main, ["report", POST], catch_exceptions=False)
    assert result.exit_code == 0
    assert (f"warning: {POST}: 59 messages are in flight (sent, but no answer was read); run "
            f"'runletter publish {POST} --resend-in-flight'") in result.output
