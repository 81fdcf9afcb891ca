"""A large plan leaves PostgreSQL's planner statistics current, so the publish that follows
is not planned for the table as it was before the plan (empty, to the planner)."""

from __future__ import annotations

import pytest

from publisher.store import Store
from publisher.store.ledger import Ledger
from tests.helpers.support import fill_readers
from tests.samples import HIP_DRIVE as POST


def analyzed(store: Store) -> bool:
    """Whether the deliveries table has been ANALYZEd by hand (not by autovacuum)."""
    return store.conn.execute("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                              "WHERE relname = 'deliveries'").scalar()


@pytest.mark.parametrize(("readers", "expected"), [(40, True), (39, False)])
def test_a_plan_of_at_least_the_threshold_analyzes_the_ledger(postgres_url, monkeypatch,
                                                               readers, expected):
    monkeypatch.setattr("publisher.store.store.ANALYZE_AFTER", 40)
    fill_readers(postgres_url, readers, ["marathon"])
    with Store.open(postgres_url) as store:
        assert Ledger(store).plan(POST, ["marathon"]) == readers
        assert analyzed(store) is expected


def test_a_plan_small_beside_what_the_ledger_holds_leaves_the_statistics_to_autovacuum(
        postgres_url, monkeypatch):
    monkeypatch.setattr("publisher.store.store.ANALYZE_AFTER", 10)
    fill_readers(postgres_url, 200, ["marathon", "ultra"])
    with Store.open(postgres_url) as store:
        store.conn.execute("INSERT INTO deliveries(post, subscriber_id, email, goal, state, "
                           "attempts, updated_at) SELECT 'p' || n, s.id, s.email, s.goal, "
                           "'sent', 1, 'now' FROM subscribers s, generate_series(1, 30) n")
        store.analyze(("deliveries",))  # the planner counts 6,000 rows
        store.conn.execute("SELECT pg_stat_reset()")
        assert Ledger(store).plan(POST, ["ultra"]) == 100  # under a tenth of them
        assert not analyzed(store)
        assert Ledger(store).plan("a-larger-plan", ["marathon", "ultra"]) == 200
        assert not analyzed(store)  # 200 < 600 still
