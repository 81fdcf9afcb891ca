"""The readers' list, and so `subscribers export`: one order on SQLite and PostgreSQL, page by
page, each page read from an index in that order (never a sort of every reader after it), and
migration 0011, which gives PostgreSQL that index (SQLite's unique NOCASE index has it)."""

from __future__ import annotations

import csv
import io
import re

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from publisher.store import Store, restore_cell
from publisher.store.tables import metadata
from publisher.store.upgrade import HEAD
from tests.helpers.support import punctuation_last, sqlite_only
from tests.samples import ON_BOTH_BACKENDS

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets

# Local parts whose order the database's collation and "C" disagree on: case, '_' '-' '.'
# '+' and digits, at the start, the middle and the end.
LOCALS = ("a", "A_c", "a-z", "a.b", "aa", "AB", "a+tag", "a0", "a9", "Z", "z_", "z-", "z.x",
          "_lead", "-lead", "0zero", "MiXeD.Case_1", "mixed.case-2", "mixed.case.3", "b__b",
          "b--b", "b.b.b", "B-b", "b_B")
ADDRESSES = [f"{local}@example.com" for local in LOCALS]
INDEX = "subscribers_email_c"  # migration 0011's, PostgreSQL only


def nocase(address: str) -> bytes:
    """SQLite's NOCASE order of an ASCII address: its bytes with A-Z folded to a-z."""
    return address.lower().encode()


def page_statements(store: Store, monkeypatch, **filters: str) -> list[tuple[str, dict]]:
    """The statements, with their parameters, that store.list sends for its first two pages."""
    sent, execute = [], store.conn.execute

    def keep(sql, params=None):
        sent.append((sql, dict(params or {})))
        return execute(sql, params)

    with monkeypatch.context() as patch:  # not undo(): that would take the fixtures' too
        patch.setattr(store.conn, "execute", keep)
        list(store.list(batch_size=2, **filters))
    return sent[:2]


def plan_of(store: Store, sql: str, params: dict) -> tuple[set[str], bool]:
    """The indexes a statement's plan reads, and whether it sorts. PostgreSQL is told to
    avoid sorts, so it sorts only if no index has the statement's order: on a table this
    small it would rightly sort rather than read 1,000 rows through an index."""
    if store.dialect == "sqlite":
        details = [row[-1] for row in store.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        return ({m.group(1) for d in details for m in [re.search(r"USING INDEX (\w+)", d)]
                 if m}, any("TEMP B-TREE" in d for d in details))
    store.conn.execute("SET enable_sort = off")
    (plan,) = store.conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()
    return postgresql_plan(plan)


def postgresql_plan(plan: list) -> tuple[set[str], bool]:
    """The indexes a PostgreSQL plan (EXPLAIN's JSON) reads, and whether it sorts."""
    nodes, indexes, sorts = [plan[0]["Plan"]], set(), False
    while nodes:
        node = nodes.pop()
        indexes |= {node["Index Name"]} if "Index Name" in node else set()
        sorts = sorts or "Sort" in node["Node Type"]
        nodes += node.get("Plans", [])
    return indexes, sorts


def many_readers(store: Store, count: int) -> None:
    """`count` readers, out of address order, added in one statement and never ANALYZEd: the
    planner knows only the table's size."""
    if store.dialect == "sqlite":
        store.conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
            "INSERT INTO subscribers(email, status, created_at, updated_at) "
            "SELECT 'R' || ((i * 7919) % :count) || '_x@example.com', 'active', 'now', 'now' "
            "FROM n", {"count": count})
        return
    store.conn.execute(
        "INSERT INTO subscribers(email, status, created_at, updated_at) "
        "SELECT 'R' || ((i * 7919) % :count) || '_x@example.com', 'active', 'now', 'now' "
        "FROM generate_series(1, :count) AS i", {"count": count})


# -- one order, page by page ---------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 1000])
def test_the_list_pages_through_addresses_in_ascii_folded_order_whatever_the_page_size(
        store, batch_size):
    punctuation_last(store)  # PostgreSQL's collation, too, disagrees with that order
    for address in reversed(ADDRESSES):
        store.add(address)
    assert [s.email for s in store.list(batch_size=batch_size)] == sorted(ADDRESSES,
                                                                           key=nocase)


