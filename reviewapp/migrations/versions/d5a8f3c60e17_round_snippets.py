"""round snippets: the queue's preview stored, and its columns in one index

A round now stores its output's first 160 characters (``snippet``) when it arrives; the
queue took them from the output with substr(), and SQLite read a whole long output from
its overflow pages to do so (a deep queue page of 200 KB outputs ran at 0.7x the first
page's speed). Existing rounds get theirs here.

``ix_review_rounds_pending_card`` holds every column the queue page reads of a pending
round, so that SQLite never reads the row: agent and the claim are stored after the
output, and so is the snippet in a database migrated here (ADD COLUMN appends).

Revision ID: d5a8f3c60e17
Revises: c41d7e9a2b60
Create Date: 2026-11-29 06:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd5a8f3c60e17'
down_revision = 'c41d7e9a2b60'
branch_labels = None
depends_on = None

CHARS = 160
CARD = 'ix_review_rounds_pending_card'
CARD_COLUMNS = ['id', 'crew_id', 'execution_id', 'task_id', 'round_number', 'agent', 'claimed_by_id',
                'claim_expires_at', 'snippet', 'state']
PENDING = sa.text("state = 'pending'")


def upgrade():
    op.add_column('review_rounds', sa.Column('snippet', sa.String(length=CHARS), server_default='',
                                             nullable=False))
    op.execute(f"UPDATE review_rounds SET snippet = substr(output, 1, {CHARS})")
    op.create_index(CARD, 'review_rounds', CARD_COLUMNS, sqlite_where=PENDING, postgresql_where=PENDING)


def downgrade():
    op.drop_index(CARD, table_name='review_rounds')
    # a plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would break the
    # triggers on decisions, which read review_rounds
    op.drop_column('review_rounds', 'snippet')
