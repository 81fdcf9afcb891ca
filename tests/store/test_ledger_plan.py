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
