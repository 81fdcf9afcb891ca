"""The statements behind `publish --due` and `runletter due`: which readers a scheduled post
or a sequence should look at, their history in a sequence, the planned and skipped rows and
enrolments a decision writes, and the ledger's counts per item. The decisions themselves are
in `publisher.schedule.agenda`; this module only reads and writes rows.

Readers are read BATCH at a time and never all held: SQLite's cursor streams as it is read;
psycopg's would fetch the whole result, so PostgreSQL is read a page at a time by reader id.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import TextClause, text

from publisher.store.database import listing
from publisher.store.records import now

if TYPE_CHECKING:
    from publisher.store.store import Store

BATCH = 500
ENROLMENT_SLICE = 5000  # enrolments written per transaction
RECORD_SLICE = 500  # readers per statement of a decision's rows (well under bind limits)

_ENROLMENT_FIELDS = ("sequence", "id", "basis", "next_at", "waiting")


@functools.lru_cache(maxsize=8)
def _enrolling(rows: int) -> TextClause:
    """The upsert of `rows` enrolments in one statement (binds `sequence0`, `id0`, …)."""
    values = ", ".join("(" + ", ".join(f":{name}{i}" for name in _ENROLMENT_FIELDS) + ")"
                       for i in range(rows))
    return text("INSERT INTO enrolments(sequence, subscriber_id, basis, next_at, waiting) "
                f"VALUES {values} ON CONFLICT(sequence, subscriber_id) DO UPDATE SET "
                "basis = excluded.basis, next_at = excluded.next_at, waiting = excluded.waiting")


_SKIP = listing(
    "INSERT INTO deliveries(post, subscriber_id, email, goal, state, attempts, updated_at) "
    "SELECT :item, id, email, goal, 'skipped', 0, :stamp FROM subscribers "
    "WHERE id IN :ids ON CONFLICT DO NOTHING", "ids")
_PLAN = listing(
    "INSERT INTO deliveries(post, subscriber_id, email, goal, state, attempts, updated_at) "
    "SELECT :item, id, email, goal, 'planned', 0, :stamp FROM subscribers "
    "WHERE id IN :ids AND status = 'active' ON CONFLICT DO NOTHING", "ids")


def _joined(race: bool) -> tuple[str, str]:
    """The SQL for when a reader joined a sequence, and the condition that they did: a signup
    sequence counts from `enrolled_at` (NULL for a reader imported without --enrol, who is
    never in one); a race sequence needs a race date."""
    if race:
        return "COALESCE(s.consent_at, s.created_at)", "AND s.race_date IS NOT NULL "
    return "s.enrolled_at", "AND s.enrolled_at IS NOT NULL "


def _steps(sequence: str) -> dict[str, str]:
    """The binds for `_in_sequence`: "<slug>/" up to, not including, "<slug>0"."""
    return {"first": f"{sequence}/", "beyond": f"{sequence}0"}


class AgendaQueries:
    """The agenda's reads and writes over one Store (its connection and transactions)."""

    def __init__(self, store: Store):
        self.store = store
        self.conn = store.conn

    def _in_sequence(self, column: str) -> str:
        """SQL for "`column` is a step of a sequence", bound by `_steps`. SQLite compares
        text byte by byte, where '/' comes just before '0'; PostgreSQL compares by the
        database's collation, which may not (en_US ignores the '/') unless told "C"."""
        if self.store.dialect == "postgresql":
            column = f'{column} COLLATE "C"'
        return f"{column} >= :first AND {column} < :beyond"

    def _pages(self, sql: str, params: Mapping[str, Any]) -> Iterator[list[tuple]]:
        """The rows of a SELECT of readers (`s.id` first, a WHERE clause last, `:goals` a
        list), BATCH at a time."""
        if self.store.dialect == "sqlite":
            cursor = self.conn.execute(listing(sql, "goals"), params)
            while batch := cursor.fetchmany(BATCH):
                yield batch
            return
        paged = listing(f"{sql} AND s.id > :after ORDER BY s.id LIMIT {BATCH}", "goals")
        last = 0
        while batch := self.conn.execute(paged, {**params, "after": last}).fetchall():
            yield batch
            last = batch[-1][0]

    # -- readers to look at ----------------------------------------------------------------

    def unsent_readers(self, post: str, goals: Sequence[str]) -> Iterator[list[tuple]]:
        """Active readers of these goals with no ledger row for a post, in pages of
        (id, goal, timezone, signup)."""
        return self._pages(
            "SELECT s.id, s.goal, s.timezone, COALESCE(s.consent_at, s.created_at) "
            "FROM subscribers s WHERE s.status = 'active' AND s.goal IN :goals "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.post = :post "
            "AND d.subscriber_id = s.id)", {"goals": list(goals), "post": post})

    def unsent_times(self, post: str, goals: Sequence[str]) -> Iterator[list[tuple]]:
        """As `unsent_readers`, in pages of (id, timezone, signup)."""
        return self._pages(
            "SELECT s.id, s.timezone, COALESCE(s.consent_at, s.created_at) FROM "
            "subscribers s WHERE s.status = 'active' AND s.goal IN :goals AND "
            "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.post = :post AND "
            "d.subscriber_id = s.id)", {"goals": list(goals), "post": post})

    def candidates(self, sequence: str, race: bool, goals: Sequence[str], at: float,
                   fingerprint: str) -> Iterator[list[tuple]]:
        """Readers of a sequence (a race sequence when `race`) new to it, whose basis changed
        or whose time (`at`, a timestamp) has come, in pages of (id, goal, race_date,
        timezone, joined, basis)."""
        joined, only = _joined(race)
        return self._pages(
            f"SELECT s.id, s.goal, s.race_date, s.timezone, {joined}, e.basis "
            "FROM subscribers s "
            "LEFT JOIN enrolments e ON e.sequence = :sequence AND e.subscriber_id = s.id "
            f"WHERE s.status = 'active' AND s.goal IN :goals {only}"
            "AND (e.subscriber_id IS NULL OR e.next_at <= :at OR e.basis != "
            "COALESCE(s.race_date, '') || '|' || s.timezone || '|' || :fingerprint)",
            {"sequence": sequence, "goals": list(goals), "at": at, "fingerprint": fingerprint})

    def everyone(self, race: bool, goals: Sequence[str]) -> Iterator[list[tuple]]:
        """Every active reader of these goals who joined a sequence of this kind, in pages
        of (id, goal, race_date, timezone, joined)."""
        joined, only = _joined(race)
        return self._pages(
            f"SELECT s.id, s.goal, s.race_date, s.timezone, {joined} FROM subscribers s "
            f"WHERE s.status = 'active' AND s.goal IN :goals {only.strip()}",
            {"goals": list(goals)})

    def reader(self, subscriber_id: int) -> tuple | None:
        """One reader's (goal, race_date, timezone, signup, status, enrolled_at), or None."""
        return self.conn.execute(
            "SELECT goal, race_date, timezone, COALESCE(consent_at, created_at), status, "
            "enrolled_at FROM subscribers WHERE id = :id", {"id": subscriber_id}).fetchone()

    # -- a reader's history ----------------------------------------------------------------

    def step_rows(self, sequence: str, ids: Iterable[int]) -> list[tuple]:
        """These readers' ledger rows in a sequence: (id, step, state, sent_at)."""
        return self.conn.execute(listing(
            "SELECT subscriber_id, post, state, sent_at FROM deliveries WHERE "
            f"subscriber_id IN :ids AND {self._in_sequence('post')}", "ids"),
            {"ids": list(ids), **_steps(sequence)}).fetchall()

    def ready_rows(self, sequence: str, ids: Iterable[int]) -> list[tuple]:
        """These readers' "ready"s in a sequence: (id, step, at)."""
        return self.conn.execute(listing(
            "SELECT subscriber_id, step, at FROM ready WHERE subscriber_id IN "
            f":ids AND {self._in_sequence('step')}", "ids"),
            {"ids": list(ids), **_steps(sequence)}).fetchall()

    def has_row(self, item: str, subscriber_id: int) -> bool:
        """Whether the ledger has a row for this reader and item."""
        return self.conn.execute(
            "SELECT 1 FROM deliveries WHERE post = :item AND subscriber_id = :id",
            {"item": item, "id": subscriber_id}).fetchone() is not None

    def is_enrolled(self, sequence: str, subscriber_id: int) -> bool:
        """Whether a run has timed this reader in a sequence."""
        return self.conn.execute(
            "SELECT 1 FROM enrolments WHERE sequence = :sequence AND subscriber_id = :id",
            {"sequence": sequence, "id": subscriber_id}).fetchone() is not None

    # -- writing a decision ----------------------------------------------------------------

    def unskip(self, pairs: Iterable[tuple[int, str]]) -> None:
        """Delete the skipped rows of these (reader, sequence) pairs, in one transaction."""
        with self.store.transaction() as conn:
            for subscriber_id, sequence in pairs:
                conn.execute("DELETE FROM deliveries WHERE subscriber_id = :id AND "
                             f"{self._in_sequence('post')} AND state = 'skipped'",
                             {"id": subscriber_id, **_steps(sequence)})

    def record(self, item: str, skip: Iterable[int], plan: Iterable[int]) -> None:
        """In one transaction, a row for an item marked skipped for the `skip` readers and
        planned for the `plan` ones still active (a row already there stays as it is): one
        statement per RECORD_SLICE readers, not one per reader."""
        stamp = now()
        skip, plan = list(skip), list(plan)
        with self.store.transaction() as conn:
            for statement, ids in ((_SKIP, skip), (_PLAN, plan)):
                for start in range(0, len(ids), RECORD_SLICE):
                    conn.execute(statement, {"item": item, "stamp": stamp,
                                             "ids": ids[start:start + RECORD_SLICE]})
        self.store.analyze(("deliveries", "subscribers"), written=len(skip) + len(plan))

    def enrol(self, rows: Sequence[tuple[str, int, str, float | None, str | None]]) -> None:
        """Write enrolments, (sequence, reader, basis, next_at, waiting), ENROLMENT_SLICE
        to a transaction and RECORD_SLICE to a statement (a reader given twice: the last)."""
        rows = list({(row[0], row[1]): row for row in rows}.values())
        for start in range(0, len(rows), ENROLMENT_SLICE):
            with self.store.transaction() as conn:
                part = rows[start:start + ENROLMENT_SLICE]
                for at in range(0, len(part), RECORD_SLICE):
                    chunk = part[at:at + RECORD_SLICE]
                    conn.execute(_enrolling(len(chunk)), {
                        f"{name}{i}": value for i, row in enumerate(chunk)
                        for name, value in zip(_ENROLMENT_FIELDS, row, strict=True)})

    # -- counts ----------------------------------------------------------------------------

    def count_in_flight(self, item: str) -> int:
        """Rows of an item left in flight."""
        return self.conn.execute("SELECT COUNT(*) FROM deliveries WHERE post = :item AND "
                                 "state = 'in-flight'", {"item": item}).fetchone()[0]

    def has_unsettled(self, item: str) -> bool:
        """Whether an item has rows still to send (planned, or failed and to be tried again)."""
        return self.conn.execute(
            "SELECT 1 FROM deliveries WHERE post = :item AND state IN ('planned', 'failed') "
            "LIMIT 1", {"item": item}).fetchone() is not None

    def count_unsent(self, item: str) -> int:
        """How many rows of an item are still to send."""
        return self.conn.execute("SELECT COUNT(*) FROM deliveries WHERE post = :item AND "
                                 "state IN ('planned', 'failed')", {"item": item}).fetchone()[0]

    def states(self, item: str) -> Counter:
        """An item's ledger rows counted by state."""
        return Counter(dict(self.conn.execute(
            "SELECT state, COUNT(*) FROM deliveries WHERE post = :item GROUP BY state",
            {"item": item}).fetchall()))

    def waiting(self, sequence: str) -> Counter:
        """Active readers waiting at each gated step of a sequence."""
        return Counter(dict(self.conn.execute(
            "SELECT waiting, COUNT(*) FROM enrolments e JOIN subscribers s ON s.id = "
            "e.subscriber_id WHERE e.sequence = :sequence AND e.waiting IS NOT NULL AND "
            "s.status = 'active' GROUP BY waiting", {"sequence": sequence}).fetchall()))


__all__ = ["BATCH", "RECORD_SLICE", "AgendaQueries"]
