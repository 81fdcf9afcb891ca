"""What one provider call costs the store: the same few statements whatever the call's size,
and work that does not grow with the post's list (a statement that walked the post's rows
each call made a 1M-reader publish quadratic)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event

from publisher.delivery.providers.base import ACCEPTED, Receipt
from publisher.delivery.providers.outbox import OutboxProvider
from publisher.delivery.send import send_post
from publisher.render.email import EmailRenderer
from publisher.store import Store
from publisher.store.ledger import Ledger
from tests.helpers.support import fill_readers
from tests.samples import HIP_DRIVE as POST
from tests.samples import ON_BOTH_BACKENDS

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets


@contextmanager
def statements_run(store: Store) -> Iterator[list[tuple[str, object]]]:
    """Every statement the store's connection sends meanwhile, an executemany counted once
    per parameter set (the server runs each)."""
    seen: list[tuple[str, object]] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        for params in (parameters if executemany else [parameters]):
            seen.append((statement, params))

    engine = store.conn.sqlalchemy.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def calls_of(size: int) -> type[OutboxProvider]:
    """The outbox, taking at most `size` readers a call."""
    return type(f"Outbox{size}", (OutboxProvider,), {"name": "outbox", "max_batch": size})


def statements_per_publish(pipeline, size: int) -> tuple[int, int]:
    """(statements, calls) of a whole publish of the sample in calls of `size`."""
    project, resolved, addresser, ledger, store = pipeline
    with calls_of(size)(project.config, addresser, {"path": ""}) as provider, \
            statements_run(store) as seen:
        outcome = send_post(resolved, ledger, provider, EmailRenderer(project.config),
                            addresser)
    assert sum(outcome.sent.values()) == 59
    return len(seen), outcome.batches


def test_each_call_costs_the_same_few_statements_whatever_its_size(pipeline):
    small, small_calls = statements_per_publish(pipeline, 2)
    pipeline[3].conn.execute("DELETE FROM deliveries")
    pipeline[3].plan(POST, [g.slug for g in pipeline[1].audience])
    large, large_calls = statements_per_publish(pipeline, 12)
    assert small_calls > large_calls
    per_call = (small - large) / (small_calls - large_calls)
    # A read (two at a goal's end); the settle of one call and the claim of the next in one
    # transaction: BEGIN, the settle, the settled call's row gone, the next call's row and
    # its mark, COMMIT; then the call turned 'out' just before it goes: BEGIN, one, COMMIT.
    assert per_call <= 11, (small, small_calls, large, large_calls)


# -- work per call against the post's size ------------------------------------------------


def work_of(store: Store, action: Callable[[], object]) -> int:
    """What `action`'s statements cost the database: PostgreSQL's buffers touched by each
    (each statement run again under EXPLAIN ANALYZE, rolled back), SQLite's virtual machine
    steps (counted in thousands by a progress handler)."""
    raw = store.conn.sqlalchemy.connection.dbapi_connection
    if store.dialect == "sqlite":
        ticks = [0]

        def tick() -> int:
            ticks[0] += 1
            return 0

        raw.set_progress_handler(tick, 1000)
        try:
            action()
        finally:
            raw.set_progress_handler(None, 1000)
        return ticks[0]
    with statements_run(store) as seen:
        with store.transaction():
            action()
            store.conn.rollback_quietly()
    touched = 0
    for statement, params in seen:
        if not statement.lstrip().upper().startswith(("SELECT", "UPDATE", "WITH")):
            continue
        with raw.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params)
            [plan] = cursor.fetchone()[0]
        raw.rollback()
        top = plan["Plan"]
        touched += top["Shared Hit Blocks"] + top["Shared Read Blocks"]
    return touched


def one_call_late_in(store: Store, post: str, goal: str) -> int:
    """The work of one 100-reader call (read it, settle the call before, mark it) late in
    a post: all but its last 300 rows already sent."""
    ledger = Ledger(store)
    ledger.plan(post, [goal])
    store.conn.execute("UPDATE deliveries SET state = 'sent' WHERE post = :post", {"post": post})
    store.conn.execute("UPDATE deliveries SET state = 'planned' WHERE post = :post AND "
                       "subscriber_id IN (SELECT subscriber_id FROM deliveries WHERE post = "
                       ":post ORDER BY subscriber_id DESC LIMIT 300)", {"post": post})
    previous = ledger.claim(post, goal, 100, 5, 0.0)

    def call() -> None:
        # Past the last row read, as a run reads them.
        upcoming = ledger.peek(post, goal, 100, 5, 0.0, max(d.subscriber_id for d in previous))
        receipts = [Receipt(d.subscriber_id, ACCEPTED, provider_id="x") for d in previous]
        marked = ledger.record(post, receipts, {}, 1.0, 60.0, 0.0, then_mark=upcoming)
        assert len(marked.ids) == 100

    return work_of(store, call)


def test_a_call_late_in_a_long_post_costs_what_it_costs_in_a_short_one(store, store_url):
    fill_readers(store_url, 12_600, ["short"] + ["long"] * 20)  # 600 short, 12,000 long
    short = one_call_late_in(store, "short-post", "short")
    long = one_call_late_in(store, "long-post", "long")
    # Walking the post's rows would cost the long post about 20 times the short one's.
    assert long <= 2 * short + 50, json.dumps({"short": short, "long": long})
