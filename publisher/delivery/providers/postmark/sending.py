"""Send through Postmark's batch API: `POST /email/batch`, up to 500 messages per call.

Postmark takes one JSON message object per recipient (From, To, Subject, HtmlBody, TextBody,
ReplyTo, Headers [{Name, Value}], MessageStream, Tag, TrackOpens, Metadata), authenticated
with the `X-Postmark-Server-Token` header. A call carries at most 500 messages and 50 MB;
the answer is a JSON array with one result per message, in the order sent:
{ErrorCode, Message, MessageID, SubmittedAt, To}. ErrorCode 0 means accepted.
(postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails,
postmarkapp.com/developer/api/overview#error-codes)

Per recipient the work is only filling slots: everything else of a message (From, Subject,
the JSON-escaped literal runs of HTML and text) is encoded once per edition, and a message
is a join of bytes. A batch body is sent as a list of per-message chunks (ChunkedBody), so
it is never held twice; calls are split further if a batch would pass 50 MB.

Outcomes:
  per message  ErrorCode 0 → accepted (provider id = MessageID)
               406 inactive recipient, 300 invalid recipient → rejected (reader bounced)
               429 rate limit, 100 maintenance, anything unknown → failed (retried later)
               10, 400, 401, 405, 412, 413 (token, sender signature, account) → config
  per call     401 → config (the server token); 422 → config (the request as a whole);
               429 and 5xx → failed with Retry-After; 413 → split the call in two;
               connection refused → failed; no answer in time, reset after connecting,
               an unreadable 200 → in flight (no receipt: reported, never re-sent alone)
Unknown per-message codes are retried rather than rejected: a rejection marks the reader
bounced for good, which only Postmark's own verdict about that reader should do.

Webhook: HTTP Basic auth on the URL (webhook_user, and the password from
RUNLETTER_POSTMARK_WEBHOOK_PASSWORD), checked before the body is read; one record a call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import requests

from publisher.delivery.address import format_address, header_safe
from publisher.delivery.providers.base import (
    ACCEPTED,
    FAILED,
    TIMEOUT,
    Batch,
    ProviderConfigError,
    Receipt,
    parse_retry_after,
    plain,
    secret,
)
from publisher.delivery.providers.http import (
    ChunkedBody,
    HttpProvider,
    InDoubt,
    Transient,
    halves,
    json_or_none,
    response_text,
)
from publisher.delivery.providers.postmark.message import MessageJson, encode_edition
from publisher.delivery.providers.verdicts import ADDRESS, COPY, receipt_for
from publisher.delivery.providers.webhook import (
    Event,
    WebhookError,
    WebhookReport,
    WebhookRequest,
    address,
    basic_auth_ok,
    read_json,
    text,
)
from publisher.errors import RunletterError
from publisher.model import Edition

BATCH_PATH = "/email/batch"
MAX_MESSAGES = 500  # documented limit per call
MAX_BODY = 50 * 1000 * 1000  # documented: "up to 50 MB payload size"

INACTIVE_RECIPIENT = 406
INVALID_EMAIL_REQUEST = 300
TRANSIENT_CODES = {100: "maintenance", 429: "rate limit exceeded"}
# Codes that are about the token, the sender signature or the account, never one reader.
CONFIG_CODES = {
    10: "the server token is wrong; check RUNLETTER_POSTMARK_SERVER_TOKEN",
    400: "the sender is not a Postmark Sender Signature; check [sender] email",
    401: "the Sender Signature is not confirmed yet; confirm [sender] email in Postmark",
    405: "the Postmark account is not allowed to send; check the account in Postmark",
    412: "the Postmark account is pending approval",
    413: "the Postmark account may not send; check the account in Postmark",
}
# An ErrorCode 300 whose message names these is about our sender fields, not the reader.
SENDER_WORDS = ("'from'", "from address", "sender signature", "replyto", "reply to",
                "reply-to", "messagestream", "message stream")


@dataclass(frozen=True)
class Settings:
    """[providers.postmark]: where and how to send; the token only from the environment."""

    base_url: str = "https://api.postmarkapp.com"
    message_stream: str = "broadcast"  # newsletters belong on a Broadcast stream
    track_opens: bool = False
    tag: str = ""
    timeout: float = TIMEOUT
    server_token: str = secret()


@dataclass(frozen=True)
class WebhookSettings:
    """[providers.postmark] webhook_*: the HTTP Basic credentials of the webhook URL."""

    webhook_user: str = "runletter"
    webhook_password: str = secret()


@dataclass(frozen=True)
class PreparedBatches:
    """Batches made ready to go: every reader's message built, grouped into calls."""

    everyone: Batch  # every recipient, to settle a stop part-way
    calls: tuple[list[tuple[int, list[bytes]]], ...]  # (subscriber id, message chunks)
    unbuilt: tuple[Receipt, ...]  # REJECTED: readers whose message could not be built
    error: ProviderConfigError | None = None  # an edition Postmark cannot carry


