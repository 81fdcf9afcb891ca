"""A reader's "I'm ready for the next phase" at a gated sequence step, as Store methods
(mixed in, built on its public methods): the step after a gate waits until the reader says so
through their signed link."""

from __future__ import annotations

from publisher.store.records import Subscriber, now


class ReadySteps:
    """Store methods for the `ready` table; they build on Store's public methods
    (transaction, by_id, write_audit, conn), which `store` defines."""

    def mark_ready(self, subscriber_id: int, step: str) -> bool:
        """Record that an active reader is ready after `step` ("<sequence>/<stem>"), audit it
        and make their enrolment in that sequence due now; False when already recorded (or
        the reader is gone or not active), and then nothing changes."""
        with self.transaction() as conn:
            reader: Subscriber | None = self.by_id(subscriber_id)
            # Only an active reader: an audit row on a paused one would end the pause's
            # resumability (it is read from the last audit row).
            if reader is None or reader.status != "active":
                return False
            stamp = now()
            added = conn.execute("INSERT INTO ready(subscriber_id, step, at) "
                                 "VALUES (:id, :step, :at) ON CONFLICT DO NOTHING",
                                 {"id": reader.id, "step": step, "at": stamp}).rowcount
            if not added:
                return False
            self.write_audit(reader.id, reader.email, reader.status, reader.status,
                        f"ready after {step}", stamp)
            # next_at 0 puts the reader first in the next `publish --due` run's look.
            conn.execute("UPDATE enrolments SET next_at = 0 WHERE sequence = :sequence AND "
                         "subscriber_id = :id", {"sequence": step.partition("/")[0],
                                                 "id": reader.id})
        return True

    def ready_at(self, subscriber_id: int, step: str) -> str | None:
        """When the reader said they were ready after `step` (ISO 8601 UTC), or None."""
        row = self.conn.execute("SELECT at FROM ready WHERE subscriber_id = :id AND "
                                "step = :step", {"id": subscriber_id, "step": step}).fetchone()
        return row[0] if row else None


__all__ = ["ReadySteps"]
