"""One mailbox, one reader: every address in its canonical form (IDNA domain, NFC local
part), and readers that were one mailbox in two spellings merged (see store/mailboxes.py).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from publisher.store.mailboxes import merge_mailboxes

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    merge_mailboxes(op.get_bind())


def downgrade() -> None:
    """Nothing to undo in the schema; merged readers cannot be told apart again."""
