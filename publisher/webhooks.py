"""Provider webhooks, verified and parsed: bytes and settings in, events out (pure).

Each provider's own scheme: Postmark's HTTP Basic auth, Mailgun's HMAC-SHA256 over timestamp
and token, SendGrid's signed Event Webhook (ECDSA P-256), and Amazon SES notifications
through SNS (the message signature checked with a certificate from settings, never fetched).
What the events do to readers and the ledger is `serve.apply_events`.
"""

from __future__ import annotations

import array
import base64
import binascii
import email.utils
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .emails import validate_email
from .errors import RunletterError

POSTMARK_PASSWORD_ENV = "RUNLETTER_POSTMARK_WEBHOOK_PASSWORD"
MAILGUN_KEY_ENV = "RUNLETTER_MAILGUN_WEBHOOK_SIGNING_KEY"
MAILGUN_TOLERANCE = 300  # seconds a Mailgun timestamp may be off
SENDGRID_TOLERANCE = 300  # seconds a SendGrid signed timestamp may be off
MAX_DEPTH = 32  # JSON nesting a webhook may have; providers' payloads nest about 5 deep
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# An opening bracket is a step of +1, a closing one of -1 (0xff as a signed byte).
_BRACKET_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class WebhookError(Exception):
    """A webhook request refused before anything changed: an HTTP status and a reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Event:
    """One thing a provider reported about one address."""

    email: str
    kind: str  # bounce | complaint | unsubscribe
    detail: str
    message_ids: tuple[str, ...] = ()
    event_id: str | None = None  # for de-duplication (SendGrid sg_event_id)


def json_depth(body: bytes) -> int:
    """How deep a JSON text's arrays and objects nest (exact for valid JSON), in linear time."""
    # In valid JSON every backslash starts a two-character escape, read left to right as
    # bytes.replace reads; with escapes gone, every other run between quotes is a string.
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(plain.split(b'"')[::2])
    steps = array.array("b", outside.translate(_BRACKET_STEP, _NOT_BRACKETS))
    return max(itertools.accumulate(steps), default=0)


def _json(body: bytes) -> Any:
    # json recurses once per level and raises RecursionError near 1000: bound it first.
    if json_depth(body) > MAX_DEPTH:
        raise WebhookError(400, f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(body.decode("utf-8"))
        # A lone surrogate ("\ud800") is valid JSON but not text: SQLite could not store it.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # ValueError includes the Unicode errors
        raise WebhookError(400, "the body is not JSON") from None
    return value


def _fresh(timestamp: str, tolerance: int, clock: float | None) -> bool:
    """True when a signed unix timestamp is within `tolerance` seconds of the clock."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    return abs((clock if clock is not None else time.time()) - int(timestamp)) <= tolerance


def _address(value: Any) -> str | None:
    """A plain address from 'a@b' or 'Name <a@b>', or None when it is not one."""
    if not isinstance(value, str):
        return None
    addr = email.utils.parseaddr(value)[1] or value.strip()
    return addr if validate_email(addr) is None else None


def _list(value: Any, name: str) -> list:
    """A JSON array (absent or null: empty); anything else is a malformed request."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookError(400, f"{name} is not an array")
    return value


def _text(value: Any, limit: int = 200) -> str:
    return " ".join(str(value).split())[:limit] if value not in (None, "") else ""


def postmark_events(authorization: str | None, body: bytes, user: str,
                    password: str | None) -> list[Event]:
    """Check Postmark's HTTP Basic credentials, then read one webhook record."""
    if not password:
        raise WebhookError(403, f"the postmark webhook is not configured ({POSTMARK_PASSWORD_ENV})")
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        given = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        given = ""
    given_user, sep, given_password = given.partition(":")
    expected = f"{user}:{password}".encode()
    if (scheme.lower() != "basic" or not sep
            or not hmac.compare_digest(f"{given_user}:{given_password}".encode(), expected)):
        raise WebhookError(401, "missing or wrong credentials")
    record = _json(body)
    if not isinstance(record, dict) or not isinstance(record.get("RecordType"), str):
        raise WebhookError(400, "not a Postmark webhook record (no RecordType)")
    kind = record["RecordType"]
    ids = (str(record["MessageID"]),) if record.get("MessageID") else ()
    if kind == "Bounce":
        addr = _address(record.get("Email"))
        if addr is None:
            raise WebhookError(400, "a Bounce record without a valid Email")
        if record.get("Type") in ("HardBounce", "BadEmailAddress"):
            detail = _text(record.get("Description") or record.get("Details") or record["Type"])
            return [Event(addr, "bounce", f"{record['Type']}: {detail}", ids)]
        return []
    if kind == "SpamComplaint":
        addr = _address(record.get("Email"))
        if addr is None:
            raise WebhookError(400, "a SpamComplaint record without a valid Email")
        return [Event(addr, "complaint", "spam complaint", ids)]
    if kind == "SubscriptionChange":
        addr = _address(record.get("Recipient"))
        if addr is None:
            raise WebhookError(400, "a SubscriptionChange record without a valid Recipient")
        if record.get("SuppressSending") is True and \
                record.get("SuppressionReason") == "ManualSuppression":
            return [Event(addr, "unsubscribe", "unsubscribed at Postmark", ids)]
        return []
    return []  # Delivery, Open, Click…: nothing to do


def mailgun_events(body: bytes, signing_key: str | None,
                   clock: float | None = None) -> tuple[str, list[Event]]:
    """Check a Mailgun webhook's signature and age; return its token and its event."""
    if not signing_key:
        raise WebhookError(403, f"the mailgun webhook is not configured ({MAILGUN_KEY_ENV})")
    payload = _json(body)
    signature = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(signature, dict):
        raise WebhookError(400, "no signature object")
    timestamp, token, sig = (signature.get(k) for k in ("timestamp", "token", "signature"))
    timestamp = str(timestamp) if isinstance(timestamp, int | str) else ""
    if not (timestamp.isascii() and timestamp.isdigit() and isinstance(token, str)
            and token.isascii() and 0 < len(token) <= 256
            and isinstance(sig, str) and sig.isascii()):
        raise WebhookError(400, "the signature object is incomplete")
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig.lower()):
        raise WebhookError(403, "bad signature")
    if not _fresh(timestamp, MAILGUN_TOLERANCE, clock):
        raise WebhookError(403, "stale timestamp (more than 5 minutes off)")
    data = payload.get("event-data")
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise WebhookError(400, "no event-data")
    event = data["event"]
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    ids = (str(headers["message-id"]),) if headers.get("message-id") else ()
    kind = None
    if event == "failed" and data.get("severity") == "permanent":
        kind = "bounce"
        status = data.get("delivery-status") or {}
        detail = _text((status.get("description") or status.get("message") or data.get("reason")
                        or "permanent failure") if isinstance(status, dict) else "")
    elif event == "complained":
        kind, detail = "complaint", "spam complaint"
    elif event == "unsubscribed":
        kind, detail = "unsubscribe", "unsubscribed at Mailgun"
    if kind is None:
        return token, []
    addr = _address(data.get("recipient"))
    if addr is None:
        raise WebhookError(400, "event-data without a valid recipient")
    return token, [Event(addr, kind, detail or "permanent failure", ids)]


