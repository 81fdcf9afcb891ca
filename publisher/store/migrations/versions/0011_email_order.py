"""The readers' list order has an index on PostgreSQL: `subscribers_email_c`, on
`email COLLATE "C"`, the order `Store.list` (and so `subscribers export`) pages through. The
unique index on email orders by the database's collation, so each page of 1,000 used to sort
every reader after it (a million readers: minutes). SQLite's unique NOCASE index on email
already has the list's order; it gets nothing (a second one would only slow writes).

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index email in "C" order, on PostgreSQL."""
    if op.get_context().dialect.name == "postgresql":
        # IF NOT EXISTS: a store stamped back to an older version keeps it (the migration
        # tests do that), and one made by hand for a slow export is the same index.
        op.execute("CREATE INDEX IF NOT EXISTS subscribers_email_c "
                   'ON subscribers (email COLLATE "C")')


def downgrade() -> None:
    """Drop the index, on PostgreSQL."""
    if op.get_context().dialect.name == "postgresql":
        op.drop_index("subscribers_email_c", table_name="subscribers")
