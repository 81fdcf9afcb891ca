"""What a provider reports after a message left (a bounce, a complaint, an unsubscribe), as
`Ledger` methods (mixed in): the reader's ledger row the report is about gets its note."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from publisher.store import now

if TYPE_CHECKING:
    from publisher.store import Store
    from publisher.store.database import Connection

# Every post in the ledger by index seeks on its primary key (post, subscriber_id), then that
# reader's row of each: O(posts x log rows). Filtering on subscriber_id alone, which no index
# leads with, would scan the whole ledger for every webhook event.
_READER_ROWS = """
WITH RECURSIVE posts(post) AS (
    SELECT MIN(post) FROM deliveries
    UNION ALL
    SELECT (SELECT MIN(post) FROM deliveries WHERE post > posts.post) FROM posts
    WHERE posts.post IS NOT NULL
)
SELECT d.post, d.state, d.provider_id, d.updated_at, d.sent_at FROM posts
JOIN deliveries d ON d.post = posts.post AND d.subscriber_id = ?
"""
OUR_MESSAGE_ID = re.compile(r"^(.+)\.(\d+)@[^@]+$")  # <post.reader@domain>


class LedgerEvents:
    """Ledger methods for the providers' webhooks."""

    store: Store
    conn: Connection

    def row_for_event(self, subscriber_id: int,
                      message_ids: tuple[str, ...]) -> tuple[str, str] | None:
        """(post, state) of the reader's row an event is about: the one whose provider id
        is among the event's message ids (angle brackets ignored), else the one our own
        Message-ID names, else their most recent sent row; None when they have none."""
        rows = self.conn.execute(_READER_ROWS, (subscriber_id,)).fetchall()
        if not rows:
            return None
        # Rows of the same second: the later sent, then the later post (slugs start with
        # their date). Both databases order these alike; SQLite's rowid has no PostgreSQL twin.
        newest_first = sorted(rows, key=lambda r: (r[3], r[4] or "", r[0]), reverse=True)
        clean = {m.strip().strip("<>") for m in message_ids if m and m.strip("<> ")}
        for post, state, provider_id, _, _ in newest_first:
            if provider_id and provider_id.strip().strip("<>") in clean:
                return post, state
        for candidate in clean:
            match = OUR_MESSAGE_ID.match(candidate)
            if match and int(match.group(2)) == subscriber_id:
                for post, state, *_ in rows:
                    if post == match.group(1):
                        return post, state
        return next(((post, state) for post, state, *_ in newest_first if state == "sent"),
                    None)

    def apply_event(self, subscriber_id: int, message_ids: tuple[str, ...], kind: str,
                    note: str) -> bool:
        """Note a provider's event on the row it is about; a bounce of a sent row makes it
        rejected (it was not delivered). False when the reader has no row to note it on."""
        row = self.row_for_event(subscriber_id, message_ids)
        if row is None:
            return False
        post, state = row
        new_state = "rejected" if kind == "bounce" and state == "sent" else state
        with self.store.transaction() as conn:
            conn.execute("UPDATE deliveries SET state = ?, error = ?, updated_at = ? "
                         "WHERE post = ? AND subscriber_id = ?",
                         (new_state, note[:500], now(), post, subscriber_id))
        return True
