"""Send through SendGrid's v3 Mail Send: one `POST /v3/mail/send` per batch.

The edition goes up ONCE per batch as `content` (text/plain first, then text/html, the order
SendGrid requires) with a personalization per reader (up to 1,000 per call): their `to`,
their `substitutions` (the edition's slots as `-h_first_name_0-` / `-t_first_name_0-`
tags, see BulkBody), their List-Unsubscribe `headers`, and `custom_args`
(subscriber_id, post) that come back in SendGrid's event webhooks. Authentication is
`Authorization: Bearer <API key>`. EU subusers use https://api.eu.sendgrid.com (base_url).
(twilio.com/docs/sendgrid/api-reference/mail-send, .../mail-send/errors,
.../how-to-use-the-sendgrid-v3-api/rate-limits, .../substitution-tags)

Outcomes of a call:
  202                → every reader accepted; provider id = the X-Message-Id header
  400 {errors}       → nothing was queued. Errors whose `field` is
                       `personalizations.N…` (or whose message names a reader's address)
                       reject those readers (bounced only when the field is their
                       address, see verdicts.py) and the rest is sent again at once; any other
                       error is about the request itself and stops the publish
                       (ProviderConfigError) — bouncing a whole batch of readers for a
                       request-level fault would be irreversible.
  401, 403           → config: "SendGrid refused the API key…"
  413                → the call is split in two (a single reader's call: config). The
                       edition is sent once per call, so only the personalizations shrink;
                       splitting keeps going until a call fits or one reader is left.
  429                → failed, retry after the later of X-RateLimit-Reset (a unix time)
                       and Retry-After
  5xx, dropped       → failed (retried later)

Webhook: the signed Event Webhook, ECDSA P-256 / SHA-256 over timestamp + raw body, with
the verification key SendGrid shows (webhook_public_key: base64 DER, or PEM); a signed
timestamp more than SIGNATURE_WINDOW seconds off is refused (SendGrid documents no window:
without one, a captured batch could be replayed for ever once its event ids are forgotten).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from publisher.config import Config
from publisher.delivery.address import Recipient, format_address, header_safe
from publisher.delivery.providers.base import (
    ACCEPTED,
    TIMEOUT,
    Batch,
    ProviderConfigError,
    Receipt,
    parse_retry_after,
    secret,
    setting_error,
)
from publisher.delivery.providers.http import (
    BulkBody,
    HttpProvider,
    Transient,
    addresses_named,
    halve_or_refuse,
    json_or_none,
    parse_rate_limit_reset,
    response_text,
)
from publisher.delivery.providers.verdicts import (
    ADDRESS,
    names_sender,
    receipt_for,
    sendgrid_field_verdict,
)
from publisher.delivery.providers.webhook import (
    SIGNATURE_WINDOW,
    Event,
    WebhookError,
    WebhookReport,
    WebhookRequest,
    address,
    fresh,
    read_json,
    text,
)
from publisher.errors import RunletterError
from publisher.model import Edition

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_PERSONALIZATIONS = 1000  # documented per request
SEND_PATH = "/v3/mail/send"
PERSONALIZATION_FIELD = re.compile(r"^personalizations\.(\d+)\b")


def _tag(variable: str) -> str:
    return f"-{variable}-"


@dataclass(frozen=True)
class Settings:
    """[providers.sendgrid]: where to send; the API key only from the environment."""

    base_url: str = "https://api.sendgrid.com"
    timeout: float = TIMEOUT
    api_key: str = secret()


@dataclass(frozen=True)
class WebhookSettings:
    """[providers.sendgrid] webhook_public_key: the Event Webhook's verification key."""

    webhook_public_key: str = ""


