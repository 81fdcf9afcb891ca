"""The SES provider against a real moto server (SES v2 API) on 127.0.0.1.

Publishes go through the CLI on a copy of the sample newsletter; what SES accepted is read
back from moto (/moto-api/data.json) and parsed as the MIME a reader would get. Where a test
needs SES to answer with an error moto never gives (throttling, a paused account, one bad
address), ScriptedSes puts a thin wrapper around the real client that answers some calls
the way SES documents it; every other call goes to moto.
"""

from __future__ import annotations

import email
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from email import policy
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from publisher.cli import main
from publisher.delivery.address import Addresser
from publisher.delivery.providers import REGISTRY, provider_class
from publisher.delivery.providers.base import (
    ACCEPTED,
    FAILED,
    REJECTED,
    Batch,
    ProviderConfigError,
    provider_settings,
)
from publisher.delivery.providers.ses.pacing import Pacer
from publisher.delivery.providers.ses.sending import SesProvider, ses_address
from publisher.delivery.tokens import Signer
from publisher.errors import RunletterError
from publisher.project import open_project
from publisher.render.email import EmailRenderer
from publisher.store import Store
from tests.helpers.moto_server import running_moto
from tests.helpers.provider_scenarios import ledger_states
from tests.helpers.support import Clock, forget_module, free_port, import_sample
from tests.samples import HIP_DRIVE as POST
from tests.samples import REPO, SECRET

SENDER = "maya@runfreely.example.org"
SENDER_DOMAIN = "runfreely.example.org"
REGION = "us-east-1"


# -- the service, and SES answering what moto never does ---------------------------------


def service_error(code: str, message: str, status: int = 400,
                  headers: dict[str, str] | None = None) -> ClientError:
    """The error botocore raises when SES answers a call with `code`."""
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status,
                                             "HTTPHeaders": headers or {}}}, "SendEmail")


class ScriptedClient:
    """The real sesv2 client; `script` may answer a call with an error instead of moto."""

    def __init__(self, client, owner: type[ScriptedSes]):
        self._client = client
        self._owner = owner

    def send_email(self, **params):
        owner = self._owner
        with owner.lock:
            owner.starts.append(time.monotonic())
            owner.calls.append(params)
            number = len(owner.calls)
        error = owner.script(number, params["Destination"]["ToAddresses"][0])
        if error is not None:
            raise error
        return self._client.send_email(**params)

    def __getattr__(self, name):
        return getattr(self._client, name)


class RecordingPacer(Pacer):
    """The provider's own pacer; keeps each time it let a call start (read from its clock
    under its lock, so the record does not depend on when the thread runs next)."""

    def __init__(self, rate: float):
        super().__init__(rate)
        self.granted: list[float] = []

    def wait(self, stop):
        started = super().wait(stop)
        if started is not None:
            self.granted.append(started)
        return started


class ScriptedSes(SesProvider):
    """SesProvider whose client records every call and may be answered by `script`."""

    lock = threading.Lock()
    starts: list[float] = []
    calls: list[dict] = []
    script: Callable[[int, str], ClientError | None] = staticmethod(lambda number, to: None)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pacer = RecordingPacer(self.max_rate)

    def open(self):
        super().open()
        self.client = ScriptedClient(self.client, type(self))


@pytest.fixture(autouse=True)
def fresh_script(monkeypatch):
    monkeypatch.setattr(ScriptedSes, "starts", [])
    monkeypatch.setattr(ScriptedSes, "calls", [])


@pytest.fixture(scope="module")
def moto():
    with running_moto() as server:
        yield server


@pytest.fixture
def aws(moto, monkeypatch, tmp_path):
    """Test credentials for a clean SES on moto; nothing from the developer's own AWS setup."""
    moto.reset()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                 "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SESV2",
                 "AWS_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("RUNLETTER_SES_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("RUNLETTER_SES_REGION", REGION)
    monkeypatch.setenv("RUNLETTER_SES_MAX_RATE", "1000")  # pacing has its own test
    return moto


