"""Provider webhooks: bounces, complaints and unsubscribes, verified, then applied."""

from __future__ import annotations

import logging
import os
import time

from flask import Blueprint, jsonify, request

from ..deliver import Ledger
from ..store import Store
from ..webhooks import (
    MAILGUN_KEY_ENV,
    MAILGUN_TOLERANCE,
    POSTMARK_PASSWORD_ENV,
    SENDGRID_TOLERANCE,
    Event,
    WebhookError,
    load_sendgrid_key,
    load_ses_certificate,
    mailgun_events,
    postmark_events,
    sendgrid_events,
    ses_events,
)
from .context import site
from .db import get_store

log = logging.getLogger("runletter.serve")
# How long webhook ids are remembered: a day, and at least as long as a signed request is
# accepted (its timestamp may be off either way, so twice the window).
SEEN_KEEP = max(24 * 3600, 2 * MAILGUN_TOLERANCE, 2 * SENDGRID_TOLERANCE)
STATUS_FOR = {"bounce": "bounced", "complaint": "complained", "unsubscribe": "unsubscribed"}

bp = Blueprint("webhooks", __name__)


class Receivers:
    """The webhook keys and certificates, loaded once at start-up."""

    def __init__(self, config):
        serve = config.serve
        self.serve = serve
        self.sendgrid_key = (load_sendgrid_key(serve.sendgrid_public_key)
                             if serve.sendgrid_public_key else None)
        self.ses_cert = (load_ses_certificate(config.root / serve.ses_certificate)
                         if serve.ses_certificate else None)


def apply_events(store: Store, provider: str, events: list[Event]) -> int:
    """Apply events in the caller's transaction; return how many readers changed status."""
    ledger = Ledger(store)
    changed = 0
    for event in events:
        reader, moved = store.apply_event(
            event.email, STATUS_FOR[event.kind], f"{provider} webhook: {event.kind}: "
            f"{event.detail}")
        if reader is None:
            log.info("%s webhook: %s for an address not on the list", provider, event.kind)
            continue
        changed += moved
        ledger.apply_event(reader.id, event.message_ids, event.kind,
                           f"{event.kind} ({provider}): {event.detail}")
    return changed


def mark_seen(store: Store, provider: str, token: str) -> bool:
    return store.mark_webhook_seen(provider, token, SEEN_KEEP, time.time())


def webhook_refused(provider: str, exc: WebhookError):
    log.warning("%s webhook refused (%s): %s", provider, exc.status, exc.message)
    return jsonify(error=exc.message), exc.status


@bp.post("/webhooks/<provider>")
def receive(provider: str):
    """One provider's webhook request."""
    if provider not in ("postmark", "mailgun", "sendgrid", "ses"):
        return jsonify(error=f"no webhook for '{provider[:40]}'"), 404
    receivers = site().receivers
    serve = receivers.serve
    body = request.get_data(cache=False)
    store = get_store()
    try:
        if provider == "postmark":
            events = postmark_events(request.headers.get("Authorization"), body,
                                     serve.postmark_webhook_user,
                                     os.environ.get(POSTMARK_PASSWORD_ENV))
            with store.transaction():
                changed = apply_events(store, provider, events)
        elif provider == "mailgun":
            token, events = mailgun_events(body, os.environ.get(MAILGUN_KEY_ENV))
            with store.transaction():
                if not mark_seen(store, provider, token):
                    raise WebhookError(409, "replayed token")
                changed = apply_events(store, provider, events)
        elif provider == "sendgrid":
            events = sendgrid_events(
                request.headers.get("X-Twilio-Email-Event-Webhook-Signature"),
                request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp"), body,
                receivers.sendgrid_key)
            with store.transaction():
                fresh = [e for e in events
                         if e.event_id is None or mark_seen(store, provider, e.event_id)]
                changed = apply_events(store, provider, fresh)
        else:
            sns, events = ses_events(body, receivers.ses_cert, serve.ses_topic_arn,
                                     request.headers.get("x-amz-sns-message-type"))
            if sns["Type"] == "SubscriptionConfirmation":
                log.warning("SNS subscription confirmation for %s: visit this URL once "
                            "to confirm it (runletter never fetches it): %s",
                            sns.get("TopicArn"), sns.get("SubscribeURL"))
                return jsonify(ok=True, changed=0, note="subscription confirmation logged")
            if sns["Type"] == "UnsubscribeConfirmation":
                log.warning("SNS unsubscribe confirmation for %s", sns.get("TopicArn"))
                return jsonify(ok=True, changed=0)
            with store.transaction():
                if not mark_seen(store, provider, str(sns.get("MessageId"))):
                    return jsonify(ok=True, changed=0, note="duplicate message")
                changed = apply_events(store, provider, events)
    except WebhookError as exc:
        return webhook_refused(provider, exc)
    return jsonify(ok=True, changed=changed)
