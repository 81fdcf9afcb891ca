"""The store as of schema version 6 (readers, consent, ledger, audit, serve's tables, time):
what a new store starts from, on SQLite or PostgreSQL.

Revision ID: 0006
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import CITEXT

revision = "0006"
down_revision = None
branch_labels = None
depends_on = None


def _address() -> sa.Text:
    return sa.Text(collation="NOCASE").with_variant(CITEXT(), "postgresql")


def upgrade() -> None:
    """Create the version-6 tables and indexes (and citext on PostgreSQL)."""
    if op.get_context().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS citext")
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", _address(), nullable=False, unique=True),
        sa.Column("first_name", sa.Text, nullable=False, server_default=""),
        sa.Column("goal", sa.Text, nullable=False, server_default="general"),
        sa.Column("tags", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.Text, sa.CheckConstraint(
            "status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')"),
            nullable=False),
        sa.Column("consent_source", sa.Text, nullable=False, server_default=""),
        sa.Column("consent_at", sa.Text),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.Column("consent_ip", sa.Text),
        sa.Column("race_date", sa.Text),
        sa.Column("race_name", sa.Text, nullable=False, server_default=""),
        sa.Column("timezone", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("subscribers_status_goal", "subscribers", ["status", "goal"])
    op.create_table(
        "deliveries",
        sa.Column("post", sa.Text, nullable=False),
        sa.Column("subscriber_id", sa.Integer,
                  sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("goal", sa.Text, nullable=False),
        sa.Column("state", sa.Text, sa.CheckConstraint(
            "state IN ('planned', 'in-flight', 'sent', 'rejected', 'failed', 'skipped')"),
            nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("provider_id", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("next_attempt_at", sa.Double),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.Column("sent_at", sa.Text),
        sa.PrimaryKeyConstraint("post", "subscriber_id"),
    )
    op.create_index("deliveries_post_state_goal", "deliveries", ["post", "state", "goal"])
    op.create_index("deliveries_claim", "deliveries", ["post", "goal", "state",
                                                       "subscriber_id"])
    op.create_index("deliveries_reader", "deliveries", ["subscriber_id", "post"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.Integer),
        sa.Column("email", _address(), nullable=False),
        sa.Column("old_status", sa.Text),
        sa.Column("new_status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.Text, nullable=False),
    )
    op.create_index("audit_email", "audit", ["email"])
    op.create_table("serve_signups", sa.Column("ip", sa.Text, nullable=False),
                    sa.Column("at", sa.Double, nullable=False))
    op.create_index("serve_signups_ip_at", "serve_signups", ["ip", "at"])
    op.create_table(
        "serve_webhook_seen",
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("provider", "token"),
    )
    op.create_table(
        "ready",
        sa.Column("subscriber_id", sa.Integer,
                  sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Text, nullable=False),
        sa.Column("at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("subscriber_id", "step"),
    )
    op.create_table(
        "enrolments",
        sa.Column("sequence", sa.Text, nullable=False),
        sa.Column("subscriber_id", sa.Integer,
                  sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("basis", sa.Text, nullable=False),
        sa.Column("next_at", sa.Double),
        sa.Column("waiting", sa.Text),
        sa.PrimaryKeyConstraint("sequence", "subscriber_id"),
    )
    op.create_index("enrolments_next", "enrolments", ["sequence", "next_at"])


def downgrade() -> None:
    """Drop every table: the store is empty again."""
    for table in ("enrolments", "ready", "serve_webhook_seen", "serve_signups", "audit",
                  "deliveries", "subscribers"):
        op.drop_table(table)