def verify(moto, identity: str, api: str = "sesv2") -> None:
    """Verify a sender identity on moto, as SES requires before it sends from it."""
    client = boto3.client(api, endpoint_url=moto.url, region_name=REGION)
    if api == "sesv2":
        client.create_email_identity(EmailIdentity=identity)
    else:
        client.verify_email_identity(EmailAddress=identity)


# -- publishing through the CLI ----------------------------------------------------------


@pytest.fixture
def news(sample_root, aws, monkeypatch):
    """The sample newsletter with its readers imported, publishing via SES on moto."""
    monkeypatch.setitem(REGISTRY, "ses", "publisher.delivery.providers.ses.sending:SesProvider")
    toml = sample_root / "runletter.toml"
    toml.write_text(toml.read_text().replace("backoff_base = 1.0", "backoff_base = 0.02"))
    import_sample(sample_root)
    return sample_root


def publish(*extra: str):
    return CliRunner().invoke(main, ["publish", POST, "--yes", "--provider", "ses", *extra],
                              catch_exceptions=False)


def audience(root: Path) -> dict[str, object]:
    """Active readers whose goal is in the post's audience, by address."""
    project = open_project(root)
    goals = {g.slug for g in project.resolve(project.post(POST)).audience}
    with Store.open(root / "subscribers/runletter.db") as store:
        return {s.email: s for s in store.list(status="active") if s.goal in goals}


def statuses(root: Path) -> Counter:
    with Store.open(root / "subscribers/runletter.db") as store:
        return Counter(s.status for s in store.list())


def parsed(sent: list[dict]) -> list[email.message.EmailMessage]:
    return [email.message_from_string(m["raw_data"], policy=policy.default) for m in sent]


def to_of(message) -> str:
    return message["To"].addresses[0].addr_spec


def test_publish_sends_every_reader_exactly_one_message_of_their_own(news, aws):
    verify(aws, SENDER_DOMAIN)  # the domain verified: any address of it may send
    readers = audience(news)
    assert len(readers) == 59
    result = publish()
    assert result.exit_code == 0, result.output
    sent = aws.sent()
    messages = parsed(sent)
    assert Counter(to_of(m) for m in messages) == Counter(set(readers))

    config = open_project(news).config
    addresser = Addresser(config, Signer(SECRET))
    for raw, message in zip(sent, messages, strict=True):
        reader = readers[to_of(message)]
        values = addresser.values_for(POST, reader.id, reader.email, reader.first_name)
        assert raw["source"] == SENDER
        assert raw["destinations"][0] == reader.email  # Destination.ToAddresses
        assert message["To"].addresses[0].display_name == reader.first_name
        assert message["From"].addresses[0].addr_spec == SENDER
        assert message["Message-ID"] == values["message_id"]
        assert f"<{values['unsubscribe_url']}>" in message["List-Unsubscribe"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain",
                                                                       "text/html"]
        for kind in ("plain", "html"):
            assert config.postal_address in message.get_body((kind,)).get_content()
        assert values["unsubscribe_url"] in message.get_body(("html",)).get_content()

    assert ledger_states(news) == Counter({"sent": 59})
    with Store.open(news / "subscribers/runletter.db") as store:
        ids = {row[0] for row in store.conn.execute("SELECT provider_id FROM deliveries")}
    assert ids == {m["id"] for m in sent}  # the receipt keeps SES's MessageId


def test_an_unverified_sender_stops_the_publish_and_leaves_no_trace(news, aws):
    before = statuses(news)
    result = publish()
    assert result.exit_code == 1
    assert f"refused the sender {SENDER}" in result.output
    assert "verify the sender address or its domain" in result.output
    assert aws.sent() == []
    states = ledger_states(news)
    assert states["in-flight"] == 0 and states["sent"] == 0 and states["rejected"] == 0
    assert statuses(news) == before  # no reader is blamed for the account's problem


