"""Send through Mailgun's batch sending: one `POST /v3/{domain}/messages` per batch.

The edition goes up ONCE per batch, with up to 1,000 `to` fields and `recipient-variables`
(a JSON object keyed by each recipient's plain address). Mailgun then sends every `to` its
own message, replacing `%recipient.KEY%` in the subject, the bodies and `h:` headers.
Authentication is HTTP Basic with the user `api` and the API key; the body is
multipart/form-data. EU domains live at https://api.eu.mailgun.net (set base_url).
(documentation.mailgun.com: "Send an email", "Batch Sending", "API Response Codes")

Each slot of the edition becomes a recipient variable (see BulkBody): `h_first_name_0` in
the HTML (HTML-escaped) and `t_first_name_0` in the text (raw). The List-Unsubscribe
header is `<%recipient.unsubscribe_url%>, <%recipient.unsubscribe_mailto%>`.

Outcomes of a call (Mailgun answers once for the whole batch):
  200                → every recipient accepted, provider id = the call's message id
  400                → nothing was queued. "'to' parameter is not a valid address" names
                       no address, so the batch is halved until the refused reader is
                       alone: that reader is rejected (bounced), everyone else is sent. A
                       message naming batch addresses rejects those directly (unless it is
                       about the sender: the author may be a reader too). A 400 about
                       anything else is about the request itself and stops the publish
                       (ProviderConfigError): bouncing a whole batch of readers for a
                       request-level fault would be irreversible, so we never do that.
  401, 403           → config: the API key (or the key's access to the domain)
  404                → config: unknown domain, or the domain is in the other region
  413                → the call is split in two (a single reader's call: config)
  429, 5xx, dropped  → failed (retried later, honouring Retry-After)
Literal text `%recipient.…%` in a post would be substituted by Mailgun too; it has no
escape for it, and posts are not expected to contain it.

Webhook: `signature` {timestamp, token, signature} = HMAC-SHA256(timestamp + token) with the
webhook signing key (RUNLETTER_MAILGUN_WEBHOOK_SIGNING_KEY); a timestamp more than
SIGNATURE_WINDOW seconds off is refused, and so is a token seen before (a replay).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from publisher.delivery.address import Recipient, format_address, header_safe
from publisher.delivery.providers.base import (
    ACCEPTED,
    TIMEOUT,
    Batch,
    ProviderConfigError,
    Receipt,
    parse_retry_after,
    secret,
)
from publisher.delivery.providers.http import (
    BulkBody,
    HttpProvider,
    Transient,
    addresses_named,
    halve_or_refuse,
    halves,
    json_or_none,
    response_text,
)
from publisher.delivery.providers.verdicts import ADDRESS, names_sender, receipt_for
from publisher.delivery.providers.webhook import (
    SIGNATURE_WINDOW,
    Event,
    WebhookError,
    WebhookReport,
    WebhookRequest,
    address,
    dict_in,
    fresh,
    read_json,
    text,
)
from publisher.errors import RunletterError
from publisher.model import Edition

MAX_RECIPIENTS = 1000  # documented batch sending limit
# "'to' parameter is not a valid address. please check documentation" (and cc/bcc)
INVALID_ADDRESS = re.compile(r"'(to|cc|bcc)' parameter is not a valid address", re.I)


def _marker(variable: str) -> str:
    return f"%recipient.{variable}%"


@dataclass(frozen=True)
class Settings:
    """[providers.mailgun]: where and as which domain to send; the key from the environment."""

    base_url: str = "https://api.mailgun.net"
    domain: str = ""
    tag: str = ""
    timeout: float = TIMEOUT
    api_key: str = secret()


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook signing key (not the API key), only from the environment."""

    webhook_signing_key: str = secret()


