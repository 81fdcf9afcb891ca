"""The default provider: every message becomes a file in a Maildir under outbox/.

Nothing leaves the machine. A Maildir is what mail clients (mutt, Thunderbird's import,
`mail -f`) open directly, and a file per message is easy to count and read in tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
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


def _load_syncfs() -> Callable[[int], None] | None:
    """Linux's syncfs(2) as `sync(fd)` raising OSError, where it reports write-back errors
    (Linux 5.8 and later: earlier, it returned 0 even when a file failed to reach the disk,
    so it cannot vouch for one); None elsewhere."""
    if sys.platform != "linux":
        return None
    try:
        major, minor = (int(part) for part in os.uname().release.split(".")[:2])
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (ValueError, OSError, AttributeError):
        return None
    if (major, minor) < (5, 8):
        return None

    def sync(fd: int) -> None:
        if syncfs(fd) != 0:
            code = ctypes.get_errno() or errno.EIO
            raise OSError(code, os.strerror(code))

    return sync


class OutboxProvider(Provider):
    """Writes each message to outbox/new/ the way Maildir delivery does: into tmp/, made
    durable, renamed into new/, and new/ fsynced before the call returns. A message is
    accepted only once its file is durably in new/, so after a crash the deliveries left in
    flight are exactly those whose file is not there (`already_delivered` finds the others).

    A call writes all its files into tmp/ first and makes them durable with one syncfs of
    the outbox's filesystem (a flush of the disk per file cost most of a send), and only
    then renames them into new/; where syncfs cannot report a failed write (not Linux, or
    Linux before 5.8) each file is fsynced as it is written instead.
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
        call: the messages written before it are made durable and accepted, the rest was
        not sent."""
        tmp, new = self.root / "tmp", self.root / "new"
        written: list[tuple[str, int]] = []  # (file name in tmp/, reader), not yet in new/
        receipts: list[Receipt] = []
        try:
            # Opened before any write: syncfs reports the write-back errors met since.
            anchor = os.open(tmp, os.O_RDONLY)
        except OSError as exc:
            raise SendStopped(write_error(exc, self._shown(None))) from None
        try:
            failed = self._write_all(batch, written)
            try:
                if SYNCFS is not None and written:
                    SYNCFS(anchor)  # every file's data on disk before any name is in new/
                for unique, sid in written:
                    os.rename(tmp / unique, new / unique)
                    receipts.append(Receipt(sid, ACCEPTED, provider_id=unique))
            except OSError as exc:
                failed = failed or exc
        finally:
            os.close(anchor)
            for unique, _ in written[len(receipts):]:  # never renamed: not sent
                with contextlib.suppress(OSError):
                    (tmp / unique).unlink()
        if failed is not None:
            raise SendStopped(write_error(failed, self._shown(None)),
                              receipts if _synced(new) else ()) from None
        _sync_folder(new)
        return receipts

    def _write_all(self, batch: Batch, written: list[tuple[str, int]]) -> OSError | None:
        """Write the batch's messages into tmp/, noting each in `written`; the error that
        stopped the writing, if one did."""
        date = message_date()
        try:
            for recipient in batch.recipients:
                message = self.addresser.message(batch.compiled, recipient, date)
                written.append((self._write(message.data, batch.edition.post_slug,
                                            recipient.subscriber_id), recipient.subscriber_id))
        except OSError as exc:
            return exc
        return None

    def _write(self, data: bytes, post: str, subscriber_id: int) -> str:
        """One message into tmp/ (fsynced there unless the call syncs the filesystem once);
        its file name. The tmp file is removed if the write fails."""
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
                if SYNCFS is None:
                    os.fsync(fd)
            finally:
                os.close(fd)
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


SYNCFS = _load_syncfs()  # None: each file is fsynced as it is written


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
