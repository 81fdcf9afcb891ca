"""The store's tables, described once for every database: SQLAlchemy Core metadata that
`db copy` walks and the migrations are checked against. SQLite and PostgreSQL differ only
where a type says so (an address compares without case: NOCASE in SQLite, citext in
PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import CITEXT

from publisher.store.records import STATUSES

STATES = ("planned", "in-flight", "sent", "rejected", "failed", "skipped")


def address() -> Text:
    """An email address column type: compared without regard to case."""
    return Text(collation="NOCASE").with_variant(CITEXT(), "postgresql")


def _among(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


metadata = MetaData()

subscribers = Table(
    "subscribers", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", address(), nullable=False, unique=True),
    Column("first_name", Text, nullable=False, server_default=""),
    Column("goal", Text, nullable=False, server_default="general"),
    Column("tags", Text, nullable=False, server_default=""),
    Column("status", Text, CheckConstraint(_among("status", STATUSES)), nullable=False),
    Column("consent_source", Text, nullable=False, server_default=""),
    Column("consent_at", Text),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("consent_ip", Text),
    Column("race_date", Text),
    Column("race_name", Text, nullable=False, server_default=""),
    Column("timezone", Text, nullable=False, server_default=""),
    # When signup sequences count from; NULL: not in them (imported without --enrol).
    Column("enrolled_at", Text),
    Index("subscribers_status_goal", "status", "goal"),
)
# The order Store.list pages through, on PostgreSQL only (info "dialects"): there the unique
# index on email orders by the database's collation; SQLite's NOCASE one already has it.
Index("subscribers_email_c", subscribers.c.email.collate("C"),
      info={"dialects": ("postgresql",)})

deliveries = Table(
    "deliveries", metadata,
    Column("post", Text, nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"),
           nullable=False),
    Column("email", Text, nullable=False),
    Column("goal", Text, nullable=False),
    Column("state", Text, CheckConstraint(_among("state", STATES)), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("provider_id", Text),
    Column("error", Text),
    Column("next_attempt_at", Double),
    Column("updated_at", Text, nullable=False),
    Column("sent_at", Text),
    Column("call_id", Integer),  # the call that holds it in flight (see `calls`)
    PrimaryKeyConstraint("post", "subscriber_id"),
    Index("deliveries_post_state_goal", "post", "state", "goal"),
    Index("deliveries_claim", "post", "goal", "state", "subscriber_id"),
    Index("deliveries_reader", "subscriber_id", "post"),
)

# Calls claimed in the ledger and not yet settled. A call's rows go in flight while the call
# before it is on the wire ('claimed'); one small write turns it 'out' just before it is
# sent. Rows of a call still 'claimed' after a crash provably never left: the next run puts
# them back. A settled call's row is deleted; rows it left in flight stay in doubt.
CALL_STATES = ("claimed", "out")
calls = Table(
    "calls", metadata,
    Column("id", Integer, primary_key=True),
    Column("post", Text, nullable=False),
    Column("state", Text, CheckConstraint(_among("state", CALL_STATES)), nullable=False),
    Column("at", Text, nullable=False),
    Index("calls_post_state", "post", "state"),
    sqlite_autoincrement=True,  # an id is never handed out twice, so never mistaken
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer),
    Column("email", address(), nullable=False),
    Column("old_status", Text),
    Column("new_status", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", Text, nullable=False),
    Index("audit_email", "email"),
)

serve_signups = Table(
    "serve_signups", metadata,
    Column("ip", Text, nullable=False),
    Column("at", Double, nullable=False),
    Index("serve_signups_ip_at", "ip", "at"),
)

serve_webhook_seen = Table(
    "serve_webhook_seen", metadata,
    Column("provider", Text, nullable=False),
    Column("token", Text, nullable=False),
    Column("at", Double, nullable=False),
    PrimaryKeyConstraint("provider", "token"),
)

ready = Table(
    "ready", metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"),
           nullable=False),
    Column("step", Text, nullable=False),
    Column("at", Text, nullable=False),
    PrimaryKeyConstraint("subscriber_id", "step"),
)

enrolments = Table(
    "enrolments", metadata,
    Column("sequence", Text, nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"),
           nullable=False),
    Column("basis", Text, nullable=False),
    Column("next_at", Double),
    Column("waiting", Text),
    PrimaryKeyConstraint("sequence", "subscriber_id"),
    Index("enrolments_next", "sequence", "next_at"),
)

proposals = Table(
    "proposals", metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"),
           nullable=False),
    Column("first_name", Text, nullable=False, server_default=""),
    Column("goal", Text, nullable=False),
    Column("race_date", Text),
    Column("race_name", Text, nullable=False, server_default=""),
    Column("timezone", Text, nullable=False, server_default=""),
    Column("created_at", Text, nullable=False),
    Index("proposals_reader", "subscriber_id"),
)

# A reader merged into another by migration 0007 (one mailbox in two spellings): links sent
# to the merged-away id, bound to its spelling, still reach the reader it became.
merged_readers = Table(
    "merged_readers", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("into_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"),
           nullable=False),
    Column("email", Text, nullable=False),
)

# In the order `db copy` fills them (readers before what refers to them).
COPY_ORDER = (subscribers, audit, calls, deliveries, ready, enrolments, serve_signups,
              serve_webhook_seen, proposals, merged_readers)
