"""A whole store copied to another (`runletter db copy`): every table in `tables.COPY_ORDER`
read from one snapshot of the source and written, ids kept, in one transaction on the target,
a page at a time, so memory stays flat however many rows there are and a failure leaves the
target as it was."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from publisher.errors import Finding, RunletterError
from publisher.store.database import Connection, first_line
from publisher.store.tables import COPY_ORDER

if TYPE_CHECKING:
    from publisher.store.store import Store

PAGE = 5000  # rows fetched from the source at a time
# Tables whose id PostgreSQL hands out from a sequence.
SEQUENCED = ("subscribers", "audit", "calls")


def row_counts(conn: Connection) -> dict[str, int]:
    """Rows per table, in COPY_ORDER, of the tables the store has."""
    present = conn.table_names()
    return {table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in COPY_ORDER if table.name in present}


@contextmanager
def snapshot(conn: Connection) -> Iterator[None]:
    """A read-only transaction: every table read inside it as of one moment (and PostgreSQL's
    server-side cursors need a transaction to live in)."""
    conn.raw("BEGIN" if conn.dialect == "sqlite"
             else "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    try:
        yield
    finally:
        conn.rollback_quietly()  # nothing was written


def _rows(conn: Connection, table: Table) -> Iterator[tuple]:
    """A table's rows in primary-key order, fetched a page at a time."""
    query = select(table).order_by(*table.primary_key.columns)
    for row in conn.execute(query.execution_options(yield_per=PAGE)):
        yield tuple(row)


def _as_mappings(table: Table, rows: Iterator[tuple]) -> Iterator[dict]:
    """Each row as {column: value}, the parameters of the table's INSERT."""
    names = [column.name for column in table.columns]
    for row in rows:
        yield dict(zip(names, row, strict=True))


def copy_rows(source: Store, target: Store, replace: bool,
              progress: Callable[[str, int], None]) -> dict[str, int]:
    """Copy every table of source into target (its rows deleted first when `replace`), in
    one transaction on the target; the source's counts per table, read in the same snapshot.
    `progress(table, rows)` is called as each table starts."""
    with snapshot(source.conn):
        counts = row_counts(source.conn)
        with target.transaction() as conn:
            if replace:
                for table in reversed(COPY_ORDER):
                    conn.execute(table.delete())
            for table in COPY_ORDER:
                progress(table.name, counts[table.name])
                try:
                    conn.executemany(insert(table),
                                     _as_mappings(table, _rows(source.conn, table)))
                # ValueError: a value the source's column type cannot read back.
                except (SQLAlchemyError, ValueError) as exc:
                    raise RunletterError(Finding(
                        target.shown, None, f"copying {table.name} failed, so nothing was "
                        f"copied: {first_line(exc)}")) from None
            if target.dialect == "postgresql":
                _restart_sequences(conn)
    return counts


def _restart_sequences(conn: Connection) -> None:
    """Point each id sequence past the copied ids, so the next reader or audit row added
    gets a new id instead of colliding with a copied one."""
    for name in SEQUENCED:
        conn.execute(f"SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                     f"COALESCE((SELECT MAX(id) FROM {name}), 0) + 1, false)", {"table": name})
