"""The emails `runletter serve` sends itself: the confirmation, and 'already subscribed'."""

from __future__ import annotations

import logging
import uuid

from publisher.config import Config
from publisher.delivery.address import Addresser, Recipient
from publisher.delivery.providers import provider_class
from publisher.delivery.providers.base import Batch, provider_settings
from publisher.model import Edition, Slot, split_slots
from publisher.store import Subscriber

log = logging.getLogger("runletter.serve")


class Mailer:
    """Sends the confirmation (and 'already subscribed') emails through the configured provider.

    Each kind of email is an Edition rendered once at start-up with two slots, the reader's
    first name and their link, and compiled once; per signup only the slots are filled.
    """

    KINDS = ("confirm", "already")

    def __init__(self, config: Config, signer, env):
        self.config = config
        self.cls = provider_class(config.delivery.provider)
        self.settings = provider_settings(self.cls, config)
        self.addresser = Addresser(config, signer)
        self.hours = config.serve.confirm_hours
        self.compiled = {kind: self.addresser.compile(self._edition(kind, env))
                         for kind in self.KINDS}

    def _edition(self, kind: str, env) -> Edition:
        slots = (Slot("first_name", "runner"), Slot("link"))
        marks = {"first_name": "ZZSLOT0ZZ", "link": "ZZSLOT1ZZ"}
        name = self.config.name
        if kind == "confirm":
            subject = f"Confirm your subscription to {name}"
            preheader = "One click and you're in."
            text = (f"Hi {marks['first_name']},\n\nPlease confirm that you want {name} in "
                    f"your inbox:\n\n{marks['link']}\n\nThe link works for {self.hours} hours. "
                    "If you didn't ask for this, ignore this email: you won't hear from us "
                    "again.\n")
        else:
            subject = f"You're already subscribed to {name}"
            preheader = "Nothing to do, unless you want to change something."
            text = (f"Hi {marks['first_name']},\n\nSomeone (probably you) asked to subscribe "
                    f"this address to {name}, and it already is. Nothing has changed.\n\n"
                    f"Change your goal or name, pause or unsubscribe here:\n\n{marks['link']}\n")
        text += f"\n-- \n{name}\n{self.config.postal_address}\n"
        html = env.get_template("serve/email.html.j2").render(
            kind=kind, newsletter=self.config, subject=subject, preheader=preheader,
            first_name=marks["first_name"], link=marks["link"], hours=self.hours)
        return Edition(post_slug="runletter-serve", goal=kind, subject=subject,
                       preheader=preheader, html_parts=split_slots(html, slots),
                       text_parts=split_slots(text, slots))

    def send(self, kind: str, reader: Subscriber, link: str) -> str:
        """Send one email; return the receipt's status (accepted, rejected or failed)."""
        values = self.addresser.values_for("runletter-serve", reader.id, reader.email,
                                           reader.first_name)
        values["link"] = link
        values["message_id"] = (f"<{kind}.{reader.id}.{uuid.uuid4().hex[:12]}"
                                f"@{self.addresser.domain}>")
        recipient = Recipient(reader.id, reader.email, reader.first_name, values)
        compiled = self.compiled[kind]
        with self.cls(self.config, self.addresser, self.settings) as provider:
            [receipt] = provider.send(Batch(compiled.edition, compiled, (recipient,)))
        if receipt.status != "accepted":
            log.warning("%s email to reader #%s not sent: %s %s", kind, reader.id,
                        receipt.status, receipt.reason)
        return receipt.status