def test_a_filtered_list_pages_in_the_same_order(store):
    punctuation_last(store)
    for n, address in enumerate(ADDRESSES):
        store.add(address, goal="5k" if n % 3 else "half")
    assert [s.email for s in store.list(goal="5k", status="active", batch_size=2)] == sorted(
        (a for n, a in enumerate(ADDRESSES) if n % 3), key=nocase)


def test_an_export_writes_the_readers_in_the_lists_order(store):
    punctuation_last(store)
    for address in ADDRESSES:
        store.add(address)
    out = io.StringIO()
    store.export_csv(out)
    exported = [restore_cell(row[0]) for row in csv.reader(io.StringIO(out.getvalue()))][1:]
    assert exported == sorted(ADDRESSES, key=nocase)


# -- each page from an index -----------------------------------------------------------------


def test_the_first_and_each_following_page_are_read_from_the_email_index_without_a_sort(
        store, monkeypatch):
    many_readers(store, 20_000)
    first, following = page_statements(store, monkeypatch)
    expected = {INDEX} if store.dialect == "postgresql" else {"sqlite_autoindex_subscribers_1"}
    for sql, params in (first, following):
        assert plan_of(store, sql, {**params, "limit": 1000}) == (expected, False), sql


@sqlite_only("PostgreSQL chooses a filtered page's index by its statistics")
def test_a_page_of_one_status_is_read_from_the_email_index_without_a_sort(store, monkeypatch):
    many_readers(store, 20_000)
    first, following = page_statements(store, monkeypatch, status="active")
    for sql, params in (first, following):
        assert plan_of(store, sql, {**params, "limit": 1000}) == (
            {"sqlite_autoindex_subscribers_1"}, False), sql


def test_the_pages_use_the_email_index_when_postgresql_plans_them_once_for_any_address(
        store, monkeypatch):
    if store.dialect == "sqlite":
        pytest.skip("PostgreSQL's generic plans of prepared statements")
    many_readers(store, 20_000)
    _, (sql, params) = page_statements(store, monkeypatch)
    names = list(params)
    # As psycopg prepares a statement run often: parameters of no declared type.
    store.conn.raw("PREPARE page AS " + re.sub(
        r":(\w+)", lambda m: f"${names.index(m.group(1)) + 1}", sql))
    store.conn.execute("SET plan_cache_mode = force_generic_plan")
    store.conn.execute("SET enable_sort = off")
    values = {**params, "limit": 1000}
    literals = ", ".join(str(v) if isinstance(v, int) else "'" + v.replace("'", "''") + "'"
                         for v in (values[name] for name in names))
    (plan,) = store.conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE page({literals})").fetchone()
    assert postgresql_plan(plan) == ({INDEX}, False)


# -- the schema ----------------------------------------------------------------------------


def test_postgresql_has_the_email_index_in_c_order_and_sqlite_none_besides_its_unique_one(
        store):
    if store.dialect == "postgresql":
        definition = store.conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                        ":name", {"name": INDEX}).scalar()
        assert definition.endswith('(email COLLATE "C")')
    else:
        assert store.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' "
                                  "AND tbl_name = 'subscribers' AND sql LIKE '%email%'"
                                  ).scalar() == 0


@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression")
def test_the_migrated_schema_is_the_one_tables_declares_for_its_database(store):
    # An index of one database only is left to the test above: Alembic would also compare
    # its columns without their collation.
    one_database = {index.name for table in metadata.tables.values()
                    for index in table.indexes if "dialects" in index.info}

    def included(_item, name, kind, _reflected, _compare_to) -> bool:
        return not (kind == "index" and name in one_database)

    context = MigrationContext.configure(store.conn.sqlalchemy,
                                         opts={"include_object": included})
    assert compare_metadata(context, metadata) == []


def test_upgrading_a_store_at_version_10_gives_postgresql_the_email_index(store_url):
    with Store.open(store_url) as store:
        store.add("kept@example.com")
        store.conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
        store.conn.execute("UPDATE alembic_version SET version_num = '0010'")
    with Store.open(store_url) as store:
        assert store.schema_version == int(HEAD) == 12
        assert [s.email for s in store.list()] == ["kept@example.com"]
        indexes = store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'" if store.dialect == "sqlite"
            else "SELECT indexname FROM pg_indexes WHERE tablename = 'subscribers'").scalars()
        assert (INDEX in set(indexes)) == (store.dialect == "postgresql")
