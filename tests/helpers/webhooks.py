"""Sign provider webhooks the way each provider does, with keys made here for the tests.

Payloads are shaped as each provider documents them (Postmark bounce and spam complaint
webhooks; Mailgun's `signature` + `event-data`; SendGrid's Event Webhook array; SES
notifications inside SNS messages). SendGrid's key is an ECDSA P-256 pair; SNS's is an RSA
key with a self-signed certificate standing in for the one at SigningCertURL.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import uuid
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

POSTMARK_USER = "runletter-hooks"
POSTMARK_PASSWORD = "postmark-hook-password-42"
MAILGUN_KEY = "mailgun-signing-key-0123456789abcdef"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:runletter-ses-events"
SIGNING_CERT_URL = ("https://sns.us-east-1.amazonaws.com/"
                    "SimpleNotificationService-0000000000000000000000.pem")

# -- Postmark: HTTP Basic auth on the webhook URL --------------------------------------------


def postmark_auth(user: str = POSTMARK_USER, password: str = POSTMARK_PASSWORD) -> str:
    """An Authorization header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def postmark_bounce(email: str, message_id: str, kind: str = "HardBounce") -> dict:
    """A Postmark bounce webhook record."""
    return {
        "RecordType": "Bounce", "ID": 4323372036854775807, "Type": kind, "TypeCode": 1,
        "Name": "Hard bounce", "Tag": "", "MessageID": message_id, "ServerID": 23,
        "MessageStream": "broadcast",
        "Description": "The server was unable to deliver your message (ex: unknown user, "
                       "mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email, "From": "maya@runfreely.example.org",
        "BouncedAt": "2026-11-24T13:28:10.2735393-04:00", "DumpAvailable": True,
        "Inactive": True, "CanActivate": True, "Subject": "Hip Drive", "Metadata": {},
    }


def postmark_complaint(email: str, message_id: str) -> dict:
    """A Postmark spam complaint webhook record."""
    record = postmark_bounce(email, message_id, kind="SpamComplaint")
    record.update(RecordType="SpamComplaint", TypeCode=512, Name="Spam complaint",
                  Description="The subscriber explicitly marked this message as spam.")
    return record


# -- Mailgun: HMAC-SHA256 over timestamp + token ----------------------------------------------


