"""What readers do through their own links, and what providers report about them: the rules
of each status change, as methods of `Store` (mixed in, built on its public methods), each
in one transaction.

The pause model: the statuses are fixed and every sending path skips anyone not active, so
a pause is not a status of its own. A paused reader is `unsubscribed`, and the audit row of
that change has a reason starting with "paused"; resuming is possible until a later change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from publisher.errors import RunletterError
from publisher.store.records import AuditEntry, Subscriber, now

LEFT = frozenset({"unsubscribed", "bounced", "complained"})  # readers who chose or had to go
JOINED = ("active", "pending")
# Strictest first: complained > bounced > unsubscribed (a pause ended) > paused > pending,
# active. A report only moves a reader towards the stricter status (a complaint is never
# turned into a bounce); only the reader's own confirm or resume, within their rules, and
# the author's set_status move one the other way.
RANK = {"pending": 0, "active": 0, "unsubscribed": 1, "bounced": 2, "complained": 3}
PAUSED = "paused"


class ReaderChanges:
    """Store methods for the reader endpoints: confirm, unsubscribe, pause, resume, change
    goal, a provider's report, and the two small tables of `runletter serve`. They build
    on Store's public methods (get, by_id, require, locked, move_status, write_audit,
    update, transaction), which `store` defines."""

    # -- reading --------------------------------------------------------------------------

    def last_change(self, subscriber_id: int) -> AuditEntry | None:
        """The reader's most recent audit row, or None."""
        row = self.conn.execute(
            "SELECT subscriber_id, email, old_status, new_status, reason, at FROM audit "
            "WHERE subscriber_id = :id ORDER BY id DESC LIMIT 1", {"id": subscriber_id}
        ).fetchone()
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

    def confirm(self, subscriber_id: int, issued: float, source: str, ip: str | None,
                proposal: int | None = None) -> Literal["confirmed", "already", "stale"]:
        """Make a reader active through a confirmation link issued at `issued`, recording
        consent and applying the details `proposal` (the link's signup) proposed; a link
        older than the reader's leaving is 'stale' and changes nothing."""
        with self.transaction():
            reader = self.locked(subscriber_id)
            if reader is None:
                raise RunletterError(f"no subscriber #{subscriber_id}")
            if self.left_since(reader, issued):
                return "stale"
            if reader.status == "active":
                return "already"
            reason = ("confirmed signup (double opt-in)" if reader.status == "pending"
                      else f"re-subscribed: confirmed by email link after {reader.status}")
            self.move_status(reader, "active", reason)
            self.apply_proposal(reader, proposal)
            self.record_consent(reader.id, source, ip)
        return "confirmed"

    def record_consent(self, subscriber_id: int, source: str, ip: str | None) -> None:
        """Record where, when and from which IP a reader consented."""
        stamp = now()
        with self.transaction() as conn:
            # Consenting here is signing up here: signup sequences count from it.
            conn.execute("UPDATE subscribers SET consent_source = :source, consent_at = :at, "
                         "consent_ip = :ip, updated_at = :at, enrolled_at = :at WHERE id = :id",
                         {"source": source, "at": stamp, "ip": ip, "id": subscriber_id})

    def unsubscribe(self, subscriber_id: int, reason: str, *, end_pause: bool = False) -> bool:
        """Unsubscribe an active or pending reader; with `end_pause`, also end a pause for
        good (the status stays, an audit row records the choice). True when it changed."""
        with self.transaction():
            reader = self.locked(subscriber_id)
            if reader is None:  # removed since the link was checked
                return False
            if reader.status in JOINED:
                return self.move_status(reader, "unsubscribed", reason)
            if end_pause and self.is_paused(reader):
                self._audit_same(reader, reason)
                return True
        return False

    def pause(self, subscriber_id: int, via: str) -> bool:
        """Pause an active or pending reader (audited "paused (via)"); True when it changed."""
        with self.transaction():
            reader = self.locked(subscriber_id)
            if reader is None or reader.status not in JOINED:
                return False
            return self.move_status(reader, "unsubscribed", f"{PAUSED} ({via})")

    def resume(self, subscriber_id: int, via: str) -> bool:
        """Make a paused reader active again at once; True when they were paused."""
        with self.transaction():
            reader = self.locked(subscriber_id)
            if reader is None or not self.is_paused(reader):
                return False
            return self.move_status(reader, "active", f"resumed ({via})")

    def change_goal(self, subscriber_id: int, goal: str, first_name: str,
                    **race: str | None) -> Subscriber:
        """Change a reader's goal and first name, and the race_date, race_name or timezone
        `race` gives (as `update` does); when the goal changes, their ledger rows not yet
        sent (planned or failed) go, so the next publish plans them anew."""
        with self.transaction() as conn:
            reader = self.require(subscriber_id)
            changed = self.update(reader.email, goal=goal, first_name=first_name, **race)
            if changed.goal != reader.goal:
                conn.execute("DELETE FROM deliveries WHERE subscriber_id = :id AND "
                             "state IN ('planned', 'failed')", {"id": reader.id})
        return changed

    # -- what providers report --------------------------------------------------------------

    def apply_event(self, email: str, status: str,
                    reason: str) -> tuple[Subscriber | None, bool]:
        """A provider's report about an address: the reader (None when not on the list) and
        whether their status moved; it only moves towards the stronger one."""
        found = self.get(email)
        if found is None:
            return None, False
        return found, self.report(found.id, status, reason)

    def report(self, subscriber_id: int, status: str, reason: str) -> bool:
        """A report about a reader (a webhook's, the ledger's rejection): True when it moved
        their status, which it only does towards the stricter one."""
        with self.transaction():
            reader = self.locked(subscriber_id)
            if reader is None or RANK[status] <= RANK[reader.status]:
                return False
            return self.move_status(reader, status, reason[:300])

    # -- the author's own undo --------------------------------------------------------------

    def unbounce(self, email: str, reason: str) -> Subscriber:
        """Make a bounced reader active again (an author undoing a bounce recorded by
        mistake), audited; one conditional statement, so a reader whose status moved
        meanwhile (a complaint) is never made active. Any other status is refused."""
        with self.transaction() as conn:
            reader = self.get(email)
            if reader is None:
                raise RunletterError(f"no reader {email}; 'runletter subscribers list' "
                                     "shows them")
            stamp = now()
            changed = conn.execute("UPDATE subscribers SET status = 'active', updated_at = :at "
                                   "WHERE id = :id AND status = 'bounced' RETURNING id",
                                   {"at": stamp, "id": reader.id}).fetchone()
            if changed is None:
                raise RunletterError(not_bounced(self.require(reader.id)))
            self.write_audit(reader.id, reader.email, "bounced", "active", reason, stamp)
            return self.require(reader.id)

    # -- serve's own state ------------------------------------------------------------------

    def take_signup_slot(self, bucket: str, per_window: int, window: float,
                         at: float, keep: float = 0) -> bool:
        """Count one signup for a client (or one email for an address) at unix time `at`;
        False when the last `window` seconds already hold `per_window` of theirs (shared by
        every serve worker). Rows are kept `keep` seconds (at least `window`): buckets with
        windows of different lengths share the table."""
        with self.transaction() as conn:
            if self.dialect == "postgresql":
                # SQLite's write lock serialises the count and the insert; on PostgreSQL two
                # workers could both count under the limit (two emails to one address).
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(:bucket))",
                             {"bucket": bucket})
            conn.execute("DELETE FROM serve_signups WHERE at < :before",
                         {"before": at - max(window, keep)})
            used = conn.execute("SELECT COUNT(*) FROM serve_signups WHERE ip = :bucket "
                                "AND at >= :since",
                                {"bucket": bucket, "since": at - window}).fetchone()[0]
            if used >= per_window:
                return False
            conn.execute("INSERT INTO serve_signups(ip, at) VALUES (:bucket, :at)",
                         {"bucket": bucket, "at": at})
        return True

    def give_back_signup_slots(self, bucket: str) -> None:
        """Forget a bucket's counted signups (an email that could not be sent after all)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM serve_signups WHERE ip = :bucket", {"bucket": bucket})

    def mark_webhook_seen(self, provider: str, token: str, keep: float, at: float) -> bool:
        """Remember a webhook id at unix time `at` (forgetting those older than `keep`
        seconds); False when it was already there: a replay, or a provider's retry."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM serve_webhook_seen WHERE at < :before",
                         {"before": at - keep})
            added = conn.execute("INSERT INTO serve_webhook_seen(provider, token, at) "
                                 "VALUES (:provider, :token, :at) ON CONFLICT DO NOTHING",
                                 {"provider": provider, "token": token, "at": at}).rowcount
        return added == 1

    # -- helpers ----------------------------------------------------------------------------

    def _audit_same(self, reader: Subscriber, reason: str) -> None:
        """An audit row that keeps the status (a choice the status cannot show)."""
        self.write_audit(reader.id, reader.email, reader.status, reader.status, reason, now())


def not_bounced(reader: Subscriber) -> str:
    """Why unbounce refuses a reader who is not bounced."""
    why = {"unsubscribed": "they chose to leave (only they can come back, by signing up)",
           "complained": "they marked a message as spam (never mail them again)"}
    return (f"{reader.email} is {reader.status}, not bounced; only a bounce can be undone"
            + (f": {why[reader.status]}" if reader.status in why else ""))


__all__ = ["JOINED", "LEFT", "RANK", "ReaderChanges", "not_bounced"]
