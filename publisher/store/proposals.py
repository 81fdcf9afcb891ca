"""Details a signup proposes for an address already on the list (name, goal, race, time
zone): kept aside, one row per signup, and applied only when the confirmation link of that
signup moves the reader to active, so a stranger's form never rewrites a reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from publisher.store.records import (
    check_goal,
    check_name,
    check_race_date,
    check_race_name,
    check_timezone,
    now,
)

if TYPE_CHECKING:
    from publisher.store.records import Subscriber

KEPT = 10  # a reader's newest proposals kept: older links find theirs gone and change nothing


class Proposals:
    """Store methods for proposed details (mixed into Store, built on its public methods:
    transaction, conn)."""

    def propose(self, subscriber_id: int, *, goal: str, first_name: str = "",
                race_date: str | None = None, race_name: str = "",
                timezone: str = "") -> int:
        """Keep a signup's details for a stored reader, unapplied; the proposal's id, for
        the confirmation link of that signup to name. "" for the time zone keeps theirs."""
        values = {"first_name": check_name(first_name), "goal": check_goal(goal),
                  "race_date": check_race_date(race_date),
                  "race_name": check_race_name(race_name),
                  "timezone": check_timezone(timezone)}
        with self.transaction() as conn:
            proposal = conn.execute(
                "INSERT INTO proposals(subscriber_id, first_name, goal, race_date, race_name, "
                "timezone, created_at) VALUES (:id, :first_name, :goal, :race_date, "
                ":race_name, :timezone, :at) RETURNING id",
                {"id": subscriber_id, **values, "at": now()}).scalar_one()
            conn.execute("DELETE FROM proposals WHERE subscriber_id = :id AND id NOT IN "
                         "(SELECT id FROM proposals WHERE subscriber_id = :id "
                         "ORDER BY id DESC LIMIT :kept)", {"id": subscriber_id, "kept": KEPT})
        return proposal

    def proposals_of(self, subscriber_id: int) -> int:
        """How many proposals wait for a reader."""
        return self.conn.execute("SELECT COUNT(*) FROM proposals WHERE subscriber_id = :id",
                                 {"id": subscriber_id}).fetchone()[0]

    def apply_proposal(self, reader: Subscriber, proposal: int | None) -> None:
        """In the caller's transaction, as the reader becomes active: apply the proposal
        their link names (when it is theirs and still kept) and drop all of theirs."""
        row = None if proposal is None else self.conn.execute(
            "SELECT first_name, goal, race_date, race_name, timezone FROM proposals "
            "WHERE id = :proposal AND subscriber_id = :id",
            {"proposal": proposal, "id": reader.id}).fetchone()
        if row is not None:
            first_name, goal, race_date, race_name, timezone = row
            self.conn.execute(
                "UPDATE subscribers SET first_name = :first_name, goal = :goal, "
                "race_date = :race_date, race_name = :race_name, timezone = :timezone, "
                "updated_at = :at WHERE id = :id",
                {"first_name": first_name, "goal": goal, "race_date": race_date,
                 "race_name": race_name, "timezone": timezone or reader.timezone, "at": now(),
                 "id": reader.id})
        self.conn.execute("DELETE FROM proposals WHERE subscriber_id = :id", {"id": reader.id})