def load_sendgrid_key(text: str):
    """The EC public key from SendGrid's verification key (base64 DER, or PEM)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        load_der_public_key,
        load_pem_public_key,
    )

    text = text.strip()
    try:
        key = (load_pem_public_key(text.encode()) if text.startswith("-----")
               else load_der_public_key(base64.b64decode(text, validate=True)))
    except (ValueError, binascii.Error, TypeError):
        raise RunletterError("runletter.toml: [serve] sendgrid_public_key is not a public key "
                             "(paste the verification key SendGrid shows, base64)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise RunletterError("runletter.toml: [serve] sendgrid_public_key must be an ECDSA "
                             "P-256 key")
    return key


_SENDGRID_DROPPED = (("bounce", "bounce"), ("invalid", "bounce"), ("spam", "complaint"),
                     ("unsubscribe", "unsubscribe"))


def sendgrid_events(signature: str | None, timestamp: str | None, body: bytes,
                    public_key, clock: float | None = None) -> list[Event]:
    """Check a SendGrid Event Webhook signature and age; return the events that concern us."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if public_key is None:
        raise WebhookError(403, "the sendgrid webhook is not configured "
                                "([serve] sendgrid_public_key)")
    if not signature or not timestamp:
        raise WebhookError(401, "unsigned (no X-Twilio-Email-Event-Webhook-Signature)")
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise WebhookError(403, "bad signature") from None
    # SendGrid documents no window: without one, a captured batch could be replayed for ever
    # once its event ids are pruned.
    if not _fresh(timestamp, SENDGRID_TOLERANCE, clock):
        raise WebhookError(403, "stale timestamp (more than 5 minutes off)")
    items = _json(body)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise WebhookError(400, "the body is not an array of events")
    events = []
    for item in items:
        name = item.get("event")
        kind = detail = None
        if name == "bounce" and item.get("type", "bounce") == "bounce":
            kind, detail = "bounce", _text(item.get("reason") or "bounce")
        elif name == "dropped":
            reason = str(item.get("reason") or "").lower()
            kind = next((k for word, k in _SENDGRID_DROPPED if word in reason), None)
            detail = f"dropped: {_text(item.get('reason'))}"
        elif name == "spamreport":
            kind, detail = "complaint", "spam report"
        elif name in ("unsubscribe", "group_unsubscribe"):
            kind, detail = "unsubscribe", name.replace("_", " ")
        if kind is None:
            continue
        addr = _address(item.get("email"))
        if addr is None:
            raise WebhookError(400, f"a {name} event without a valid email")
        ids: list[str] = []
        if isinstance(item.get("sg_message_id"), str):
            ids += [item["sg_message_id"], item["sg_message_id"].split(".", 1)[0]]
        if isinstance(item.get("smtp-id"), str):
            ids.append(item["smtp-id"])
        event_id = item.get("sg_event_id") if isinstance(item.get("sg_event_id"), str) else None
        events.append(Event(addr, kind, detail or name, tuple(ids), event_id))
    return events


SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                "TopicArn", "Type"),
}


def sns_string_to_sign(message: Mapping[str, Any]) -> str:
    """The text SNS signs: 'Key\\nValue\\n' for the type's fields, in order (Subject if set)."""
    fields = SNS_FIELDS[message["Type"]]
    out = []
    for key in fields:
        if key == "Subject" and message.get("Subject") is None:
            continue
        value = message.get(key)
        if not isinstance(value, str):
            raise WebhookError(400, f"the SNS message has no {key}")
        out.append(f"{key}\n{value}\n")
    return "".join(out)


def load_ses_certificate(path: Path):
    """The SNS signing certificate (PEM) named by [serve] ses_certificate."""
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise RunletterError(f"[serve] ses_certificate: cannot read {path}: "
                             f"{exc.strerror or exc}") from None
    except ValueError:
        raise RunletterError(f"[serve] ses_certificate: {path} is not a PEM certificate"
                             ) from None


def ses_events(body: bytes, certificate, topic_arn: str,
               message_type_header: str | None = None) -> tuple[dict[str, Any], list[Event]]:
    """Check an SNS message's signature and topic; return it and the SES events in it."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    if certificate is None or not topic_arn:
        raise WebhookError(403, "the ses webhook is not configured ([serve] ses_certificate "
                                "and ses_topic_arn)")
    message = _json(body)
    if not isinstance(message, dict) or message.get("Type") not in SNS_FIELDS:
        raise WebhookError(400, "not an SNS message")
    if message_type_header and message_type_header != message["Type"]:
        raise WebhookError(400, "x-amz-sns-message-type does not match the message")
    version = message.get("SignatureVersion")
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(version))
    if algorithm is None or not isinstance(message.get("Signature"), str):
        raise WebhookError(401, "unsigned, or an unknown SignatureVersion")
    text = sns_string_to_sign(message)
    try:
        certificate.public_key().verify(base64.b64decode(message["Signature"], validate=True),
                                        text.encode("utf-8"), padding.PKCS1v15(), algorithm)
    except (binascii.Error, ValueError, InvalidSignature, TypeError):
        raise WebhookError(403, "bad signature") from None
    if not hmac.compare_digest(str(message.get("TopicArn")).encode(), topic_arn.encode()):
        raise WebhookError(403, "unexpected TopicArn")
    if message["Type"] != "Notification":
        return message, []
    notification = _json(message["Message"].encode("utf-8"))
    if not isinstance(notification, dict):
        raise WebhookError(400, "the SNS Message is not an SES notification")
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    ids = [str(mail["messageId"])] if mail.get("messageId") else []
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    if common.get("messageId"):
        ids.append(str(common["messageId"]))
    events: list[Event] = []
    if kind == "Bounce":
        bounce = notification.get("bounce")
        if not isinstance(bounce, dict):
            raise WebhookError(400, "a Bounce notification without a bounce object")
        if bounce.get("bounceType") != "Permanent":
            return message, []
        for recipient in _list(bounce.get("bouncedRecipients"), "bouncedRecipients"):
            addr = _address(recipient.get("emailAddress") if isinstance(recipient, dict) else None)
            if addr is None:
                raise WebhookError(400, "a bounced recipient without a valid emailAddress")
            detail = _text(recipient.get("diagnosticCode") or bounce.get("bounceSubType")
                           or "permanent")
            events.append(Event(addr, "bounce", f"Permanent: {detail}", tuple(ids)))
    elif kind == "Complaint":
        complaint = notification.get("complaint")
        if not isinstance(complaint, dict):
            raise WebhookError(400, "a Complaint notification without a complaint object")
        if complaint.get("complaintFeedbackType") == "not-spam":
            return message, []
        for recipient in _list(complaint.get("complainedRecipients"), "complainedRecipients"):
            addr = _address(recipient.get("emailAddress") if isinstance(recipient, dict) else None)
            if addr is None:
                raise WebhookError(400, "a complained recipient without a valid emailAddress")
            events.append(Event(addr, "complaint", "complaint", tuple(ids)))
    return message, events


