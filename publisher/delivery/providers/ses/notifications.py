"""What SES's bounce and complaint notifications report (the Message inside an SNS
notification, see sns.py): the readers whose address bounced for good, or who complained."""

from __future__ import annotations

from typing import Any

from publisher.delivery.providers.webhook import (
    Event,
    WebhookError,
    address,
    array_of,
    dict_in,
    text,
)


def notification_events(notification: Any) -> list[Event]:
    """The readers an SES notification (inside an SNS message) reports: a permanent Bounce's
    bouncedRecipients, a Complaint's complainedRecipients (not "not-spam")."""
    if not isinstance(notification, dict):
        raise WebhookError(400, "the SNS Message is not an SES notification")
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = dict_in(notification, "mail")
    ids = [str(mail["messageId"])] if mail.get("messageId") else []
    if dict_in(mail, "commonHeaders").get("messageId"):
        ids.append(str(dict_in(mail, "commonHeaders")["messageId"]))
    if kind == "Bounce":
        return _bounces(notification.get("bounce"), tuple(ids))
    if kind == "Complaint":
        return _complaints(notification.get("complaint"), tuple(ids))
    return []


def _bounces(bounce: Any, ids: tuple[str, ...]) -> list[Event]:
    if not isinstance(bounce, dict):
        raise WebhookError(400, "a Bounce notification without a bounce object")
    if bounce.get("bounceType") != "Permanent":
        return []
    events = []
    for recipient in array_of(bounce.get("bouncedRecipients"), "bouncedRecipients"):
        to = _recipient_address(recipient, "bounced")
        detail = text(recipient.get("diagnosticCode") or bounce.get("bounceSubType")
                      or "permanent")
        events.append(Event(to, "bounce", f"Permanent: {detail}", ids))
    return events


def _complaints(complaint: Any, ids: tuple[str, ...]) -> list[Event]:
    if not isinstance(complaint, dict):
        raise WebhookError(400, "a Complaint notification without a complaint object")
    if complaint.get("complaintFeedbackType") == "not-spam":
        return []
    return [Event(_recipient_address(recipient, "complained"), "complaint", "complaint", ids)
            for recipient in array_of(complaint.get("complainedRecipients"),
                                      "complainedRecipients")]


def _recipient_address(recipient: Any, what: str) -> str:
    found = address(recipient.get("emailAddress") if isinstance(recipient, dict) else None)
    if found is None:
        raise WebhookError(400, f"a {what} recipient without a valid emailAddress")
    return found