def mailgun_payload(event: str, recipient: str, message_id: str, *,
                    severity: str | None = None, key: str = MAILGUN_KEY,
                    timestamp: int | None = None, token: str | None = None) -> dict:
    """A Mailgun webhook body: a signature object and the event-data."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    data = {
        "id": uuid.uuid4().hex[:22], "timestamp": float(stamp), "log-level": "error",
        "event": event, "recipient": recipient, "recipient-domain": recipient.split("@")[1],
        "message": {"headers": {"message-id": message_id, "from": "maya@runfreely.example.org",
                                "to": recipient, "subject": "Hip Drive"},
                    "attachments": [], "size": 4321},
        "tags": [], "user-variables": {}, "flags": {"is-authenticated": True},
    }
    if severity:
        data["severity"] = severity
        data["reason"] = "bounce"
        data["delivery-status"] = {"code": 550, "attempt-no": 1,
                                   "message": "5.1.1 The email account does not exist",
                                   "description": "No such user"}
    return {"signature": {"timestamp": stamp, "token": token, "signature": signature},
            "event-data": data}


# -- SendGrid: ECDSA P-256 over timestamp + raw body ------------------------------------------


@cache
def sendgrid_private_key() -> ec.EllipticCurvePrivateKey:
    """The test's stand-in for SendGrid's signing key."""
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_public_key() -> str:
    """The verification key as SendGrid shows it: base64 of the DER public key."""
    der = sendgrid_private_key().public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def sendgrid_headers(body: bytes, timestamp: str | None = None,
                     key: ec.EllipticCurvePrivateKey | None = None) -> dict[str, str]:
    """The two signature headers for a body."""
    stamp = timestamp or str(int(time.time()))
    signature = (key or sendgrid_private_key()).sign(stamp.encode() + body,
                                                      ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json"}


def sendgrid_event(event: str, email: str, x_message_id: str, **extra) -> dict:
    """One event of a SendGrid Event Webhook batch."""
    item = {"email": email, "timestamp": int(time.time()), "event": event,
            "smtp-id": f"<{x_message_id}@ismtpd-555>",
            "sg_event_id": base64.b64encode(uuid.uuid4().bytes).decode(),
            "sg_message_id": f"{x_message_id}.filterdrecv-5645d9c87f-78xgx-1-5D8B2B38-2.0",
            "category": ["newsletter"]}
    item.update(extra)
    return item


# -- Amazon SES through SNS: RSA signature, certificate from configuration ---------------------


@cache
def sns_key() -> rsa.RSAPrivateKey:
    """The test's stand-in for SNS's signing key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed(key: rsa.RSAPrivateKey, common_name: str = "sns.amazonaws.com") -> bytes:
    """A self-signed certificate (PEM) for a key, shaped like SNS's signing certificate."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def sns_certificate_pem() -> bytes:
    """The certificate the server is configured with ([serve] ses_certificate)."""
    return self_signed(sns_key())


_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
}


def sign_sns(message: dict, version: str = "1", key: rsa.RSAPrivateKey | None = None) -> dict:
    """Add SignatureVersion, Signature and SigningCertURL the way SNS does."""
    text = "".join(f"{k}\n{message[k]}\n" for k in _SIGNED[message["Type"]] if k in message)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = (key or sns_key()).sign(text.encode(), padding.PKCS1v15(), digest)
    return {**message, "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": SIGNING_CERT_URL}


def sns_notification(ses_message: dict, topic: str = TOPIC_ARN, subject: str | None = None
                     ) -> dict:
    """An unsigned SNS Notification carrying an SES notification."""
    message = {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": topic,
               "Message": json.dumps(ses_message),
               "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
               "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"}
    if subject is not None:
        message["Subject"] = subject
    return message


def sns_subscription_confirmation(topic: str = TOPIC_ARN) -> dict:
    """An unsigned SNS SubscriptionConfirmation."""
    token = secrets.token_hex(64)
    return {"Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "Token": token,
            "TopicArn": topic,
            "Message": f"You have chosen to subscribe to the topic {topic}.\n"
                       "To confirm the subscription, visit the SubscribeURL included in this "
                       "message.",
            "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
                            f"&TopicArn={topic}&Token={token}",
            "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")}


def _ses_mail(email: str, message_id: str) -> dict:
    return {"timestamp": "2026-11-24T14:59:38.237Z", "source": "maya@runfreely.example.org",
            "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/runfreely.example.org",
            "sendingAccountId": "123456789012", "messageId": message_id,
            "destination": [email], "headersTruncated": False,
            "commonHeaders": {"from": ["maya@runfreely.example.org"], "to": [email],
                              "subject": "Hip Drive"}}


def ses_bounce(email: str, message_id: str, bounce_type: str = "Permanent") -> dict:
    """An SES bounce notification (the SNS Message)."""
    return {"notificationType": "Bounce",
            "bounce": {"bounceType": bounce_type, "bounceSubType": "General",
                       "bouncedRecipients": [{"emailAddress": email, "action": "failed",
                                              "status": "5.1.1",
                                              "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                       "timestamp": "2026-11-24T14:59:38.237Z",
                       "feedbackId": "00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9",
                       "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"},
            "mail": _ses_mail(email, message_id)}


def ses_complaint(email: str, message_id: str) -> dict:
    """An SES complaint notification (the SNS Message)."""
    return {"notificationType": "Complaint",
            "complaint": {"userAgent": "AnyCompany Feedback Loop (V0.01)",
                          "complainedRecipients": [{"emailAddress": email}],
                          "complaintFeedbackType": "abuse",
                          "arrivalDate": "2026-11-24T14:59:38.237Z",
                          "timestamp": "2026-11-24T14:59:38.237Z",
                          "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a"},
            "mail": _ses_mail(email, message_id)}
