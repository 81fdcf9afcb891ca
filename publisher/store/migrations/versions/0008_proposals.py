"""A signup for an address already on the list only proposes its details (name, goal, race,
time zone): they wait here, one row per signup, until the confirmation link of that signup
is pressed, and never replace a confirmed reader's own.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the proposals table."""
    op.create_table(
        "proposals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.Integer,
                  sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("first_name", sa.Text, nullable=False, server_default=""),
        sa.Column("goal", sa.Text, nullable=False),
        sa.Column("race_date", sa.Text),
        sa.Column("race_name", sa.Text, nullable=False, server_default=""),
        sa.Column("timezone", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    op.create_index("proposals_reader", "proposals", ["subscriber_id"])


def downgrade() -> None:
    """Drop the proposals table (proposed details waiting are lost)."""
    op.drop_table("proposals")
