"""The agenda's statements in the store (publisher/store/agenda.py) on both backends: readers
read a page at a time, a sequence's rows told apart from a longer slug's, lists bound as
lists (an empty one too), and what a decision writes."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import event

from publisher.store import Store
from publisher.store import agenda as queries_module
from publisher.store.agenda import AgendaQueries
from tests.samples import ON_BOTH_BACKENDS

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets


def readers(store: Store, count: int, goal: str = "5k", race: str | None = None) -> list[int]:
    """Add `count` readers of one goal; their ids."""
    return [store.add(f"r{goal}{i}@example.com", goal=goal, race_date=race).id
            for i in range(count)]


def ids(pages) -> list[int]:
    """The reader ids of every page, in order read."""
    return sorted(row[0] for page in pages for row in page)


def test_readers_are_read_a_page_at_a_time_and_every_one_is_read(store, monkeypatch):
    monkeypatch.setattr(queries_module, "BATCH", 2)
    added = readers(store, 5)
    pages = list(AgendaQueries(store).unsent_readers("a-post", ["5k", "10k"]))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert ids(pages) == added


def test_an_empty_goal_list_finds_no_one(store):
    readers(store, 2)
    queries = AgendaQueries(store)
    assert ids(queries.unsent_readers("a-post", [])) == []
    assert ids(queries.everyone(False, [])) == []


def test_a_readers_post_row_takes_them_out_of_the_unsent(store):
    first, second = readers(store, 2)
    queries = AgendaQueries(store)
    queries.record("a-post", skip=[], plan=[first])
    assert ids(queries.unsent_readers("a-post", ["5k"])) == [second]
    assert [row[0] for page in queries.unsent_times("a-post", ["5k"]) for row in page] == [second]
    assert queries.has_row("a-post", first) and not queries.has_row("a-post", second)


def test_a_sequences_rows_are_its_own_and_not_a_longer_slugs(store):
    (sid,) = readers(store, 1)
    queries = AgendaQueries(store)
    for item in ("race/01-start", "race/02-next", "race-plan/01-start", "race0", "racex/01"):
        queries.record(item, skip=[sid], plan=[])
    assert sorted(r[1] for r in queries.step_rows("race", [sid])) == ["race/01-start",
                                                                     "race/02-next"]
    assert [r[2] for r in queries.step_rows("race", [sid])] == ["skipped", "skipped"]
    queries.unskip([(sid, "race")])
    assert queries.step_rows("race", [sid]) == []
    assert len(queries.step_rows("race-plan", [sid])) == 1


def test_ready_rows_are_read_per_sequence(store):
    (sid,) = readers(store, 1)
    assert store.mark_ready(sid, "race/01-start")
    assert store.mark_ready(sid, "race-plan/01-start")
    found = AgendaQueries(store).ready_rows("race", [sid])
    assert [(r[0], r[1]) for r in found] == [(sid, "race/01-start")]


def test_planned_rows_only_for_active_readers_and_an_existing_row_stays(store):
    active, paused = readers(store, 2)
    store.set_status(paused, "unsubscribed", "test")
    queries = AgendaQueries(store)
    queries.record("a-post", skip=[], plan=[active, paused])
    assert queries.states("a-post") == Counter(planned=1)
    queries.record("a-post", skip=[active, paused], plan=[])
    assert queries.states("a-post") == Counter(planned=1, skipped=1)
    assert queries.count_unsent("a-post") == 1 and queries.has_unsettled("a-post")
    assert queries.count_in_flight("a-post") == 0
    assert not queries.has_unsettled("other-post")


@pytest.fixture
def inserts(store):
    """Each INSERT the store runs, as (table, executemany)."""
    seen: list[tuple[str, bool]] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO "):
            seen.append((statement.split()[2].split("(")[0], executemany))

    event.listen(store.conn.engine, "before_cursor_execute", note)
    yield seen
    event.remove(store.conn.engine, "before_cursor_execute", note)


def test_a_decisions_rows_are_written_a_slice_of_readers_per_statement(store, inserts,
                                                                       monkeypatch):
    monkeypatch.setattr(queries_module, "RECORD_SLICE", 2)
    planned, skipped = readers(store, 5), readers(store, 3, goal="10k")
    inserts.clear()
    AgendaQueries(store).record("a-post", skip=skipped, plan=planned)
    assert inserts == [("deliveries", False)] * 5  # skipped in 2 + 1, planned in 2 + 2 + 1
    assert AgendaQueries(store).states("a-post") == Counter(planned=5, skipped=3)


def test_enrolments_are_written_a_slice_of_readers_per_statement(store, inserts, monkeypatch):
    monkeypatch.setattr(queries_module, "RECORD_SLICE", 2)
    added = readers(store, 5, race="2027-06-06")
    inserts.clear()
    AgendaQueries(store).enrol([("race", sid, "b", None if sid % 2 else 1.5, None)
                                for sid in added])
    assert inserts == [("enrolments", False)] * 3
    assert ids(AgendaQueries(store).candidates("race", True, ["5k"], 1.0, "x")) == added


def test_a_reader_enrolled_twice_in_one_write_keeps_the_last(store):
    (sid,) = readers(store, 1, race="2027-06-06")
    queries = AgendaQueries(store)
    queries.enrol([("race", sid, "b", None, "race/01"), ("race", sid, "b", None, "race/02")])
    assert queries.waiting("race") == Counter({"race/02": 1})


def test_enrolments_are_written_over_and_counted_at_their_gate(store):
    first, second = readers(store, 2, race="2027-06-06")
    queries = AgendaQueries(store)
    assert not queries.is_enrolled("race", first)
    basis = "2027-06-06||b1"  # race date | zone | the sequence's fingerprint
    queries.enrol([("race", first, basis, 10.0, None), ("race", second, basis, None, "race/01")])
    assert queries.is_enrolled("race", first)
    assert queries.waiting("race") == Counter({"race/01": 1})
    queries.enrol([("race", first, basis, None, "race/01")])
    assert queries.waiting("race") == Counter({"race/01": 2})
    # A reader is looked at again once their time comes, or their basis changes.
    assert ids(queries.candidates("race", True, ["5k"], 5.0, "b1")) == []
    assert ids(queries.candidates("race", True, ["5k"], 5.0, "b2")) == [first, second]


@pytest.mark.parametrize("race", [True, False])
def test_who_joined_a_sequence_depends_on_its_anchor(store, race):
    (dated,) = readers(store, 1, goal="5k", race="2027-06-06")
    (undated,) = readers(store, 1, goal="10k")
    found = ids(AgendaQueries(store).everyone(race, ["5k", "10k"]))
    assert found == ([dated] if race else [dated, undated])  # store.add enrols in signup ones
    assert AgendaQueries(store).reader(dated)[1] == "2027-06-06"
    assert AgendaQueries(store).reader(10_000) is None