def test_an_unverified_sender_stops_after_one_call(news, monkeypatch):
    monkeypatch.setitem(REGISTRY, "ses", f"{__name__}:ScriptedSes")
    monkeypatch.setenv("RUNLETTER_SES_MAX_RATE", "2")
    started = time.monotonic()
    result = publish()
    assert result.exit_code == 1 and "refused the sender" in result.output
    assert len(ScriptedSes.calls) == 1  # the rest of the batch never started
    assert time.monotonic() - started < 4  # nor were their pacing slots (0.5 s each) awaited
    assert ledger_states(news)["in-flight"] == 0


def test_throttled_calls_are_retried_by_the_ledger_and_everyone_gets_one_copy(
        news, aws, monkeypatch):
    verify(aws, SENDER_DOMAIN)
    monkeypatch.setitem(REGISTRY, "ses", f"{__name__}:ScriptedSes")
    monkeypatch.setattr(ScriptedSes, "script", staticmethod(
        lambda number, to: service_error("TooManyRequestsException", "Maximum sending rate "
                                         "exceeded.", 429, {"retry-after": "0.05"})
        if number <= 3 else None))
    result = publish()
    assert result.exit_code == 0, result.output
    counts = Counter(to_of(m) for m in parsed(aws.sent()))
    assert counts == Counter(set(audience(news)))
    assert ledger_states(news) == Counter({"sent": 59})
    assert len(ScriptedSes.calls) == 59 + 3
    with Store.open(news / "subscribers/runletter.db") as store:
        attempts = store.conn.execute("SELECT SUM(attempts) FROM deliveries").fetchone()[0]
    # Each throttled call was one more try of its reader; the calls of the batch that SES's
    # Retry-After held back (never made) were not.
    assert attempts == 59 + 3


def test_a_rejected_address_bounces_that_reader_and_the_rest_are_delivered(
        news, aws, monkeypatch):
    verify(aws, SENDER_DOMAIN)
    readers = audience(news)
    victim = sorted(readers)[7]
    bounced = statuses(news)["bounced"]
    monkeypatch.setitem(REGISTRY, "ses", f"{__name__}:ScriptedSes")
    monkeypatch.setattr(ScriptedSes, "script", staticmethod(
        lambda number, to: service_error("MessageRejected", "Illegal address")
        if to == victim else None))
    result = publish()
    assert result.exit_code == 0, result.output
    counts = Counter(to_of(m) for m in parsed(aws.sent()))
    assert counts == Counter(set(readers) - {victim})
    assert ledger_states(news) == Counter({"sent": 58, "rejected": 1})
    with Store.open(news / "subscribers/runletter.db") as store:
        assert store.get(victim).status == "bounced"
        error = store.conn.execute("SELECT error FROM deliveries WHERE email = :email",
                                   {"email": victim}).fetchone()[0]
    assert error == "MessageRejected: Illegal address"
    assert statuses(news)["bounced"] == bounced + 1


def test_a_message_rejected_for_its_content_bounces_nobody_and_stops(news, aws,
                                                                     monkeypatch):
    verify(aws, SENDER_DOMAIN)
    before = statuses(news)
    monkeypatch.setitem(REGISTRY, "ses", f"{__name__}:ScriptedSes")
    monkeypatch.setattr(ScriptedSes, "script", staticmethod(
        lambda number, to: service_error("MessageRejected", "Message content rejected")))
    result = publish()
    assert result.exit_code == 1
    assert "refused the message (MessageRejected: Message content rejected)" in result.output
    assert aws.sent() == []
    assert statuses(news) == before
    assert ledger_states(news) == Counter({"planned": len(audience(news))})


