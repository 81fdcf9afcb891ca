"""Amazon SNS messages, verified: how SES (and any AWS service) posts to a webhook.

The signature (SignatureVersion 1 = SHA1withRSA, 2 = SHA256withRSA, over the documented
key/value lines of the message type) is checked with a certificate the operator saved, never
fetched from the message's SigningCertURL; the topic must be the one configured.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from publisher.delivery.providers.webhook import WebhookError, WebhookRequest, read_json

FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                "TopicArn", "Type"),
}


def string_to_sign(message: Mapping[str, Any]) -> str:
    """The text SNS signs: 'Key\\nValue\\n' for the type's fields, in order (Subject if set)."""
    out = []
    for key in FIELDS[message["Type"]]:
        if key == "Subject" and message.get("Subject") is None:
            continue
        value = message.get(key)
        if not isinstance(value, str):
            raise WebhookError(400, f"the SNS message has no {key}")
        out.append(f"{key}\n{value}\n")
    return "".join(out)


def load_certificate(data: bytes) -> x509.Certificate:
    """The signing certificate from PEM bytes; ValueError when they are not one."""
    return x509.load_pem_x509_certificate(data)


def verified_message(request: WebhookRequest, certificate: Any,
                     topic_arn: str) -> dict[str, Any]:
    """The SNS message a request carries, when signed with the certificate for the topic."""
    message = read_json(request.read())
    if not isinstance(message, dict) or message.get("Type") not in FIELDS:
        raise WebhookError(400, "not an SNS message")
    declared = request.headers.get("x-amz-sns-message-type")
    if declared and declared != message["Type"]:
        raise WebhookError(400, "x-amz-sns-message-type does not match the message")
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(
        str(message.get("SignatureVersion")))
    if algorithm is None or not isinstance(message.get("Signature"), str):
        raise WebhookError(401, "unsigned, or an unknown SignatureVersion")
    text = string_to_sign(message)
    try:
        certificate.public_key().verify(base64.b64decode(message["Signature"], validate=True),
                                        text.encode("utf-8"), padding.PKCS1v15(), algorithm)
    except (binascii.Error, ValueError, InvalidSignature, TypeError):
        raise WebhookError(403, "bad signature") from None
    if not hmac.compare_digest(str(message.get("TopicArn")).encode(), topic_arn.encode()):
        raise WebhookError(403, "unexpected TopicArn")
    return message


def confirmation_notice(message: Mapping[str, Any]) -> str:
    """What the operator is told about a (un)subscription confirmation: SNS's SubscribeURL
    is logged for them to visit, never fetched."""
    if message["Type"] == "SubscriptionConfirmation":
        return (f"SNS subscription confirmation for {message.get('TopicArn')}: visit this URL "
                f"once to confirm it (runletter never fetches it): "
                f"{message.get('SubscribeURL')}")
    return f"SNS unsubscribe confirmation for {message.get('TopicArn')}"
