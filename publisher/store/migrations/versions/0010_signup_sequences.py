"""When each reader joined the signup sequences: `subscribers.enrolled_at`. Their signup for a
reader who signed up here; the import's time for one imported with `--enrol`; NULL for one
imported without it, who is never enrolled in a signup sequence (an import of 5,000 readers
once sent 5,000 welcome series). Readers already stored keep the signup they were timed from.

Revision ID: 0010
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add enrolled_at, from each stored reader's consent (or creation) time."""
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("enrolled_at", sa.Text))
    op.execute("UPDATE subscribers SET enrolled_at = COALESCE(consent_at, created_at)")


def downgrade() -> None:
    """Drop enrolled_at."""
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("enrolled_at")