class SendgridProvider(HttpProvider):
    """Delivers each batch as one SendGrid Mail Send with a personalization per reader.

    Settings ([providers.sendgrid] or RUNLETTER_SENDGRID_*): base_url, timeout. The API key
    comes only from RUNLETTER_SENDGRID_API_KEY (it needs the Mail Send permission).
    """

    name: ClassVar[str] = "sendgrid"
    label: ClassVar[str] = "SendGrid"
    webhook_tolerance: ClassVar[float] = SIGNATURE_WINDOW
    max_batch: ClassVar[int] = MAX_PERSONALIZATIONS
    Settings = Settings
    WebhookSettings = WebhookSettings
    SECRET_HELP: ClassVar = {"api_key": "SendGrid API key"}

    def __init__(self, *args, **kwargs):
        """The key travels as a Bearer token in every request."""
        super().__init__(*args, **kwargs)
        self.request_headers = {
            "Authorization": f"Bearer {str(self.settings.api_key).strip()}",
            "Content-Type": "application/json",
        }
        self._cache: tuple[Edition, BulkBody, dict[str, Any]] | None = None

    def _edition_body(self, edition: Edition) -> tuple[BulkBody, dict[str, Any]]:
        """The request fields that are the same for every batch of an edition, built once."""
        if self._cache is not None and self._cache[0] is edition:
            return self._cache[1], self._cache[2]
        config = self.config
        bulk = BulkBody.of(edition, _tag)
        sender: dict[str, str] = {"email": config.sender_email}
        if config.sender_name:
            sender["name"] = header_safe(config.sender_name, "the sender name")
        fixed = {
            "from": sender,
            "reply_to": {"email": header_safe(config.reply_to, "the Reply-To address")},
            "subject": header_safe(edition.subject, "the subject"),
            # SendGrid requires text/plain before text/html.
            "content": [{"type": "text/plain", "value": bulk.text},
                        {"type": "text/html", "value": bulk.html}],
            "headers": {"X-Runletter-Edition": header_safe(
                f"{edition.post_slug}/{edition.goal}", "the edition")},
            "custom_args": {"goal": edition.goal},
        }
        self._cache = (edition, bulk, fixed)
        return bulk, fixed

    def _personalization(self, bulk: BulkBody, post: str, recipient: Recipient
                         ) -> dict[str, Any]:
        """One reader's personalization: small dicts of their own values."""
        values = recipient.values
        format_address(recipient.first_name, recipient.email)  # refuses line breaks
        to: dict[str, str] = {"email": recipient.email}
        if recipient.first_name:
            to["name"] = recipient.first_name
        unsubscribe = header_safe(
            f"<{values['unsubscribe_url']}>, <{values['unsubscribe_mailto']}>",
            "the unsubscribe links")
        return {
            "to": [to],
            "substitutions": {_tag(k): v for k, v in bulk.values(values).items()},
            "headers": {
                "List-Unsubscribe": unsubscribe,
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "X-Runletter-Message-ID": header_safe(values["message_id"], "Message-ID"),
            },
            "custom_args": {"subscriber_id": str(recipient.subscriber_id), "post": post},
        }

    # -- sending ----------------------------------------------------------------------

    def send(self, batch: Batch) -> list[Receipt]:
        """One call for the whole batch (a 400 naming readers: those out, the rest again)."""
        self.check_fatal()
        try:
            bulk, fixed = self._edition_body(batch.edition)
        except RunletterError as exc:  # a line break in the sender or subject
            raise self.edition_error(exc) from None
        post = batch.edition.post_slug
        return self.send_groups(
            batch, lambda r: (r, self._personalization(bulk, post, r)),
            lambda group, receipts: self._send_group(group, fixed, receipts))

    def _send_group(self, group: list[tuple[Recipient, dict[str, Any]]],
                    fixed: dict[str, Any], receipts: list[Receipt]
                    ) -> list[list[tuple[Recipient, dict[str, Any]]]]:
        """POST one group; append receipts; return groups still to send (after a split or
        after taking out the readers a 400 named)."""
        body = {"personalizations": [p for _r, p in group], **fixed}
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        del body
        response = self.post(SEND_PATH, data=data, headers=self.request_headers)
        del data
        status = response.status_code
        if 200 <= status < 300:
            provider_id = response.headers.get("X-Message-Id") or None
            receipts += [Receipt(r.subscriber_id, ACCEPTED, provider_id=provider_id)
                         for r, _p in group]
            return []
        errors = _errors(response)
        said = f"HTTP {status}" + (f": {errors[0][1]}" if errors else
                                   (f": {response_text(response)}"
                                    if response_text(response) else ""))
        if status == 429:
            raise Transient(said, _rate_limited_for(response))
        if status >= 500:
            raise Transient(said, parse_retry_after(response.headers.get("Retry-After")))
        if status == 400:
            return self._bad_request(group, errors, said, receipts)
        if status in (401, 403):
            raise ProviderConfigError(
                f"SendGrid refused the API key ({said}); check RUNLETTER_SENDGRID_API_KEY "
                f"(the key needs the Mail Send permission; EU subusers need base_url "
                f"https://api.eu.sendgrid.com)")
        if status == 413:
            return halve_or_refuse(group, "SendGrid", said, "SendGrid's size limit")
        raise ProviderConfigError(f"SendGrid answered {said} at {self.base_url}{SEND_PATH}; "
                                  f"check base_url")

    def _bad_request(self, group: list[tuple[Recipient, dict[str, Any]]],
                     errors: list[tuple[str, str]], said: str, receipts: list[Receipt]
                     ) -> list[list[tuple[Recipient, dict[str, Any]]]]:
        """A 400: reject the readers the errors point at and send the rest again, or stop."""
        named: dict[int, str] = {}
        verdicts: dict[int, str] = {}
        for field, message in errors or [("", said)]:
            match = PERSONALIZATION_FIELD.match(field or "")
            ids: set[int] = set()
            if match and int(match.group(1)) < len(group):
                ids = {group[int(match.group(1))][0].subscriber_id}
                # Their address, or another part of their copy (a header): not bounced.
                verdicts.setdefault(next(iter(ids)), sendgrid_field_verdict(field))
            elif not names_sender(message):
                ids = addresses_named(message, ((r.subscriber_id, (r.email,))
                                                for r, _p in group))
            if not ids:
                raise ProviderConfigError(
                    f"SendGrid refused the batch (HTTP 400: {message}"
                    + (f", field {field}" if field else "") + "); nothing was sent. "
                    "Check [sender] and the post, or report this message")
            for sid in ids:
                named.setdefault(sid, f"SendGrid HTTP 400: {message}"
                                 + (f" ({field})" if field else ""))
        receipts += [receipt_for(sid, verdicts.get(sid, ADDRESS), reason)
                     for sid, reason in named.items()]
        return [[entry for entry in group if entry[0].subscriber_id not in named]]

    # -- webhook ----------------------------------------------------------------------

    @classmethod
    def load_webhook(cls, settings: WebhookSettings, config: Config) -> Any:
        """The verification key, parsed once at start-up (None when not configured)."""
        if not settings.webhook_public_key:
            return None
        return load_key(settings.webhook_public_key, lambda problem: setting_error(
            cls, config, "webhook_public_key", problem))

    @classmethod
    def verify_webhook(cls, public_key: Any, request: WebhookRequest) -> Any:
        """The events, when signed with the key and recently; the signature headers are
        checked before the body is read."""
        if public_key is None:
            raise WebhookError(403, "the sendgrid webhook is not configured "
                                    "([providers.sendgrid] webhook_public_key)")
        items = read_json(_check_signature(public_key, request))
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise WebhookError(400, "the body is not an array of events")
        return items

    @classmethod
    def parse_events(cls, items: Any) -> WebhookReport:
        """Bounces, drops, spam reports and unsubscribes; each with its sg_event_id, as
        SendGrid retries whole batches."""
        events = (_event(item) for item in items)
        return WebhookReport(events=tuple(e for e in events if e is not None))


