"""Calls claimed ahead: table `calls` and `deliveries.call_id`. A publish marks the next
call's rows in flight while the call before it is on the wire, and turns the call 'out' with
one small write just before sending it; rows of a call a crash left 'claimed' never left and
go back to planned on the next run, instead of being reported in doubt.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the calls table and each delivery's call."""
    # A store stamped back to an older version keeps them (the migration tests do that).
    found = sa.inspect(op.get_bind())
    if "call_id" not in {c["name"] for c in found.get_columns("deliveries")}:
        with op.batch_alter_table("deliveries") as batch:
            batch.add_column(sa.Column("call_id", sa.Integer))
    if found.has_table("calls"):
        return
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("post", sa.Text, nullable=False),
        sa.Column("state", sa.Text, sa.CheckConstraint("state IN ('claimed', 'out')"),
                  nullable=False),
        sa.Column("at", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("calls_post_state", "calls", ["post", "state"])


def downgrade() -> None:
    """Drop them (rows in flight stay in flight, in doubt, as before)."""
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("call_id")
    op.drop_index("calls_post_state", table_name="calls")
    op.drop_table("calls")
