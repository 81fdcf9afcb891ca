"""The default provider: every message becomes a file in a Maildir under outbox/.

Nothing leaves the machine. A Maildir is what mail clients (mutt, Thunderbird's import,
`mail -f`) open directly, and a file per message is easy to count and read in tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from publisher.delivery.address import message_date
from publisher.delivery.providers.base import ACCEPTED, Batch, Provider, Receipt, SendStopped
from publisher.errors import display_path, write_error

# Messages hold addresses and live unsubscribe tokens: the owner's alone, whatever the umask.
FOLDER_MODE, FILE_MODE = 0o700, 0o600


@dataclass(frozen=True)
class Settings:
    """[providers.outbox]: another folder for the Maildir (empty: [paths] outbox)."""

    path: str = ""


def _key(post: str, subscriber_id: int) -> str:
    """The tail of a message's file name that says which delivery it is (slugs have no '.';
    a step's '/' cannot go in a file name)."""
    return f"R{subscriber_id}.{post.replace('/', '+')}"


class OutboxProvider(Provider):
    """Writes each message to outbox/new/ the way Maildir delivery does: into tmp/, fsync,
    rename into new/, and new/ fsynced before the call returns. A message is accepted only
    once its file is durably in new/, so after a crash the deliveries left in flight are
    exactly those whose file is not there (`already_delivered` finds the others).
    """

    name: ClassVar[str] = "outbox"
    max_batch: ClassVar[int] = 500
    needs_secret_env: ClassVar[bool] = False
    Settings = Settings

    def open(self) -> None:
        """Create the Maildir folders, owner-only."""
        path = self.settings.path
        self.root = Path(path) if path else self.config.outbox_dir
        try:
            for folder in (self.root, *(self.root / sub for sub in ("tmp", "new", "cur"))):
                _private_folder(folder)
        except OSError as exc:
            raise SendStopped(write_error(exc, self._shown(exc.filename))) from None
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")
        self.counter = 0

    def _shown(self, path: object) -> str:
        return display_path(str(path or self.root), self.config.root)

    def send(self, batch: Batch) -> list[Receipt]:
        """Write every message of the batch; a write that fails (a full disk) stops the
        call: what is already in new/ is accepted, the rest was not sent."""
        receipts: list[Receipt] = []
        date = message_date()
        try:
            for recipient in batch.recipients:
                message = self.addresser.message(batch.compiled, recipient, date)
                unique = self._deliver(message.data, batch.edition.post_slug,
                                       recipient.subscriber_id)
                receipts.append(Receipt(recipient.subscriber_id, ACCEPTED, provider_id=unique))
        except OSError as exc:
            raise SendStopped(write_error(exc, self._shown(None)),
                              receipts if _synced(self.root / "new") else ()) from None
        _sync_folder(self.root / "new")
        return receipts

    def _deliver(self, data: bytes, post: str, subscriber_id: int) -> str:
        """One message into new/ by way of tmp/ (its tmp file removed if the write fails)."""
        self.counter += 1
        unique = (f"{time.time_ns()}.P{os.getpid()}Q{self.counter}.{self.host}."
                  f"{_key(post, subscriber_id)}")
        tmp = self.root / "tmp" / unique
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.root / "new" / unique)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            exc.filename = exc.filename or str(tmp)
            raise
        return unique

    def already_delivered(self, post: str, subscriber_ids: Iterable[int]) -> dict[int, str]:
        """The readers of `post` whose message is in new/ (or cur/, once a client read it),
        each with its file name."""
        wanted = {_key(post, sid): sid for sid in subscriber_ids}
        found: dict[int, str] = {}
        for sub in ("new", "cur"):
            folder = self.root / sub
            for name in (os.listdir(folder) if folder.is_dir() else ()):
                # A client moving a message to cur/ appends ':2,FLAGS' (the Maildir info).
                unique = name.split(":", 1)[0]
                sid = wanted.get(".".join(unique.rsplit(".", 2)[-2:]))
                if sid is not None:
                    found[sid] = unique
        return found


def _private_folder(folder: Path) -> None:
    """Create a folder only its owner may enter (mkdir's mode is cut by the umask)."""
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return
    os.chmod(folder, FOLDER_MODE)


def _sync_folder(folder: Path) -> None:
    """Make the renames into a folder survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _synced(folder: Path) -> bool:
    """Whether new/ could be fsynced after a failed write (else nothing counts as durable)."""
    try:
        _sync_folder(folder)
    except OSError:
        return False
    return True