def _rate_limited_for(response: requests.Response) -> float | None:
    """How long a 429 asks to wait: the later of X-RateLimit-Reset and Retry-After, since
    going back before either has passed only meets another 429."""
    waits = [wait for wait in (
        parse_rate_limit_reset(response.headers.get("X-RateLimit-Reset")),
        parse_retry_after(response.headers.get("Retry-After"))) if wait is not None]
    return max(waits, default=None)


def load_key(text: str, where: Any):
    """The EC public key from SendGrid's verification key (base64 DER, or PEM); `where`
    makes the error for a key that is not one."""
    text = text.strip()
    try:
        key = (load_pem_public_key(text.encode()) if text.startswith("-----")
               else load_der_public_key(base64.b64decode(text, validate=True)))
    except (ValueError, binascii.Error, TypeError):
        raise where("is not a public key (paste the verification key SendGrid shows, "
                    "base64)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise where("must be an ECDSA P-256 key")
    return key


def _check_signature(public_key: Any, request: WebhookRequest) -> bytes:
    """The body, when the signature headers sign it with the key and recently."""
    signature, timestamp = request.headers.get(SIGNATURE), request.headers.get(TIMESTAMP)
    if not signature or not timestamp:
        raise WebhookError(401, f"unsigned (no {SIGNATURE})")
    body = request.read()
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise WebhookError(403, "bad signature") from None
    if not fresh(timestamp, SIGNATURE_WINDOW, request.clock):
        raise WebhookError(403, "stale timestamp (more than 5 minutes off)")
    return body


_DROPPED = (("bounce", "bounce"), ("invalid", "bounce"), ("spam", "complaint"),
            ("unsubscribe", "unsubscribe"))


def _kind(item: dict) -> tuple[str | None, str | None]:
    """(bounce | complaint | unsubscribe, detail) of one event, or (None, None)."""
    name = item.get("event")
    if name == "bounce" and item.get("type", "bounce") == "bounce":  # not "blocked"
        return "bounce", text(item.get("reason") or "bounce")
    if name == "dropped":
        reason = str(item.get("reason") or "").lower()
        kind = next((k for word, k in _DROPPED if word in reason), None)
        return kind, f"dropped: {text(item.get('reason'))}"
    if name == "spamreport":
        return "complaint", "spam report"
    if name in ("unsubscribe", "group_unsubscribe"):
        return "unsubscribe", name.replace("_", " ")
    return None, None


def _event(item: dict) -> Event | None:
    """One event that concerns us, with the ids it may be found by; None for the others."""
    kind, detail = _kind(item)
    if kind is None:
        return None
    to = address(item.get("email"))
    if to is None:
        raise WebhookError(400, f"a {item.get('event')} event without a valid email")
    ids: list[str] = []
    if isinstance(item.get("sg_message_id"), str):  # its X-Message-Id, then a suffix
        ids += [item["sg_message_id"], item["sg_message_id"].split(".", 1)[0]]
    if isinstance(item.get("smtp-id"), str):
        ids.append(item["smtp-id"])
    event_id = item.get("sg_event_id") if isinstance(item.get("sg_event_id"), str) else None
    return Event(to, kind, detail or str(item.get("event")), tuple(ids), event_id)


def _errors(response: requests.Response) -> list[tuple[str, str]]:
    """SendGrid's `{"errors": [{"message", "field", "help"}]}` as (field, message) pairs."""
    data = json_or_none(response)
    if not isinstance(data, dict) or not isinstance(data.get("errors"), list):
        return []
    out = []
    for error in data["errors"]:
        if isinstance(error, dict):
            out.append((str(error.get("field") or ""),
                        " ".join(str(error.get("message") or "").split())))
    return out


__all__ = ["SendgridProvider"]
