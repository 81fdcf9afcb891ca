"""The default provider: every message becomes a file in a Maildir under outbox/.

Nothing leaves the machine. A Maildir is what mail clients (mutt, Thunderbird's import,
`mail -f`) open directly, and a file per message is easy to count and read in tests.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..address import message_date
from .base import ACCEPTED, Batch, Provider, Receipt


@dataclass(frozen=True)
class Settings:
    """[providers.outbox]: another folder for the Maildir (empty: [paths] outbox)."""

    path: str = ""


class OutboxProvider(Provider):
    """Writes each message to outbox/new/ the way Maildir delivery does (tmp, then rename).

    The rename makes a file appear whole or not at all; no fsync, since a killed process
    loses nothing the kernel already holds, and the ledger is the record of what was sent.
    """

    name: ClassVar[str] = "outbox"
    max_batch: ClassVar[int] = 500
    needs_secret_env: ClassVar[bool] = False
    Settings = Settings

    def open(self) -> None:
        """Create the Maildir folders."""
        path = self.settings.path
        self.root = Path(path) if path else self.config.outbox_dir
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")
        self.counter = 0

    def send(self, batch: Batch) -> list[Receipt]:
        """Write every message of the batch; each file lands whole or not at all."""
        receipts = []
        date = message_date()
        for recipient in batch.recipients:
            message = self.addresser.message(batch.compiled, recipient, date)
            self.counter += 1
            unique = f"{time.time_ns()}.P{os.getpid()}Q{self.counter}.{self.host}"
            tmp = self.root / "tmp" / unique
            with open(tmp, "wb") as handle:
                handle.write(message.data)
            os.rename(tmp, self.root / "new" / unique)
            receipts.append(Receipt(recipient.subscriber_id, ACCEPTED, provider_id=unique))
        return receipts
