"""Status changes that race: two connections change one reader at the same moment, many
times over, on SQLite and PostgreSQL. Whatever the interleaving, the strictest outcome wins
(complained > bounced > unsubscribed > paused > pending, active) and the audit trail chains:
each row starts from the status the previous one ended in, and the last ends in the status
stored."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import pytest

from publisher.delivery.providers.base import Receipt
from publisher.store import Store, Subscriber, now
from publisher.store.ledger import Ledger
from tests.samples import ON_BOTH_BACKENDS

pytestmark = ON_BOTH_BACKENDS

ROUNDS = 200
Change = Callable[[Store, Subscriber], object]


def race(store_url: str, readers: list[Subscriber], first: Change, second: Change) -> None:
    """Run `first` and `second` on each reader at once, each on its own connection; a
    barrier starts every round together, and gives up (failing the test) after 60 s."""
    barrier = threading.Barrier(2, timeout=60)
    errors: list[BaseException] = []

    def worker(change: Change) -> None:
        try:
            with Store.open(store_url) as own:
                for reader in readers:
                    barrier.wait()
                    change(own, reader)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a racing change never finished"
    assert not errors, errors[0]


def readers_of(store: Store, prefix: str, **fields: str) -> list[Subscriber]:
    return [store.add(f"{prefix}{n}@example.com", **fields) for n in range(ROUNDS)]


def trail_chains(store: Store, reader: Subscriber) -> bool:
    """Each audit row starts where the one before ended; the last ends at the status."""
    rows = store.history(reader.email)
    links = all(b.old_status == a.new_status for a, b in zip(rows, rows[1:], strict=False))
    return links and rows[-1].new_status == store.by_id(reader.id).status


def unsubscribe(own: Store, reader: Subscriber) -> None:
    assert own.unsubscribe(reader.id, "unsubscribe link", end_pause=True) is True


def test_an_unsubscribe_racing_a_confirmation_always_leaves_the_reader_unsubscribed(
        store, store_url):
    readers = readers_of(store, "pending", status="pending")
    issued = datetime.fromisoformat(now()).timestamp() - 60  # the link came before both

    race(store_url, readers, unsubscribe,
         lambda own, reader: own.confirm(reader.id, issued, "signup form", None))
    for reader in readers:
        assert store.by_id(reader.id).status == "unsubscribed", store.history(reader.email)
        assert trail_chains(store, reader), store.history(reader.email)


def test_an_unsubscribe_racing_a_resume_always_ends_the_pause(store, store_url):
    readers = readers_of(store, "paused")
    for reader in readers:
        store.pause(reader.id, "preferences page")

    race(store_url, readers, unsubscribe,
         lambda own, reader: own.resume(reader.id, "preferences page"))
    for reader in readers:
        after = store.by_id(reader.id)
        assert after.status == "unsubscribed" and not store.is_paused(after), (
            store.history(reader.email))
        assert trail_chains(store, reader), store.history(reader.email)


def test_an_unsubscribe_racing_a_webhook_bounce_always_leaves_the_reader_bounced(
        store, store_url):
    readers = readers_of(store, "active")

    def unsubscribe_if_still_joined(own: Store, reader: Subscriber) -> None:
        own.unsubscribe(reader.id, "unsubscribe link")  # False when the bounce came first

    race(store_url, readers, unsubscribe_if_still_joined,
         lambda own, reader: own.apply_event(reader.email, "bounced", "postmark: hard bounce"))
    for reader in readers:
        assert store.by_id(reader.id).status == "bounced", store.history(reader.email)
        assert trail_chains(store, reader), store.history(reader.email)


@pytest.mark.parametrize("status", ["complained", "unsubscribed"])
def test_a_rejection_after_the_reader_left_never_loosens_their_status(store, status):
    reader = store.add("left@example.com")
    store.set_status(reader.id, status, "while the batch was on the wire")
    Ledger(store).record("a-post", [Receipt(reader.id, "rejected", reason="550 no such user")],
                         {reader.id: 1}, base=1.0, cap=1.0, at=0.0)
    expected = "complained" if status == "complained" else "bounced"
    assert store.by_id(reader.id).status == expected
    assert trail_chains(store, reader)