class PostmarkProvider(HttpProvider):
    """Delivers batches through Postmark's `/email/batch` on one pooled session.

    Settings ([providers.postmark] or RUNLETTER_POSTMARK_*): base_url, message_stream
    (default "broadcast": newsletters belong on a Broadcast stream), track_opens, tag,
    timeout. The server token comes only from RUNLETTER_POSTMARK_SERVER_TOKEN.
    """

    name: ClassVar[str] = "postmark"
    label: ClassVar[str] = "Postmark"
    max_batch: ClassVar[int] = MAX_MESSAGES
    max_body: ClassVar[int] = MAX_BODY
    mixes_editions: ClassVar[bool] = True  # every message in a batch call is complete
    Settings = Settings
    WebhookSettings = WebhookSettings
    SECRET_HELP: ClassVar = {"server_token": "Postmark server API token"}

    def __init__(self, *args, **kwargs):
        """Settings are checked now; the token travels in every request's header."""
        super().__init__(*args, **kwargs)
        if not str(self.settings.message_stream).strip():
            raise ProviderConfigError("Postmark: message_stream must not be empty "
                                      "(newsletters go on a Broadcast stream, e.g. "
                                      "\"broadcast\")")
        self.request_headers = {
            "X-Postmark-Server-Token": str(self.settings.server_token).strip(),
            "Content-Type": "application/json",
        }
        self._encoded: dict[int, MessageJson] = {}

    # -- building ---------------------------------------------------------------------

    def _message_json(self, edition: Edition) -> MessageJson:
        """The edition encoded once; reused for every batch of the same edition."""
        cached = self._encoded.get(id(edition))
        if cached is not None and cached.edition is edition:
            return cached
        encoded = encode_edition(edition, self.config, self.settings)
        self._encoded[id(edition)] = encoded
        return encoded

    def _calls(self, items: list[tuple[MessageJson, Batch]], receipts: list[Receipt]
               ) -> Iterator[list[tuple[int, list[bytes]]]]:
        """The batch as calls of (subscriber id, message chunks), each within max_body.

        A reader whose message cannot be built (a line break in their name, say) gets a
        REJECTED receipt here, as the smtp provider does; the others go on.
        """
        call: list[tuple[int, list[bytes]]] = []
        size = 2  # the brackets
        for encoded, recipient in ((e, r) for e, b in items for r in b.recipients):
            values = recipient.values
            try:
                to = format_address(recipient.first_name, recipient.email)
                unsubscribe = header_safe(
                    f"<{values['unsubscribe_url']}>, <{values['unsubscribe_mailto']}>",
                    "the unsubscribe links")
                message, length = encoded.message(values, to, recipient.subscriber_id,
                                                   unsubscribe)
            except (RunletterError, ValueError, UnicodeError, KeyError) as exc:
                receipts.append(receipt_for(recipient.subscriber_id, COPY,
                                            f"cannot build the message: {plain(exc)}"))
                continue
            if call and size + 1 + length > self.max_body:
                yield call
                call, size = [], 2
            call.append((recipient.subscriber_id, message))
            size += length + (1 if len(call) > 1 else 0)
        if call:
            yield call

    # -- sending ----------------------------------------------------------------------

    def send(self, batch: Batch) -> list[Receipt]:
        """Send a batch in as few calls as the limits allow; one receipt per recipient."""
        return self.send_many([batch])

    def send_many(self, batches: Sequence[Batch]) -> list[Receipt]:
        """Send batches of any editions in as few calls as the limits allow.

        A reader gets no receipt only when Postmark's answer is unreadable after it took
        the call (their row stays in flight and is reported, never silently re-sent).
        """
        return self.send_prepared(self.prepare(batches))

    def prepare(self, batches: Sequence[Batch]) -> PreparedBatches:
        """Every reader's message built and grouped into calls, nothing sent; an edition
        that cannot be sent is kept to be raised when the batches are sent."""
        everyone = Batch(batches[0].edition, batches[0].compiled,
                         tuple(r for b in batches for r in b.recipients))
        receipts: list[Receipt] = []
        try:
            items = [(self._message_json(b.edition), b) for b in batches]
        except RunletterError as exc:  # a line break in the sender or subject
            return PreparedBatches(everyone, (), (), self.edition_error(exc))
        calls = tuple(self._calls(items, receipts))
        return PreparedBatches(everyone, calls, tuple(receipts))

    def send_prepared(self, prepared: PreparedBatches) -> list[Receipt]:
        """POST the calls `prepare` built; one receipt per recipient (as send_many)."""
        self.check_fatal()
        if prepared.error is not None:
            raise prepared.error
        receipts = list(prepared.unbuilt)
        settled: set[int] = set()
        try:
            for call in prepared.calls:
                self._post_call(call, receipts, settled)
        except (Transient, InDoubt, ProviderConfigError) as exc:
            return self.settle(prepared.everyone, receipts, exc, settled)
        return receipts

    def _post_call(self, call: list[tuple[int, list[bytes]]], receipts: list[Receipt],
                   settled: set[int]) -> None:
        """POST one call; append its receipts. Raises Transient or ProviderConfigError.

        `settled` collects readers whose fate is decided without a receipt (an answer we
        cannot read after Postmark took the call), so the caller does not fail them.
        """
        chunks = [b"["]
        for index, (_sid, message) in enumerate(call):
            if index:
                chunks.append(b"," + message[0])
                chunks += message[1:]
            else:
                chunks += message
        chunks.append(b"]")
        body = ChunkedBody(chunks)
        response = self.post(BATCH_PATH, data=body, headers=self.request_headers)
        del chunks, body
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 200:
            results = json_or_none(response)
            if not isinstance(results, list):
                # Postmark took the call but we cannot tell what became of each message:
                # leave those rows in flight (reported), as a crash would.
                settled.update(sid for sid, _ in call)
                return
            self._map_results(call, results, retry_after, receipts, settled)
            return
        if status == 413 and len(call) > 1:
            for half in reversed(halves(call)):  # in the order they were in the call
                self._post_call(half, receipts, settled)
            return
        raise self._call_error(response, status, retry_after)

    def _map_results(self, call: list[tuple[int, list[bytes]]], results: list,
                     retry_after: float | None, receipts: list[Receipt],
                     settled: set[int]) -> None:
        """Per-message results (in the order sent) to receipts."""
        config_error: ProviderConfigError | None = None
        for (sid, _message), item in zip(call, results, strict=False):
            if not isinstance(item, dict):
                settled.add(sid)
                continue
            code = item.get("ErrorCode")
            text = " ".join(str(item.get("Message") or "").split())
            reason = f"Postmark {code}: {text}".strip()
            if code == 0:
                receipts.append(Receipt(sid, ACCEPTED, provider_id=str(item.get("MessageID")
                                                                       or "") or None))
            elif code in CONFIG_CODES or (code == INVALID_EMAIL_REQUEST
                                          and any(w in text.lower() for w in SENDER_WORDS)):
                hint = CONFIG_CODES.get(code, "check [sender] and message_stream")
                config_error = config_error or ProviderConfigError(
                    f"Postmark refused the batch: {reason}; {hint}")
            elif code in (INACTIVE_RECIPIENT, INVALID_EMAIL_REQUEST):
                receipts.append(receipt_for(sid, ADDRESS, reason))
            elif code in TRANSIENT_CODES:
                receipts.append(Receipt(sid, FAILED, reason=reason, retry_after=retry_after))
            else:  # unknown: retry rather than bounce a reader on a code we do not know
                receipts.append(Receipt(sid, FAILED, reason=reason))
        # Results missing from a short answer: Postmark took the call, so their rows stay
        # in flight (reported) rather than be sent twice.
        settled.update(sid for sid, _ in call[len(results):])
        if config_error is not None:
            raise config_error

    def _call_error(self, response: requests.Response, status: int,
                    retry_after: float | None) -> Exception:
        """What a non-200 answer to the whole call means: Transient or a config error."""
        data = json_or_none(response)
        code = data.get("ErrorCode") if isinstance(data, dict) else None
        message = (" ".join(str(data.get("Message") or "").split())
                   if isinstance(data, dict) else response_text(response))
        said = f"HTTP {status}" + (f", ErrorCode {code}" if code is not None else "") + (
            f": {message}" if message else "")
        if status == 429 or status >= 500 or code in TRANSIENT_CODES:
            return Transient(said, retry_after)
        if status == 401 or code == 10:
            return ProviderConfigError(
                f"Postmark refused the server token ({said}); check "
                f"RUNLETTER_POSTMARK_SERVER_TOKEN (the Server API token of the server that "
                f"owns message stream '{self.settings.message_stream}')")
        if status == 422:
            hint = CONFIG_CODES.get(code) or (f"check [sender] in runletter.toml and message_"
                                              f"stream '{self.settings.message_stream}'")
            return ProviderConfigError(f"Postmark refused the batch ({said}); {hint}")
        if status == 413:
            return ProviderConfigError(
                f"Postmark refused a single message as too large ({said}); the edition "
                f"is over Postmark's size limit")
        return ProviderConfigError(
            f"Postmark answered {said} at {self.base_url}{BATCH_PATH}; check base_url "
            f"({self.env_name('base_url')})")

    # -- webhook ----------------------------------------------------------------------

    @classmethod
    def verify_webhook(cls, settings: WebhookSettings, request: WebhookRequest) -> Any:
        """Postmark's HTTP Basic credentials, checked before the body is read."""
        if not settings.webhook_password:
            raise WebhookError(403, "the postmark webhook is not configured "
                                    f"({cls.env_name('webhook_password')})")
        if not basic_auth_ok(request.headers.get("Authorization"), settings.webhook_user,
                             settings.webhook_password):
            raise WebhookError(401, "missing or wrong credentials")
        return read_json(request.read())

    @classmethod
    def parse_events(cls, record: Any) -> WebhookReport:
        """A hard Bounce, a SpamComplaint or a manual SubscriptionChange; other records
        (Delivery, Open, Click…) report nothing."""
        if not isinstance(record, dict) or not isinstance(record.get("RecordType"), str):
            raise WebhookError(400, "not a Postmark webhook record (no RecordType)")
        event = _EVENTS.get(record["RecordType"], lambda _record: None)(record)
        return WebhookReport(events=(event,) if event else ())