def test_credentials_the_service_refuses_stop_the_publish(news, aws):
    verify(aws, SENDER_DOMAIN)
    before = statuses(news)
    with aws.auth():  # moto now checks keys against its IAM, which knows no "testing"
        result = publish()
    assert result.exit_code == 1
    assert "AWS refused the credentials" in result.output
    assert "security token included in the request is invalid" in result.output
    assert "<?xml" not in result.output
    assert aws.sent() == [] and ledger_states(news)["in-flight"] == 0
    assert statuses(news) == before


def test_missing_credentials_stop_the_publish_before_anything_is_claimed(news, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = publish()
    assert result.exit_code == 1 and "no AWS credentials found" in result.output
    assert "never in runletter.toml" in result.output
    assert set(ledger_states(news)) <= {"planned"}


def test_an_endpoint_never_reached_stops_the_publish(news, monkeypatch):
    monkeypatch.setenv("RUNLETTER_SES_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    result = publish()
    assert result.exit_code == 1 and "cannot reach http://127.0.0.1:" in result.output
    assert set(ledger_states(news)) <= {"planned"}


# -- the provider on its own -------------------------------------------------------------


@pytest.fixture(scope="module")
def project():
    return open_project(REPO)


@pytest.fixture(scope="module")
def addresser(project):
    return Addresser(project.config, Signer(SECRET))


@pytest.fixture(scope="module")
def editions(project, addresser):
    """Each goal's edition of the post, compiled."""
    editions = EmailRenderer(project.config).editions(project.resolve(project.post(POST)))
    return [addresser.compile(edition) for edition in editions.values()]


@pytest.fixture(scope="module")
def compiled(editions):
    return editions[0]


def make_batch(addresser, compiled, count: int, first: int = 1,
               addresses: list[str] | None = None) -> Batch:
    addresses = addresses or [f"r{i}@example.com" for i in range(first, first + count)]
    recipients = tuple(addresser.recipient(POST, first + n, addr, f"Reader{first + n}")
                       for n, addr in enumerate(addresses))
    return Batch(compiled.edition, compiled, recipients)


def provider(cls, project, addresser, aws, **env: str):
    environ = {"RUNLETTER_SES_ENDPOINT_URL": aws.url, "RUNLETTER_SES_REGION": REGION,
               "RUNLETTER_SES_MAX_RATE": "1000"}
    environ.update({f"RUNLETTER_SES_{key.upper()}": value for key, value in env.items()})
    return cls(project.config, addresser, provider_settings(cls, project.config, environ))


EPSILON = 1e-9  # float rounding of the clock, not scheduling slack


def assert_paced(granted: list[float], calls: list[float], rate: float) -> None:
    """Calls were let start 1/rate apart, and none began before it was let go."""
    granted, calls = sorted(granted), sorted(calls)
    assert len(granted) == len(calls)
    gaps = [b - a for a, b in zip(granted, granted[1:], strict=False)]
    assert min(gaps) >= 1 / rate - EPSILON
    busiest = max(sum(1 for t in granted if s <= t < s + 1.0) for s in granted)
    assert busiest <= rate + 1
    # Each call starts after its own slot, so the k-th call after the k-th slot.
    assert all(c >= g for c, g in zip(calls, granted, strict=True))


def test_calls_start_no_faster_than_max_rate(project, addresser, compiled, aws):
    verify(aws, SENDER_DOMAIN)
    with provider(ScriptedSes, project, addresser, aws, max_rate="20",
                  max_workers="8") as ses:
        receipts = ses.send(make_batch(addresser, compiled, 40))
    assert [r.status for r in receipts] == [ACCEPTED] * 40
    assert len(aws.sent()) == 40
    assert_paced(ses.pacer.granted, ScriptedSes.starts, 20)


def test_pacing_carries_over_from_one_batch_to_the_next(project, addresser, compiled, aws):
    verify(aws, SENDER_DOMAIN)
    with provider(ScriptedSes, project, addresser, aws, max_rate="25") as ses:
        ses.send(make_batch(addresser, compiled, 5))
        ses.send(make_batch(addresser, compiled, 5, first=6))
    assert len(ScriptedSes.starts) == 10
    assert_paced(ses.pacer.granted, ScriptedSes.starts, 25)  # across the batch boundary too


class LateWaker:
    """A stop event never set, whose waits end `late` seconds after asked on a fake clock:
    a thread woken late on a busy machine."""

    def __init__(self, clock: Clock, late: float):
        self.clock, self.late = clock, late

    def is_set(self) -> bool:
        return False

    def wait(self, seconds: float) -> bool:
        self.clock.now += seconds + self.late
        return False


def test_callers_who_wake_late_still_start_a_slot_apart():
    clock = Clock()
    pacer = Pacer(20, clock=clock)
    starts = []
    for _ in range(30):
        pacer.wait(LateWaker(clock, late=0.2))
        starts.append(clock())
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 1 / 20 - EPSILON


def test_an_account_error_after_some_were_accepted_fails_the_rest_then_stops(
        project, addresser, compiled, aws, monkeypatch):
    verify(aws, SENDER_DOMAIN)
    monkeypatch.setattr(ScriptedSes, "script", staticmethod(
        lambda number, to: service_error("SendingPausedException", "Sending is paused.")
        if number == 3 else None))
    with provider(ScriptedSes, project, addresser, aws, max_workers="1") as ses:
        receipts = {r.subscriber_id: r for r in ses.send(make_batch(addresser, compiled, 6))}
        assert [receipts[i].status for i in range(1, 7)] == [ACCEPTED] * 2 + [FAILED] * 4
        assert "sending is paused" in receipts[3].reason
        assert receipts[4].reason.startswith("not sent: ses: sending is paused")
        with pytest.raises(ProviderConfigError, match="sending is paused"):
            ses.send(make_batch(addresser, compiled, 2, first=7))
    assert len(ScriptedSes.calls) == 3 and len(aws.sent()) == 2


def test_batches_of_several_editions_go_out_together_each_reader_their_own(
        project, addresser, editions, aws, monkeypatch):
    verify(aws, SENDER_DOMAIN)
    first, second = editions[:2]
    batches = [make_batch(addresser, first, 3), make_batch(addresser, second, 3, first=4)]
    with provider(SesProvider, project, addresser, aws) as ses:
        receipts = ses.send_many(batches)
    assert sorted(r.subscriber_id for r in receipts if r.status == ACCEPTED) == [*range(1, 7)]
    edition_of = {to_of(m): m["X-Runletter-Edition"] for m in parsed(aws.sent())}
    expected = {f"r{i}@example.com": (first if i <= 3 else second).edition for i in range(1, 7)}
    assert edition_of == {to: f"{e.post_slug}/{e.goal}" for to, e in expected.items()}
    assert first.edition.goal != second.edition.goal
    # An account error in the second edition's part, after the first's went out: the rest
    # fail (the ledger keeps them), nothing already accepted is lost, the next call stops.
    monkeypatch.setattr(ScriptedSes, "script", staticmethod(
        lambda number, to: service_error("AccountSuspendedException", "Suspended.")
        if to == "r10@example.com" else None))
    batches = [make_batch(addresser, first, 3, first=7),
               make_batch(addresser, second, 3, first=10)]
    with provider(ScriptedSes, project, addresser, aws, max_workers="1") as ses:
        receipts = {r.subscriber_id: r.status for r in ses.send_many(batches)}
        assert receipts == {7: ACCEPTED, 8: ACCEPTED, 9: ACCEPTED, 10: FAILED, 11: FAILED,
                            12: FAILED}
        with pytest.raises(ProviderConfigError, match="suspended"):
            ses.send(make_batch(addresser, first, 1, first=13))


def test_close_drops_calls_not_yet_started(project, addresser, compiled, aws):
    verify(aws, SENDER_DOMAIN)
    ses = provider(ScriptedSes, project, addresser, aws, max_rate="4")
    ses.open()
    answer: list = []
    sender = threading.Thread(target=lambda: answer.append(
        ses.send(make_batch(addresser, compiled, 8))))
    sender.start()
    time.sleep(0.1)  # the first call is done, the others wait for their 1/4 s slots
    ses.close()
    sender.join(5)
    receipts = {r.subscriber_id: r for r in answer[0]}
    assert receipts[1].status == ACCEPTED
    assert len(ScriptedSes.calls) == len(aws.sent()) < 8
    unsent = [r for r in receipts.values() if r.status == FAILED]
    assert len(unsent) == 8 - len(ScriptedSes.calls)
    assert all(r.reason == "not sent: the provider was closed" for r in unsent)


@pytest.mark.parametrize("code, status, message, expected", [
    ("MessageRejected", 400, "Illegal address", REJECTED),
    ("MessageRejected", 400, "Message content rejected", "config"),
    ("MessageRejected", 400, "Email address is not verified. The following identities "
     "failed the check in region US-EAST-1: r1@example.com", "config"),
    ("TooManyRequestsException", 429, "Too many requests", FAILED),
    ("LimitExceededException", 400, "Daily message quota exceeded.", FAILED),
    ("Throttling", 400, "Maximum sending rate exceeded.", FAILED),
    ("ServiceUnavailable", 503, "", FAILED),
    ("InternalFailure", 500, "", FAILED),
    ("AccountSuspendedException", 400, "", "config"),
    ("SendingPausedException", 400, "", "config"),
    ("MailFromDomainNotVerifiedException", 400, "", "config"),
    ("NotFoundException", 404, "Configuration set <x> does not exist.", "config"),
    ("UnrecognizedClientException", 400, "The security token is invalid.", "config"),
    ("AccessDeniedException", 403, "not authorized to perform ses:SendEmail", "config"),
    ("BadRequestException", 400, "Illegal address: r1@example.com", REJECTED),
    ("BadRequestException", 400, "Invalid configuration set name", "config"),
])
def test_each_ses_error_maps_to_a_receipt_or_stops(project, addresser, compiled, aws,
                                                   monkeypatch, code, status, message,
                                                   expected):
    monkeypatch.setattr(ScriptedSes, "script", staticmethod(
        lambda number, to: service_error(code, message, status)))
    with provider(ScriptedSes, project, addresser, aws) as ses:
        if expected == "config":
            with pytest.raises(ProviderConfigError):
                ses.send(make_batch(addresser, compiled, 1))
        else:
            [receipt] = ses.send(make_batch(addresser, compiled, 1))
            assert receipt.status == expected
            assert code in receipt.reason


def test_retry_after_from_the_service_reaches_the_receipt(project, addresser, compiled, aws,
                                                          monkeypatch):
    monkeypatch.setattr(ScriptedSes, "script", staticmethod(
        lambda number, to: service_error("TooManyRequestsException", "slow down", 429,
                                         {"retry-after": "7"})))
    with provider(ScriptedSes, project, addresser, aws) as ses:
        [receipt] = ses.send(make_batch(addresser, compiled, 1))
    assert receipt.status == FAILED and receipt.retry_after == 7.0


def test_no_call_of_the_batch_starts_after_ses_asked_to_wait(project, addresser, compiled,
                                                               aws, monkeypatch):
    verify(aws, SENDER_DOMAIN)
    monkeypatch.setattr(ScriptedSes, "script", staticmethod(
        lambda number, to: service_error("TooManyRequestsException", "slow down", 429,
                                         {"retry-after": "30"}) if number == 2 else None))
    with provider(ScriptedSes, project, addresser, aws, max_workers="1") as ses:
        receipts = {r.subscriber_id: r for r in ses.send(make_batch(addresser, compiled, 6))}
    assert len(ScriptedSes.calls) == 2 and len(aws.sent()) == 1
    assert receipts[1].status == ACCEPTED
    assert all(receipts[i].status == FAILED and receipts[i].retry_after == 30.0
               for i in range(2, 7))
    assert receipts[3].reason == "not sent: SES asked to wait 30 s"
    assert not receipts[3].tried and receipts[2].tried


def test_addresses_travel_as_ascii_and_the_configuration_set_is_sent(
        project, addresser, compiled, aws):
    verify(aws, SENDER_DOMAIN)
    batch = make_batch(addresser, compiled, 3, addresses=[
        "ana@bücher.example", "zoë@example.com", "plain@example.com"])
    with provider(ScriptedSes, project, addresser, aws, configuration_set="runletter") as ses:
        receipts = {r.subscriber_id: r for r in ses.send(batch)}
    assert receipts[1].status == receipts[3].status == ACCEPTED
    assert receipts[2].status == REJECTED and "non-ASCII" in receipts[2].reason
    assert [c["Destination"]["ToAddresses"] for c in ScriptedSes.calls] == [
        ["ana@xn--bcher-kva.example"], ["plain@example.com"]]
    assert {c["ConfigurationSetName"] for c in ScriptedSes.calls} == {"runletter"}
    assert receipts[1].provider_id in {m["id"] for m in aws.sent()}


def test_a_verified_sender_address_is_enough(project, addresser, compiled, aws):
    verify(aws, SENDER, api="ses")  # SES v1 VerifyEmailIdentity: the address, not the domain
    with provider(SesProvider, project, addresser, aws) as ses:
        receipts = ses.send(make_batch(addresser, compiled, 3))
    assert [r.status for r in receipts] == [ACCEPTED] * 3
    assert sorted(m["destinations"][0] for m in aws.sent()) == [
        "r1@example.com", "r2@example.com", "r3@example.com"]


def test_no_configuration_set_means_none_is_named(project, addresser, compiled, aws):
    verify(aws, SENDER_DOMAIN)
    with provider(ScriptedSes, project, addresser, aws) as ses:
        ses.send(make_batch(addresser, compiled, 1))
    assert "ConfigurationSetName" not in ScriptedSes.calls[0]


def test_ses_address():
    assert ses_address("r@example.com") == "r@example.com"
    assert ses_address("r@bücher.example") == "r@xn--bcher-kva.example"
    with pytest.raises(ValueError, match="no SMTPUTF8"):
        ses_address("zoë@example.com")


@pytest.mark.parametrize("env, message", [
    ({"RUNLETTER_SES_MAX_RATE": "0"}, "max_rate"),
    ({"RUNLETTER_SES_MAX_RATE": "fast"}, "max_rate"),
    ({"RUNLETTER_SES_MAX_WORKERS": "0"}, "max_workers"),
    ({"RUNLETTER_SES_REGION": " "}, "region"),
])
def test_bad_settings_stop_before_anything_is_sent(project, addresser, env, message):
    with pytest.raises(ProviderConfigError, match=message):
        SesProvider(project.config, addresser,
                    provider_settings(SesProvider, project.config, env))


def test_settings_and_secrets_stay_out_of_the_file(project):
    assert SesProvider.SECRETS == ()
    assert set(SesProvider.SETTINGS) == {"region", "endpoint_url", "configuration_set",
                                         "max_rate", "max_workers"}
    assert SesProvider.max_batch == 50 and SesProvider.name == "ses"
    settings = provider_settings(SesProvider, project.config, {})
    assert settings == {"region": "us-east-1", "endpoint_url": "", "configuration_set": "",
                        "max_rate": 14.0, "max_workers": 8}


def test_without_boto3_the_registry_says_what_to_install(monkeypatch):
    monkeypatch.setitem(REGISTRY, "ses", "publisher.delivery.providers.ses.sending:SesProvider")
    forget_module(monkeypatch, "publisher.delivery.providers.ses.sending")
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ImportError
    with pytest.raises(RunletterError, match=r"pip install 'runletter\[ses\]'"):
        provider_class("ses")
