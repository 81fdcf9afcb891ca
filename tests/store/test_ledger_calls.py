"""Calls claimed ahead (Ledger.mark_in_flight, call_goes_out, take_back_unsent): a call's rows
go in flight before it is sent; only a call that went out leaves them in doubt."""

from __future__ import annotations

import time

import pytest

from publisher.delivery.providers.base import ACCEPTED, Receipt
from publisher.store import Store
from publisher.store.ledger import Ledger
from tests.helpers.support import fill_readers

POST = "a-post"


@pytest.fixture
def ledger(store: Store, store_url: str) -> Ledger:
    """A ledger with ten planned rows for one goal."""
    fill_readers(store_url, 10, ["5k"])
    ledger = Ledger(store)
    ledger.plan(POST, ["5k"])
    return ledger


def claimed(ledger: Ledger, count: int):
    """A call of the first `count` sendable rows, claimed, not yet out."""
    return ledger.mark_in_flight(POST, ledger.peek(POST, "5k", count, 5, time.time()))


def states(ledger: Ledger) -> dict[str, int]:
    return {state: count for state, count in ledger.conn.execute(
        "SELECT state, COUNT(*) FROM deliveries GROUP BY state")}


def test_the_next_run_puts_back_the_unsent_calls_of_every_post_when_asked_for_all(ledger):
    claimed(ledger, 4)
    assert ledger.take_back_unsent() == 4 and states(ledger) == {"planned": 10}


def test_another_posts_unsent_call_is_left_alone(ledger):
    claimed(ledger, 4)
    assert ledger.take_back_unsent("another-post") == 0
    assert states(ledger) == {"in-flight": 4, "planned": 6}


def test_rows_of_a_call_that_went_out_are_in_doubt(ledger):
    assert ledger.call_goes_out(claimed(ledger, 4).call)
    assert ledger.count(POST, "in-flight") == 4


def test_the_next_run_puts_back_a_call_that_never_went_out_with_its_try(ledger):
    claimed(ledger, 4)  # and then the process was killed
    assert ledger.take_back_unsent(POST) == 4
    assert states(ledger) == {"planned": 10}
    assert ledger.conn.execute("SELECT MAX(attempts) FROM deliveries").fetchone()[0] == 0


def test_a_call_that_went_out_is_never_put_back(ledger):
    ledger.call_goes_out(claimed(ledger, 4).call)
    assert ledger.take_back_unsent(POST) == 0
    assert states(ledger) == {"in-flight": 4, "planned": 6}


def test_a_call_taken_back_by_another_run_may_not_go_out(ledger, store_url):
    claim = claimed(ledger, 4)
    with Store.open(store_url) as other:
        Ledger(other).take_back_unsent(POST)
    assert not ledger.call_goes_out(claim.call)


def test_putting_back_a_call_another_run_took_back_leaves_its_rows_to_that_run(ledger,
                                                                              store_url):
    claim = claimed(ledger, 4)
    with Store.open(store_url) as other:
        theirs = Ledger(other)
        theirs.take_back_unsent(POST)
        assert theirs.call_goes_out(theirs.mark_in_flight(
            POST, theirs.peek(POST, "5k", 4, 5, time.time())).call)
    ledger.unclaim(POST, claim.call)
    assert states(ledger) == {"in-flight": 4, "planned": 6}


def test_a_settled_call_leaves_no_trace_but_its_rows_without_an_answer(ledger):
    claim = claimed(ledger, 4)
    ledger.call_goes_out(claim.call)
    answered = sorted(claim.ids)[:3]
    ledger.record(POST, [Receipt(sid, ACCEPTED, provider_id="x") for sid in answered], {},
                  1.0, 60.0, time.time(), call=claim.call)
    assert ledger.conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 0
    assert states(ledger) == {"sent": 3, "in-flight": 1, "planned": 6}
    assert ledger.take_back_unsent(POST) == 0  # in doubt: it may have gone
