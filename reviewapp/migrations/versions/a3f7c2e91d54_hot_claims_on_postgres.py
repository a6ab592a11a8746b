"""HOT claims on PostgreSQL: no index on the claim there, and room on each page

A claim (opening a round) and its extension (the review page's heartbeat) write
``claimed_by_id`` and ``claim_expires_at``. On PostgreSQL ``ix_review_rounds_pending_card``
held both, so every such write was a non-HOT update, which adds an entry to every index
of the row, the pending rounds' full-text GIN too: the output parsed again, 20 ms for a
200 KB output. The index goes on PostgreSQL (SQLite keeps it: see ReviewRound): there a
long output is stored apart (TOAST), and the queue reads its columns from the short row
through the primary key as fast.

``review_rounds`` also gets fillfactor 90 on PostgreSQL: inserts leave a tenth of each
page free, so the new version of a claimed row has room on its page, which a HOT update
needs. Pages written before keep their layout (no table rewrite here); rounds arriving
from now on get the room.

Revision ID: a3f7c2e91d54
Revises: e2a9c7d41b38
Create Date: 2026-11-29 18:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a3f7c2e91d54'
down_revision = 'e2a9c7d41b38'
branch_labels = None
depends_on = None

CARD = 'ix_review_rounds_pending_card'
CARD_COLUMNS = ['id', 'crew_id', 'execution_id', 'task_id', 'round_number', 'agent', 'claimed_by_id',
                'claim_expires_at', 'snippet', 'state']
PENDING = sa.text("state = 'pending'")


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_index(CARD, table_name='review_rounds')
    op.execute('ALTER TABLE review_rounds SET (fillfactor = 90)')


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('ALTER TABLE review_rounds RESET (fillfactor)')
    op.create_index(CARD, 'review_rounds', CARD_COLUMNS, postgresql_where=PENDING)
