"""What readers do through their own links, and what providers report about them: the rules
of each status change, as methods of `Store` (mixed in), each in one transaction.

The pause model: the statuses are fixed and every sending path skips anyone not active, so
a pause is not a status of its own. A paused reader is `unsubscribed`, and the audit row of
that change has a reason starting with "paused"; resuming is possible until a later change.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from ..errors import RunletterError

if TYPE_CHECKING:
    from .records import AuditEntry, Subscriber

LEFT = frozenset({"unsubscribed", "bounced", "complained"})  # readers who chose or had to go
JOINED = ("active", "pending")
# A status only moves towards the stronger one: a complaint is never turned into a bounce.
RANK = {"pending": 0, "active": 0, "unsubscribed": 1, "bounced": 2, "complained": 3}
PAUSED = "paused"


class ReaderChanges:
    """Store methods for the reader endpoints: confirm, unsubscribe, pause, resume, change
    goal, a provider's report, and the two small tables of `runletter serve`. They build
    on Store's own (get, set_status, update, transaction), which `readers` defines."""

    # -- reading --------------------------------------------------------------------------

    def by_id(self, subscriber_id: int) -> Subscriber | None:
        """The reader with this id, or None."""
        return self._get_id(subscriber_id)

    def last_change(self, subscriber_id: int) -> AuditEntry | None:
        """The reader's most recent audit row, or None."""
        from .records import AuditEntry

        row = self.conn.execute(
            "SELECT subscriber_id, email, old_status, new_status, reason, at FROM audit "
            "WHERE subscriber_id = ? ORDER BY id DESC LIMIT 1", (subscriber_id,)).fetchone()
        return AuditEntry(*row) if row else None

    def is_paused(self, reader: Subscriber) -> bool:
        """True when the reader is unsubscribed by a pause they can still resume."""
        if reader.status != "unsubscribed":
            return False
        last = self.last_change(reader.id)
        return last is not None and last.reason.startswith(PAUSED)

    def left_since(self, reader: Subscriber, issued: float) -> bool:
        """True when the reader left the list (unsubscribed, bounced, complained) after the
        unix time `issued`: a confirmation link from before then must not bring them back."""
        if reader.status not in LEFT:
            return False
        last = self.last_change(reader.id)
        return last is not None and issued < datetime.fromisoformat(last.at).timestamp()

    # -- the reader's own changes -----------------------------------------------------------

    def confirm(self, subscriber_id: int, issued: float, source: str,
                ip: str | None) -> Literal["confirmed", "already", "stale"]:
        """Make a reader active through a confirmation link issued at `issued`, recording
        consent; a link older than the reader's leaving is 'stale' and changes nothing."""
        with self.transaction():
            reader = self._current(subscriber_id)
            if self.left_since(reader, issued):
                return "stale"
            if reader.status == "active":
                return "already"
            reason = ("confirmed signup (double opt-in)" if reader.status == "pending"
                      else f"re-subscribed: confirmed by email link after {reader.status}")
            self.set_status(reader.id, "active", reason)
            self.record_consent(reader.id, source, ip)
        return "confirmed"

    def record_consent(self, subscriber_id: int, source: str, ip: str | None) -> None:
        """Record where, when and from which IP a reader consented."""
        from .records import now

        stamp = now()
        with self.transaction() as conn:
            # Consenting here is signing up here: signup sequences count from it.
            conn.execute("UPDATE subscribers SET consent_source = ?, consent_at = ?, "
                         "consent_ip = ?, updated_at = ?, enrolled_at = ? WHERE id = ?",
                         (source, stamp, ip, stamp, stamp, subscriber_id))

    def unsubscribe(self, subscriber_id: int, reason: str, *, end_pause: bool = False) -> bool:
        """Unsubscribe an active or pending reader; with `end_pause`, also end a pause for
        good (the status stays, an audit row records the choice). True when it changed."""
        with self.transaction():
            reader = self._get_id(subscriber_id)
            if reader is None:  # removed since the link was checked
                return False
            if reader.status in JOINED:
                self.set_status(reader.id, "unsubscribed", reason)
                return True
            if end_pause and self.is_paused(reader):
                self._audit_same(reader, reason)
                return True
        return False

    def pause(self, subscriber_id: int, via: str) -> bool:
        """Pause an active or pending reader (audited "paused (via)"); True when it changed."""
        with self.transaction():
            reader = self._get_id(subscriber_id)
            if reader is None or reader.status not in JOINED:
                return False
            self.set_status(reader.id, "unsubscribed", f"{PAUSED} ({via})")
        return True

    def resume(self, subscriber_id: int, via: str) -> bool:
        """Make a paused reader active again at once; True when they were paused."""
        with self.transaction():
            reader = self._get_id(subscriber_id)
            if reader is None or not self.is_paused(reader):
                return False
            self.set_status(reader.id, "active", f"resumed ({via})")
        return True

    def change_goal(self, subscriber_id: int, goal: str, first_name: str,
                    **race: str | None) -> Subscriber:
        """Change a reader's goal and first name, and the race_date, race_name or timezone
        `race` gives (as `update` does); when the goal changes, their ledger rows not yet
        sent (planned or failed) go, so the next publish plans them anew."""
        with self.transaction() as conn:
            reader = self._current(subscriber_id)
            changed = self.update(reader.email, goal=goal, first_name=first_name, **race)
            if changed.goal != reader.goal:
                conn.execute("DELETE FROM deliveries WHERE subscriber_id = ? AND "
                             "state IN ('planned', 'failed')", (reader.id,))
        return changed

    # -- what providers report --------------------------------------------------------------

    def apply_event(self, email: str, status: str,
                    reason: str) -> tuple[Subscriber | None, bool]:
        """A provider's report about an address: the reader (None when not on the list) and
        whether their status moved; it only moves towards the stronger one."""
        with self.transaction():
            reader = self.get(email)
            if reader is None or RANK[status] <= RANK[reader.status]:
                return reader, False
            self.set_status(reader.id, status, reason[:300])
        return reader, True

    # -- serve's own state ------------------------------------------------------------------

    def take_signup_slot(self, bucket: str, per_window: int, window: float,
                         at: float) -> bool:
        """Count one signup for a client at unix time `at`; False when the last `window`
        seconds already hold `per_window` of theirs (shared by every serve worker)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM serve_signups WHERE at < ?", (at - window,))
            used = conn.execute("SELECT COUNT(*) FROM serve_signups WHERE ip = ?",
                                (bucket,)).fetchone()[0]
            if used >= per_window:
                return False
            conn.execute("INSERT INTO serve_signups(ip, at) VALUES (?, ?)", (bucket, at))
        return True

    def mark_webhook_seen(self, provider: str, token: str, keep: float, at: float) -> bool:
        """Remember a webhook id at unix time `at` (forgetting those older than `keep`
        seconds); False when it was already there: a replay, or a provider's retry."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM serve_webhook_seen WHERE at < ?", (at - keep,))
            added = conn.execute("INSERT INTO serve_webhook_seen(provider, token, at) "
                                 "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                                 (provider, token, at)).rowcount
        return added == 1

    # -- helpers ----------------------------------------------------------------------------

    def _current(self, subscriber_id: int) -> Subscriber:
        reader = self._get_id(subscriber_id)
        if reader is None:
            raise RunletterError(f"no subscriber #{subscriber_id}")
        return reader

    def _audit_same(self, reader: Subscriber, reason: str) -> None:
        """An audit row that keeps the status (a choice the status cannot show)."""
        from .records import now

        self._audit(reader.id, reader.email, reader.status, reader.status, reason, now())


__all__ = ["JOINED", "LEFT", "RANK", "ReaderChanges"]
