"""Send through Amazon SES (API v2): one raw MIME message per reader, several calls at once.

SES takes one SendEmail call per message here, because every reader's message differs (their
To, their unsubscribe links, their Message-ID); the bytes come from the Addresser, as for
SMTP. Calls run on a small thread pool, paced (pacing.py) so that no more than `max_rate`
start in any second: that is the account's maximum send rate, and going over it only earns
throttling.

boto3 is told not to retry (one attempt per call): the ledger owns retries, with backoff
and jitter, so a throttled or failed message becomes a FAILED receipt and is tried again
later rather than hammered inside one batch.

Outcomes map onto receipts like this:

* a MessageId                        → ACCEPTED (the id is SES's, as in its event records)
* MessageRejected: about the address → REJECTED (bounced); else MessageRefused (run stops)
* throttling, 429, 5xx, no connection → FAILED (the ledger retries later)
* closed, reset or timed out after the call went out → no receipt (in flight, reported)
* what no retry fixes                 → ProviderConfigError: an unverified sender (or the
  sandbox refusing a reader), a suspended or paused account, a MAIL FROM domain not verified,
  a missing configuration set, credentials refused or missing, an endpoint never reached.

A config error is raised only while nothing of the batch was accepted; otherwise the rest of
the batch gets FAILED receipts and the error is raised at the next send (as in smtp.py), so
a receipt is never lost for a message that went out.

Webhook: SES's bounce and complaint notifications through SNS (see sns.py), with the
certificate saved in webhook_certificate, for the topic webhook_topic_arn. boto3 is needed
to send, not to receive webhooks, so it is imported when sending starts.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

from publisher.config import Config
from publisher.delivery.address import Addresser, Message, Recipient, message_date
from publisher.delivery.providers.base import (
    ACCEPTED,
    FAILED,
    TIMEOUT,
    Batch,
    Provider,
    ProviderConfigError,
    Receipt,
    plain,
    setting_error,
)
from publisher.delivery.providers.ses import sns
from publisher.delivery.providers.ses.answers import (
    IN_DOUBT,
    in_doubt_or_failed,
    receipt_for_error,
)
from publisher.delivery.providers.ses.notifications import notification_events
from publisher.delivery.providers.ses.pacing import Pacer
from publisher.delivery.providers.verdicts import COPY, receipt_for
from publisher.delivery.providers.webhook import (
    WebhookError,
    WebhookReport,
    WebhookRequest,
    read_json,
)
from publisher.errors import RunletterError

CONNECT_TIMEOUT = 10.0  # seconds
READ_TIMEOUT = TIMEOUT  # seconds; SES has no timeout setting, the other providers' default


@dataclass(frozen=True)
class Settings:
    """[providers.ses]: region, endpoint, configuration set and pace; credentials come from
    the standard AWS chain, never from runletter.toml."""

    region: str = "us-east-1"
    endpoint_url: str = ""
    configuration_set: str = ""
    max_rate: float = 14.0
    max_workers: int = 8


@dataclass(frozen=True)
class WebhookSettings:
    """[providers.ses] webhook_*: the SNS signing certificate (a PEM file, relative to the
    project) and the topic allowed to post."""

    webhook_certificate: str = ""
    webhook_topic_arn: str = ""


class SesProvider(Provider):
    """Delivers each recipient's MIME message with SES v2 SendEmail (raw content).

    Settings ([providers.ses] or RUNLETTER_SES_*): region, endpoint_url (empty: AWS's),
    configuration_set (empty: none), max_rate (messages per second the account allows),
    max_workers (calls in flight at once). Credentials come from the standard AWS chain
    (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, an
    instance role), never from runletter.toml.
    """

    name: ClassVar[str] = "ses"
    label: ClassVar[str] = "SES"
    max_batch: ClassVar[int] = 50
    mixes_editions: ClassVar[bool] = True  # every call carries one complete message
    requires: ClassVar[tuple[str, ...]] = ("boto3",)  # pip install 'runletter[ses]'
    Settings = Settings
    WebhookSettings = WebhookSettings

    def __init__(self, config: Config, addresser: Addresser, settings: Mapping[str, Any] | Any):
        """Check the settings now, so a typo stops the publish before anything is sent."""
        super().__init__(config, addresser, settings)
        self.region = str(self.settings.region).strip()
        if not self.region:
            raise ProviderConfigError("ses setting 'region' is empty; set it to the region "
                                      "where the sender identity is verified, e.g. us-east-1")
        self.max_rate = float(self.settings.max_rate)
        if not self.max_rate > 0:
            raise ProviderConfigError(f"ses setting 'max_rate' must be more than 0 messages "
                                      f"per second, not {self.settings.max_rate!r}")
        self.max_workers = int(self.settings.max_workers)
        if not 1 <= self.max_workers <= 64:
            raise ProviderConfigError(f"ses setting 'max_workers' must be 1 to 64, not "
                                      f"{self.settings.max_workers!r}")
        self.endpoint_url = str(self.settings.endpoint_url).strip() or None
        self.configuration_set = str(self.settings.configuration_set).strip()
        try:
            self.from_address = ses_address(config.sender_email)
        except ValueError as exc:
            raise ProviderConfigError(f"ses: [sender] email: {exc}") from None
        self.where = self.endpoint_url or f"SES in {self.region}"
        self.client: Any = None
        self.pacer = Pacer(self.max_rate)
        self._executor: ThreadPoolExecutor | None = None
        self._reached = False  # any HTTP answer from SES yet (even an error)
        self._stop = threading.Event()  # the batch being sent: set to start no more calls

    # -- connection -------------------------------------------------------------------

    def open(self) -> None:
        """One session, one client (pooled, thread-safe) and the worker pool for the publish."""
        if self.client is not None:
            return
        # boto3 is optional (runletter[ses]) and slow to import: only when sending starts.
        import boto3
        from botocore import exceptions as botoerrors
        from botocore.config import Config as BotoConfig

        try:
            session = boto3.session.Session(region_name=self.region)
            if session.get_credentials() is None:
                raise ProviderConfigError(
                    "ses: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment, never in "
                    "runletter.toml")
            self.client = session.client(
                "sesv2", endpoint_url=self.endpoint_url,
                config=BotoConfig(
                    max_pool_connections=max(10, self.max_workers),
                    # total, not max_attempts (retries: 1 would retry a call SES took)
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT))
        except (botoerrors.BotoCoreError, ValueError) as exc:
            # Unreadable AWS config or profile, a region or endpoint botocore refuses.
            raise ProviderConfigError(f"ses: cannot set up the SES client: "
                                      f"{exc.__class__.__name__}: {exc}") from None
        self._executor = ThreadPoolExecutor(max_workers=self.max_workers,
                                            thread_name_prefix="runletter-ses")

    def close(self) -> None:
        """Stop the workers and close the client's connections.

        Calls not yet started (queued, or waiting for their pacing slot) are dropped and
        never made: a send() still waiting reports them FAILED; after Ctrl-C, with no
        receipts at all, the ledger keeps the batch in-flight and reports it.
        """
        self._stop.set()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        client, self.client = self.client, None
        if client is not None and hasattr(client, "close"):
            client.close()

    # -- sending ----------------------------------------------------------------------

    def send(self, batch: Batch) -> list[Receipt]:
        """Send each recipient's message, paced and concurrent; one receipt per recipient.

        Raises ProviderConfigError only when nothing of this batch was accepted (or for a
        config problem met in the previous batch), so a receipt is never lost for a message
        that went out.
        """
        return self.send_many([batch])

    def send_many(self, batches: Sequence[Batch]) -> list[Receipt]:
        """Like send(), for the batches of several editions at once (one call per message
        either way, so a goal's last few readers need not wait for the next goal's)."""
        self.check_fatal()
        if self.client is None or self._executor is None:
            self.open()
        receipts: list[Receipt] = []
        pending = self._submit(batches, receipts)
        return self._gather(pending, receipts)

    def _submit(self, batches: Sequence[Batch], receipts: list[Receipt]
                ) -> list[tuple[Recipient, Future]]:
        """Each reader's call, queued on the workers; a reader whose message cannot be
        sent is rejected at once (appended to `receipts`)."""
        assert self._executor is not None
        date = message_date()
        # Set by the first config error (or close()): start no further calls.
        stop = self._stop = threading.Event()
        told: list[float] = []  # Retry-Afters SES answered in this batch: start no more calls
        pending: list[tuple[Recipient, Future]] = []
        for batch in batches:
            for recipient in batch.recipients:
                try:
                    to = ses_address(recipient.email)
                    message = self.addresser.message(batch.compiled, recipient, date)
                except (RunletterError, ValueError) as exc:
                    # A line break in this reader's name, an address SES cannot carry:
                    # their message cannot be sent, and no retry would change that.
                    receipts.append(receipt_for(recipient.subscriber_id, COPY,
                                                f"cannot send the message: {plain(exc)}"))
                    continue
                pending.append((recipient, self._executor.submit(
                    self._send_paced, recipient, to, message, stop, told)))
        return pending

    def _gather(self, pending: list[tuple[Recipient, Future]],
                receipts: list[Receipt]) -> list[Receipt]:
        """Every call's receipt; the calls a config error or close() stopped are FAILED."""
        fatal: ProviderConfigError | None = None
        unsent: list[Recipient] = []  # never called: a config error or close() came first
        broken: list[Recipient] = []  # their own call met the config error
        crash: BaseException | None = None
        for recipient, future in pending:
            try:
                receipt = future.result()
            except ProviderConfigError as exc:
                fatal = fatal or exc
                broken.append(recipient)
                continue
            except CancelledError:  # close() dropped it before it started
                unsent.append(recipient)
                continue
            except Exception as exc:  # a bug: settle what we know, then let it surface
                crash = crash or exc
                continue
            if receipt is None:
                unsent.append(recipient)
            elif receipt is not IN_DOUBT:  # no receipt: left in flight
                receipts.append(receipt)
        if crash is not None:
            # Accepted messages are not reported: their rows stay in-flight and are shown,
            # never silently sent twice.
            raise crash
        if fatal is not None:
            if not any(r.status == ACCEPTED for r in receipts):
                raise fatal
            self.stick(fatal)
            reason = plain(fatal)
            receipts += [Receipt(r.subscriber_id, FAILED, reason=reason) for r in broken]
            receipts += [Receipt(r.subscriber_id, FAILED, reason=f"not sent: {reason}")
                         for r in unsent]
        else:
            receipts += [Receipt(r.subscriber_id, FAILED, reason="not sent: the provider "
                                 "was closed") for r in unsent]
        return receipts

    def _send_paced(self, recipient: Recipient, to: str, message: Message,
                    stop: threading.Event, told: list[float]) -> Receipt | None:
        """Wait for a start slot, then send; None when the batch was stopped first. Once SES
        asked to wait (Retry-After), the calls not yet started are not made: FAILED with
        that wait, which the publish sits out before any other call."""
        if not told and self.pacer.wait(stop) is None:
            return None
        if told:  # maybe said while this call waited for its slot
            return _held(recipient, told)
        try:
            receipt = self._send_one(recipient, to, message)
        except ProviderConfigError:
            stop.set()
            raise
        if receipt.retry_after is not None:
            told.append(receipt.retry_after)
        return receipt

    def _send_one(self, recipient: Recipient, to: str, message: Message) -> Receipt:
        """One SendEmail call, mapped to a receipt; a config problem raises."""
        from botocore import exceptions as botoerrors  # optional: comes with boto3

        params: dict[str, Any] = {
            "FromEmailAddress": self.from_address,
            "Destination": {"ToAddresses": [to]},
            "Content": {"Raw": {"Data": message.data}},
        }
        if self.configuration_set:
            params["ConfigurationSetName"] = self.configuration_set
        rid = recipient.subscriber_id
        try:
            response = self.client.send_email(**params)
        except botoerrors.ClientError as exc:
            self._reached = True
            return receipt_for_error(recipient, exc, self.from_address, self.region)
        except (botoerrors.NoCredentialsError, botoerrors.PartialCredentialsError,
                botoerrors.CredentialRetrievalError) as exc:
            raise ProviderConfigError(f"ses: AWS credentials missing or unreadable: {exc}; "
                                      "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                                      "in the environment") from None
        except botoerrors.SSLError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise ProviderConfigError(f"ses: the certificate of {self.where} is not "
                                          f"trusted: {exc}") from None
            return Receipt(rid, FAILED, reason=f"SSLError: {exc}")
        except (botoerrors.EndpointConnectionError, botoerrors.ConnectTimeoutError) as exc:
            if not self._reached:
                # Never reached SES in this publish: a wrong region or endpoint_url, or no
                # network; retrying every batch would not change that (as smtp's open()).
                raise ProviderConfigError(
                    f"ses: cannot reach {self.where}: {exc}; check region and "
                    "endpoint_url") from None
            return Receipt(rid, FAILED, reason=f"{exc.__class__.__name__}: {exc}")
        except (botoerrors.ParamValidationError, botoerrors.UnknownEndpointError) as exc:
            raise ProviderConfigError(f"ses: the SES client refused the call: {exc}") from None
        except botoerrors.BotoCoreError as exc:  # closed, reset, timed out: maybe sent
            return in_doubt_or_failed(rid, exc)
        self._reached = True
        return Receipt(rid, ACCEPTED, provider_id=response.get("MessageId"))

    # -- webhook ----------------------------------------------------------------------

    @classmethod
    def load_webhook(cls, settings: WebhookSettings, config: Config) -> Any:
        """(the SNS signing certificate, the topic), read once at start-up."""
        if not settings.webhook_certificate:
            return None, settings.webhook_topic_arn
        path = config.root / settings.webhook_certificate
        try:
            certificate = sns.load_certificate(path.read_bytes())
        except OSError as exc:
            raise setting_error(cls, config, "webhook_certificate", f"names {path}, which "
                                f"cannot be read: {exc.strerror or exc}") from None
        except ValueError:
            raise setting_error(cls, config, "webhook_certificate",
                                f"names {path}, which is not a PEM certificate") from None
        return certificate, settings.webhook_topic_arn

    @classmethod
    def verify_webhook(cls, loaded: tuple[Any, str], request: WebhookRequest) -> Any:
        """The SNS message, when signed with the certificate for the topic."""
        certificate, topic_arn = loaded
        if certificate is None or not topic_arn:
            raise WebhookError(403, "the ses webhook is not configured ([providers.ses] "
                                    "webhook_certificate and webhook_topic_arn)")
        return sns.verified_message(request, certificate, topic_arn)

    @classmethod
    def parse_events(cls, message: Any) -> WebhookReport:
        """The bounces and complaints of a Notification (SNS keeps its MessageId on
        retries); a (un)subscription confirmation is only logged."""
        if message["Type"] != "Notification":
            note = "subscription confirmation logged" if \
                message["Type"] == "SubscriptionConfirmation" else ""
            return WebhookReport(note=note, log=(sns.confirmation_notice(message),))
        events = notification_events(read_json(message["Message"].encode("utf-8")))
        return WebhookReport(events=tuple(events), request_id=str(message.get("MessageId")))


def ses_address(address: str) -> str:
    """The address as SES takes it: 7-bit ASCII, an international domain in Punycode.

    SES does not support SMTPUTF8, so a non-ASCII local part cannot be sent at all;
    raises ValueError for it.
    """
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise ValueError(f"SES cannot send to {address!r}: it does not support non-ASCII "
                         "characters before the @ (no SMTPUTF8)")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"the domain of {address!r} cannot be encoded: {exc}") from None
    return f"{local}@{domain}"


def _held(recipient: Recipient, told: list[float]) -> Receipt:
    """The receipt of a call not made because SES asked to wait."""
    wait = max(told)
    return Receipt(recipient.subscriber_id, FAILED, reason=f"not sent: SES asked to wait "
                   f"{math.ceil(wait)} s", retry_after=wait, tried=False)


__all__ = ["SesProvider", "ses_address"]