def _recipient(record: dict, field: str) -> str:
    """The record's address; a record about nobody is a malformed request."""
    found = address(record.get(field))
    if found is None:
        raise WebhookError(400, f"a {record['RecordType']} record without a valid {field}")
    return found


def _ids(record: dict) -> tuple[str, ...]:
    return (str(record["MessageID"]),) if record.get("MessageID") else ()


def _bounce(record: dict) -> Event | None:
    to = _recipient(record, "Email")
    if record.get("Type") not in ("HardBounce", "BadEmailAddress"):
        return None
    detail = text(record.get("Description") or record.get("Details") or record["Type"])
    return Event(to, "bounce", f"{record['Type']}: {detail}", _ids(record))


def _complaint(record: dict) -> Event | None:
    return Event(_recipient(record, "Email"), "complaint", "spam complaint", _ids(record))


def _unsubscribe(record: dict) -> Event | None:
    to = _recipient(record, "Recipient")
    if record.get("SuppressSending") is not True or \
            record.get("SuppressionReason") != "ManualSuppression":
        return None
    return Event(to, "unsubscribe", "unsubscribed at Postmark", _ids(record))


_EVENTS = {"Bounce": _bounce, "SpamComplaint": _complaint, "SubscriptionChange": _unsubscribe}


__all__ = ["PostmarkProvider"]
