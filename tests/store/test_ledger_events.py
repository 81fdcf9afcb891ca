"""What providers report after sending lands on the right ledger row (Ledger.apply_event)."""

from __future__ import annotations

import pytest

from publisher.store import Store
from publisher.store.ledger import Ledger


@pytest.fixture
def ledger(store: Store) -> Ledger:
    """The ledger of an empty store of the test's backend."""
    return Ledger(store)


def add_row(ledger: Ledger, post: str, subscriber_id: int, state: str, provider_id: str | None,
            updated_at: str) -> None:
    with ledger.store.transaction() as conn:
        conn.execute("INSERT INTO deliveries(post, subscriber_id, email, goal, state, attempts, "
                     "provider_id, updated_at) VALUES (:post, :subscriber_id, 'x@example.com', "
                     "'5k', :state, 1, :provider_id, :updated_at)",
                     {"post": post, "subscriber_id": subscriber_id, "state": state,
                      "provider_id": provider_id, "updated_at": updated_at})


def row(ledger: Ledger, post: str, subscriber_id: int) -> tuple[str, str | None]:
    return ledger.conn.execute("SELECT state, error FROM deliveries WHERE post = :post AND "
                               "subscriber_id = :subscriber_id",
                               {"post": post, "subscriber_id": subscriber_id}).fetchone()


@pytest.fixture
def reader(ledger: Ledger) -> int:
    reader = ledger.store.add("r@example.com", goal="5k")
    add_row(ledger, "older", reader.id, "sent", "<id-older@mail>", "2026-01-01T00:00:00+00:00")
    add_row(ledger, "newer", reader.id, "sent", "id-newer", "2026-02-01T00:00:00+00:00")
    add_row(ledger, "planned", reader.id, "planned", None, "2026-03-01T00:00:00+00:00")
    return reader.id


def test_the_row_is_the_one_whose_provider_id_the_event_names(ledger, reader):
    assert ledger.row_for_event(reader, ("id-older@mail",)) == ("older", "sent")
    assert ledger.row_for_event(reader, ("<id-newer>",)) == ("newer", "sent")


def test_without_a_known_provider_id_our_own_message_id_names_the_post(ledger, reader):
    assert ledger.row_for_event(reader, ("unknown", f"<older.{reader}@example.org>")) == (
        "older", "sent")


def test_without_any_id_the_row_is_the_most_recent_sent_one(ledger, reader):
    assert ledger.row_for_event(reader, ()) == ("newer", "sent")


def test_a_bounce_makes_a_sent_row_rejected_with_the_event_as_its_error(ledger, reader):
    assert ledger.apply_event(reader, ("id-older@mail",), "bounce", "bounce (x): gone")
    assert row(ledger, "older", reader) == ("rejected", "bounce (x): gone")
    assert row(ledger, "newer", reader) == ("sent", None)


def test_a_complaint_keeps_the_row_sent_and_notes_it(ledger, reader):
    assert ledger.apply_event(reader, ("id-newer",), "complaint", "complaint (x): spam")
    assert row(ledger, "newer", reader) == ("sent", "complaint (x): spam")


def test_an_event_for_a_reader_without_rows_notes_nothing(ledger):
    other = ledger.store.add("o@example.com", goal="5k")
    assert ledger.row_for_event(other.id, ("id",)) is None
    assert ledger.apply_event(other.id, ("id",), "bounce", "x") is False
