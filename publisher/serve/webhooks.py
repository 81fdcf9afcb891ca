"""Provider webhooks: one route for every provider in the registry that has a webhook.

The provider verifies the request and says what it reports (publisher/providers/); here the
report is applied in one transaction: a replay is refused or a retry acknowledged, each
event moves its reader's status (only towards the stronger one) and notes its ledger row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from publisher.config import Config
from publisher.delivery.providers import webhook_classes
from publisher.delivery.providers.base import Provider, read_settings
from publisher.delivery.providers.webhook import Event, WebhookError, WebhookReport, WebhookRequest
from publisher.serve.db import get_store
from publisher.store.ledger import Ledger

log = logging.getLogger("runletter.serve")
STATUS_FOR = {"bounce": "bounced", "complaint": "complained", "unsubscribe": "unsubscribed"}
DAY = 24 * 3600

bp = Blueprint("webhooks", __name__)


class Receivers:
    """Each webhook provider's class and what verifying needs, loaded once at start-up (a
    wrong setting stops the start with a message naming it)."""

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None):
        self.providers: dict[str, tuple[type[Provider], Any]] = {}
        for name, cls in webhook_classes().items():
            assert cls.WebhookSettings is not None
            settings = read_settings(cls, cls.WebhookSettings, config, environ)
            self.providers[name] = (cls, cls.load_webhook(settings, config))
        # Ids are kept a day, and at least as long as a signed request is accepted (its
        # timestamp may be off either way, so twice the window).
        self.keep = max([DAY] + [2 * cls.webhook_tolerance
                                 for cls, _ in self.providers.values()])


EXTENSION = "runletter.receivers"  # the key of app.extensions


def init_app(app, config) -> None:
    """Give the app its webhook receivers, one per provider with webhook settings."""
    app.extensions[EXTENSION] = Receivers(config)


def receivers() -> Receivers:
    """The webhook receivers of the app handling the current request."""
    return current_app.extensions[EXTENSION]


@bp.post("/webhooks/<name>")
def receive(name: str):
    """One provider's webhook request: verified, read, applied."""
    found = receivers().providers.get(name)
    if found is None:
        return jsonify(error=f"no webhook for '{name[:40]}'"), 404
    cls, loaded = found
    try:
        payload = cls.verify_webhook(loaded, WebhookRequest(
            request.headers, lambda: request.get_data(cache=False)))
        return apply_report(name, cls.parse_events(payload))
    except WebhookError as exc:
        log.warning("%s webhook refused (%s): %s", name, exc.status, exc.message)
        return jsonify(error=exc.message), exc.status


def apply_report(name: str, report: WebhookReport):
    """Apply a verified report in one transaction; the answer says how many readers moved."""
    for line in report.log:
        log.warning("%s", line)
    store = get_store()
    with store.transaction():
        if report.request_id is not None and not seen_first(name, report.request_id):
            if report.replay_refusal:
                raise WebhookError(409, report.replay_refusal)
            return answer(0, "duplicate message")
        fresh = [e for e in report.events
                 if e.event_id is None or seen_first(name, e.event_id)]
        changed = apply_events(name, fresh)
    return answer(changed, report.note)


def seen_first(name: str, token: str) -> bool:
    """Remember a webhook id; False when it was seen before (a replay or a retry)."""
    return get_store().mark_webhook_seen(name, token, receivers().keep,
                                        time.time())


def apply_events(name: str, events: list[Event]) -> int:
    """Apply events in the caller's transaction; how many readers changed status."""
    store = get_store()
    ledger = Ledger(store)
    changed = 0
    for event in events:
        reader, moved = store.apply_event(
            event.email, STATUS_FOR[event.kind], f"{name} webhook: {event.kind}: {event.detail}")
        if reader is None:
            log.info("%s webhook: %s for an address not on the list", name, event.kind)
            continue
        changed += moved
        ledger.apply_event(reader.id, event.message_ids, event.kind,
                           f"{event.kind} ({name}): {event.detail}")
    return changed


def answer(changed: int, note: str = ""):
    """The JSON a provider gets for a request it need not send again."""
    return jsonify(ok=True, changed=changed, **({"note": note} if note else {}))
