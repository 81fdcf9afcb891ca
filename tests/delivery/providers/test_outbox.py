"""The outbox: a call's files are made durable together, and only then named in new/."""

from __future__ import annotations

import errno
import os

import pytest

from publisher.delivery.address import Addresser
from publisher.delivery.providers import outbox
from publisher.delivery.providers.base import ACCEPTED, Batch, SendStopped
from publisher.delivery.providers.outbox import OutboxProvider
from publisher.delivery.tokens import Signer
from publisher.project import open_project
from publisher.render.email import EmailRenderer
from tests.samples import HIP_DRIVE as POST
from tests.samples import SECRET

READERS = 5


@pytest.fixture
def call(sample_root):
    """An open outbox in the sample and a batch of READERS messages for it."""
    project = open_project(sample_root)
    renderer = EmailRenderer(project.config)
    edition = renderer.edition(renderer.prepare(project.resolve(project.post(POST))),
                               project.goals.get("marathon"))
    addresser = Addresser(project.config, Signer(SECRET))
    recipients = tuple(addresser.recipient(POST, i, f"reader{i}@example.com", "Ana")
                       for i in range(1, READERS + 1))
    with OutboxProvider(project.config, addresser, {"path": ""}) as provider:
        yield provider, Batch(edition, addresser.compile(edition), recipients)


def folder(provider: OutboxProvider, sub: str) -> list[str]:
    return sorted(os.listdir(provider.root / sub))


@pytest.fixture
def syncs(monkeypatch):
    """Every syncfs and fsync of a send, in order: ("syncfs", new/ then) or ("fsync", fd)."""
    seen: list[tuple[str, object]] = []
    real_fsync = os.fsync

    def syncfs(fd):
        seen.append(("syncfs", tuple(os.listdir(os.path.join(os.readlink(
            f"/proc/self/fd/{fd}"), "..", "new")))))

    def fsync(fd):
        seen.append(("fsync", fd))
        real_fsync(fd)

    monkeypatch.setattr(outbox, "SYNCFS", syncfs)
    monkeypatch.setattr(outbox.os, "fsync", fsync)
    return seen


def test_a_call_syncs_the_filesystem_once_and_new_once_not_every_file(call, syncs):
    provider, batch = call
    receipts = provider.send(batch)
    assert [kind for kind, _ in syncs] == ["syncfs", "fsync"]
    assert len(receipts) == READERS and {r.status for r in receipts} == {ACCEPTED}


def test_no_message_is_named_in_new_before_the_filesystem_sync(call, syncs):
    provider, batch = call
    provider.send(batch)
    assert syncs[0] == ("syncfs", ())
    assert len(folder(provider, "new")) == READERS and folder(provider, "tmp") == []


def test_a_failed_filesystem_sync_accepts_nothing_and_leaves_no_file(call, monkeypatch):
    provider, batch = call

    def failing(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(outbox, "SYNCFS", failing)
    with pytest.raises(SendStopped) as stopped:
        provider.send(batch)
    assert stopped.value.receipts == ()
    assert folder(provider, "new") == [] and folder(provider, "tmp") == []


def test_a_write_that_fails_part_way_accepts_exactly_the_messages_written_before(
        call, syncs, monkeypatch):
    provider, batch = call
    real_write = provider._write  # noqa: SLF001
    written = []

    def fills_the_disk_on_the_third(data, post, subscriber_id):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "somewhere")
        written.append(subscriber_id)
        return real_write(data, post, subscriber_id)

    monkeypatch.setattr(provider, "_write", fills_the_disk_on_the_third)
    with pytest.raises(SendStopped) as stopped:
        provider.send(batch)
    assert sorted(r.subscriber_id for r in stopped.value.receipts) == [1, 2]
    assert len(folder(provider, "new")) == 2 and folder(provider, "tmp") == []
    assert syncs[0] == ("syncfs", ())


def test_without_syncfs_each_file_is_fsynced_before_it_is_named_in_new(call, syncs,
                                                                       monkeypatch):
    provider, batch = call
    monkeypatch.setattr(outbox, "SYNCFS", None)
    provider.send(batch)
    assert [kind for kind, _ in syncs] == ["fsync"] * (READERS + 1)


def test_syncfs_is_trusted_only_on_linux_5_8_and_later(monkeypatch):
    monkeypatch.setattr(outbox.sys, "platform", "linux")
    trusted = {}
    for release in ("5.7.19-generic", "5.8.0", "6.18.44-fc-v1300"):
        monkeypatch.setattr(outbox.os, "uname", lambda release=release: os.uname_result(
            ("Linux", "host", release, "", "x86_64")))
        trusted[release] = outbox._load_syncfs() is not None  # noqa: SLF001
    assert trusted == {"5.7.19-generic": False, "5.8.0": True, "6.18.44-fc-v1300": True}


def test_syncfs_of_a_closed_descriptor_raises_an_os_error():
    if outbox.SYNCFS is None:
        pytest.skip("no trusted syncfs on this system")
    fd = os.open(".", os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError) as raised:
        outbox.SYNCFS(fd)
    assert raised.value.errno == errno.EBADF