class MailgunProvider(HttpProvider):
    """Delivers each batch as one Mailgun batch send with recipient variables.

    Settings ([providers.mailgun] or RUNLETTER_MAILGUN_*): base_url (https://api.mailgun.net,
    or https://api.eu.mailgun.net for EU domains), domain (the sending domain, required),
    tag, timeout. The API key comes only from RUNLETTER_MAILGUN_API_KEY.
    """

    name: ClassVar[str] = "mailgun"
    label: ClassVar[str] = "Mailgun"
    webhook_tolerance: ClassVar[float] = SIGNATURE_WINDOW
    max_batch: ClassVar[int] = MAX_RECIPIENTS
    Settings = Settings
    WebhookSettings = WebhookSettings
    SECRET_HELP: ClassVar = {"api_key": "Mailgun API key"}

    def __init__(self, *args, **kwargs):
        """The domain is required: it is part of the URL every batch is posted to."""
        super().__init__(*args, **kwargs)
        domain = str(self.settings.domain).strip()
        if not domain or "/" in domain or " " in domain:
            raise ProviderConfigError(
                "Mailgun: set domain to your Mailgun sending domain (e.g. "
                "\"mg.example.org\") in [providers.mailgun] or RUNLETTER_MAILGUN_DOMAIN"
                + (f"; {domain!r} is not a domain" if domain else ""))
        self.domain = domain
        self.path = f"/v3/{domain}/messages"
        self.auth = ("api", str(self.settings.api_key).strip())
        self._cache: tuple[Edition, BulkBody, list[tuple[str, str]]] | None = None

    def _edition_fields(self, edition: Edition) -> tuple[BulkBody, list[tuple[str, str]]]:
        """The form fields that are the same for every batch of an edition, built once."""
        if self._cache is not None and self._cache[0] is edition:
            return self._cache[1], self._cache[2]
        config = self.config
        body = BulkBody.of(edition, _marker)
        fields = [
            ("from", format_address(config.sender_name, config.sender_email)),
            ("subject", header_safe(edition.subject, "the subject")),
            ("text", body.text),
            ("html", body.html),
            ("h:Reply-To", header_safe(config.reply_to, "the Reply-To address")),
            ("h:List-Unsubscribe", "<%recipient.unsubscribe_url%>, "
                                   "<%recipient.unsubscribe_mailto%>"),
            ("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("h:X-Runletter-Edition",
             header_safe(f"{edition.post_slug}/{edition.goal}", "the edition")),
            ("h:X-Runletter-Message-ID", "%recipient.message_id%"),
            ("v:post", edition.post_slug),
            ("v:goal", edition.goal),
        ]
        if str(self.settings.tag).strip():
            fields.append(("o:tag", str(self.settings.tag).strip()))
        self._cache = (edition, body, fields)
        return body, fields

    # -- sending ----------------------------------------------------------------------

    def send(self, batch: Batch) -> list[Receipt]:
        """One call for the whole batch (a 400 naming readers: those out, the rest again)."""
        self.check_fatal()
        try:
            body, fields = self._edition_fields(batch.edition)
        except RunletterError as exc:  # a line break in the sender or subject
            raise self.edition_error(exc) from None
        return self.send_groups(batch, lambda recipient: self._entry(body, recipient),
                                lambda group, receipts: self._send_group(group, fields,
                                                                         receipts))

    @staticmethod
    def _entry(body: BulkBody, recipient: Recipient
               ) -> tuple[Recipient, str, str, dict[str, str]]:
        """A reader's `to`, their address as Mailgun keys it (IDNA), and their variables."""
        to = format_address(recipient.first_name, recipient.email)
        variables = body.values(recipient.values)
        for key in ("unsubscribe_url", "unsubscribe_mailto", "message_id"):
            variables[key] = header_safe(recipient.values[key], key)
        return recipient, to, email.utils.parseaddr(to)[1], variables

    def _send_group(self, group: list[tuple[Recipient, str, str, dict[str, str]]],
                    fields: list[tuple[str, str]], receipts: list[Receipt]
                    ) -> list[list[tuple[Recipient, str, str, dict[str, str]]]]:
        """POST one group; append receipts; return groups still to send (after a split or
        after taking out the readers a 400 named)."""
        form = list(fields)
        form += [("to", to) for _r, to, _a, _v in group]
        form.append(("recipient-variables", json.dumps(
            {address: variables for _r, _t, address, variables in group},
            ensure_ascii=False, separators=(",", ":"))))
        # requests sends multipart/form-data when given `files`; (None, value) is a plain
        # field, without a filename.
        response = self.post(self.path, auth=self.auth,
                             files=[(key, (None, value.encode("utf-8"))) for key, value in form])
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        data = json_or_none(response)
        message = (" ".join(str(data.get("message") or "").split())
                   if isinstance(data, dict) else response_text(response))
        if 200 <= status < 300:
            provider_id = str(data.get("id") or "") if isinstance(data, dict) else ""
            receipts += [Receipt(r.subscriber_id, ACCEPTED, provider_id=provider_id or None)
                         for r, _t, _a, _v in group]
            return []
        said = f"HTTP {status}" + (f": {message}" if message else "")
        if status == 429 or status >= 500:
            raise Transient(said, retry_after)
        if status == 400:
            named = set() if names_sender(message) else addresses_named(
                message, ((r.subscriber_id, (address, r.email)) for r, _t, address, _v in group))
            if named:
                receipts += [receipt_for(r.subscriber_id, ADDRESS, f"Mailgun {said}")
                             for r, _t, _a, _v in group if r.subscriber_id in named]
                return [[entry for entry in group if entry[0].subscriber_id not in named]]
            if INVALID_ADDRESS.search(message):
                # "'to' parameter is not a valid address" names no address: some reader's
                # address is refused. Nothing was queued, so halve the group until the
                # reader is alone (about log2(1000) = 10 more calls per refused address).
                if len(group) == 1:
                    reader = group[0][0]
                    receipts.append(receipt_for(reader.subscriber_id, ADDRESS,
                                                f"Mailgun {said} ({reader.email})"))
                    return []
                return halves(group)
            raise ProviderConfigError(
                f"Mailgun refused the batch ({said}); nothing was sent. Check [sender] "
                f"and the post, or report this message")
        if status in (401, 403):
            raise ProviderConfigError(
                f"Mailgun refused the API key ({said}); check RUNLETTER_MAILGUN_API_KEY "
                f"and that the key may send for domain '{self.domain}' (EU domains need "
                f"base_url https://api.eu.mailgun.net)")
        if status == 404:
            raise ProviderConfigError(
                f"Mailgun does not know the domain '{self.domain}' ({said}); check "
                f"RUNLETTER_MAILGUN_DOMAIN, and base_url for its region "
                f"(https://api.eu.mailgun.net for EU domains)")
        if status == 413:
            return halve_or_refuse(group, "Mailgun", said, "Mailgun's 25 MB limit")
        raise ProviderConfigError(f"Mailgun answered {said} at {self.base_url}{self.path}; "
                                  f"check base_url and domain")

    # -- webhook ----------------------------------------------------------------------

    @classmethod
    def verify_webhook(cls, settings: WebhookSettings, request: WebhookRequest) -> Any:
        """The payload, when its `signature` is the key's and its timestamp recent."""
        key = settings.webhook_signing_key
        if not key:
            raise WebhookError(403, "the mailgun webhook is not configured "
                                    f"({cls.env_name('webhook_signing_key')})")
        payload = read_json(request.read())
        signature = payload.get("signature") if isinstance(payload, dict) else None
        if not isinstance(signature, dict):
            raise WebhookError(400, "no signature object")
        timestamp, token, sig = _signature_fields(signature)
        expected = hmac.new(key.encode(), (timestamp + token).encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig.lower()):
            raise WebhookError(403, "bad signature")
        if not fresh(timestamp, SIGNATURE_WINDOW, request.clock):
            raise WebhookError(403, "stale timestamp (more than 5 minutes off)")
        return payload

    @classmethod
    def parse_events(cls, payload: Any) -> WebhookReport:
        """A permanent failure, a complaint or an unsubscribe; its token marks replays."""
        token = payload["signature"]["token"]
        data = payload.get("event-data")
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise WebhookError(400, "no event-data")
        kind, detail = _kind(data)
        events: tuple[Event, ...] = ()
        if kind is not None:
            to = address(data.get("recipient"))
            if to is None:
                raise WebhookError(400, "event-data without a valid recipient")
            headers = dict_in(dict_in(data, "message"), "headers")
            ids = (str(headers["message-id"]),) if headers.get("message-id") else ()
            events = (Event(to, kind, detail or "permanent failure", ids),)
        return WebhookReport(events=events, request_id=token, replay_refusal="replayed token")


def _signature_fields(signature: dict) -> tuple[str, str, str]:
    """(timestamp, token, signature) of a complete signature object; WebhookError if not."""
    timestamp, token, sig = (signature.get(k) for k in ("timestamp", "token", "signature"))
    timestamp = str(timestamp) if isinstance(timestamp, int | str) else ""
    if not (timestamp.isascii() and timestamp.isdigit() and isinstance(token, str)
            and token.isascii() and 0 < len(token) <= 256
            and isinstance(sig, str) and sig.isascii() and len(sig) <= 128):
        raise WebhookError(400, "the signature object is incomplete")
    return timestamp, token, sig


def _kind(data: dict) -> tuple[str | None, str]:
    """(bounce | complaint | unsubscribe, detail) of an event, or (None, "")."""
    event = data["event"]
    if event == "failed" and data.get("severity") == "permanent":
        status = data.get("delivery-status") or {}
        return "bounce", text((status.get("description") or status.get("message")
                               or data.get("reason") or "permanent failure")
                              if isinstance(status, dict) else "")
    if event == "complained":
        return "complaint", "spam complaint"
    if event == "unsubscribed":
        return "unsubscribe", "unsubscribed at Mailgun"
    return None, ""


__all__ = ["MailgunProvider"]
