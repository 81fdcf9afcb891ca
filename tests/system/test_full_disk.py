"""A full disk and a crash, for the outbox and the store: one line and exit 1, nothing sent
twice, and the outbox's files readable by their owner only."""

from __future__ import annotations

import email
import email.policy
import os
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import bindparam, text

from publisher.store.ledger import Ledger
from tests.helpers.support import import_sample, message_ids, outbox_messages, project_store, run
from tests.samples import HIP_DRIVE as POST


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MB tmpfs of its own, to fill up for real."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk with a file until only `leave` bytes are free."""
    free = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(0, free.f_bavail * free.f_frsize - leave))
    return filler


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert errors == [f"runletter: error: {text}"]


def test_a_publish_to_a_full_outbox_marks_sent_exactly_the_messages_in_new(
        sample_root, small_disk, monkeypatch):
    import_sample(sample_root)
    monkeypatch.setenv("RUNLETTER_OUTBOX_PATH", str(small_disk / "outbox"))
    fill(small_disk, 120_000)
    result = run("publish", POST, "--yes")
    one_line_error(result, f"no space left on device writing {small_disk / 'outbox'}; "
                   "free some space and run again")
    written = len(os.listdir(small_disk / "outbox" / "new"))
    assert 0 < written < 59
    assert os.listdir(small_disk / "outbox" / "tmp") == []
    with project_store(sample_root) as store:
        assert Ledger(store).count(POST, "sent") == written
        assert Ledger(store).count(POST, "in-flight") == 0


def test_a_publish_after_freeing_the_full_disk_sends_the_rest_once(sample_root, small_disk,
                                                                   monkeypatch):
    import_sample(sample_root)
    monkeypatch.setenv("RUNLETTER_OUTBOX_PATH", str(small_disk / "outbox"))
    filler = fill(small_disk, 120_000)
    assert run("publish", POST, "--yes").exit_code == 1
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    result = run("publish", POST, "--yes")
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(sample_root)
    ids = message_ids_in(small_disk / "outbox")
    assert len(ids) == 59 and set(ids.values()) == {1}


def message_ids_in(outbox: Path):
    """message_ids() of an outbox somewhere else than the project's."""
    root = outbox.parent / "as-project"
    (root).mkdir(exist_ok=True)
    if not (root / "outbox").exists():
        (root / "outbox").symlink_to(outbox)
    return message_ids(root)


def test_an_import_onto_a_full_disk_is_one_line_and_leaves_the_store_as_it_was(
        sample_root, small_disk, monkeypatch):
    monkeypatch.setenv("RUNLETTER_DATABASE_URL", f"sqlite:///{small_disk / 'store.db'}")
    (sample_root / "one.csv").write_text("email,first_name\nann@example.org,Ann\n",
                                         encoding="utf-8")
    assert run("subscribers", "import", "one.csv").exit_code == 0
    filler = fill(small_disk, 0)
    result = run("subscribers", "import", "subscribers/sample.csv")
    one_line_error(result, f"no space left on device writing {small_disk / 'store.db'}; "
                   "free some space and run again")
    filler.unlink()
    with project_store(sample_root) as store:
        assert store.conn.execute("SELECT COUNT(*) FROM subscribers").fetchone()[0] == 1


def test_resending_in_flight_to_the_outbox_resends_only_messages_not_in_new(sample_root):
    import_sample(sample_root)
    assert run("publish", POST, "--yes").exit_code == 0
    new = sample_root / "outbox" / "new"
    # A crash after the files of five readers were written but before the ledger said so,
    # and during the write of five more (not in new/).
    with project_store(sample_root) as store:
        rows = store.conn.execute("SELECT subscriber_id, email FROM deliveries WHERE "
                                  "post = :post ORDER BY subscriber_id LIMIT 10",
                                  {"post": POST}).fetchall()
        with store.transaction() as conn:
            conn.execute(text("UPDATE deliveries SET state = 'in-flight' WHERE post = :post "
                              "AND subscriber_id IN :ids").bindparams(
                                  bindparam("ids", expanding=True)),
                         {"post": POST, "ids": [sid for sid, _ in rows]})
    unwritten = {addr for _, addr in rows[5:]}
    for path in new.iterdir():
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["To"].addresses[0].addr_spec in unwritten:
            path.unlink()
    assert len(os.listdir(new)) == 54
    result = run("publish", POST, "--yes", "--resend-in-flight")
    assert result.exit_code == 0, result.output
    assert len(message_ids(sample_root)) == 59 and set(message_ids(sample_root).values()) == {1}
    with project_store(sample_root) as store:
        assert Ledger(store).count(POST, "sent") == 59


def test_the_outbox_is_its_owners_alone_whatever_the_umask(sample_root):
    import_sample(sample_root)
    old = os.umask(0o022)
    try:
        assert run("publish", POST, "--yes").exit_code == 0
    finally:
        os.umask(old)
    outbox = sample_root / "outbox"
    for folder in (outbox, outbox / "tmp", outbox / "new", outbox / "cur"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert {stat.S_IMODE(p.stat().st_mode) for p in (outbox / "new").iterdir()} == {0o600}
    assert len(outbox_messages(sample_root)) == 59
