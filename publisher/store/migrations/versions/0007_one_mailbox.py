"""One mailbox, one reader: every address in its canonical form (IDNA domain, NFC local
part), and readers that were one mailbox in two spellings merged (see store/mailboxes.py).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from publisher.store.mailboxes import merge_mailboxes

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add merged_readers, then give every address its canonical form and merge."""
    op.create_table(
        "merged_readers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("into_id", sa.Integer,
                  sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("email", sa.Text, nullable=False),
    )
    merge_mailboxes(op.get_bind())


def downgrade() -> None:
    """The table goes; merged readers cannot be told apart again."""
    op.drop_table("merged_readers")
