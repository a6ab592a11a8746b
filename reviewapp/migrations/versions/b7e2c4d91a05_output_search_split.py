"""output search split: pending rounds / the others

The full-text (GIN) index over every round's output becomes two partial indexes that
never hold the same row: pending rounds (the queue's search; with one index over all
rounds a common word matched every decided round too, ~1M at the bench's scale, before
``state = 'pending'`` filtered them out) and every other round (the history's search,
whose query says ``state <> 'pending'``). A second index over pending rounds beside the
full one would have parsed each arriving output twice.

PostgreSQL only, like the other search indexes (see the initial migration's end):
SQLite has no to_tsvector and searches with LIKE.

Revision ID: b7e2c4d91a05
Revises: 3dbc1f37076a
Create Date: 2026-11-29 03:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7e2c4d91a05'
down_revision = '3dbc1f37076a'
branch_labels = None
depends_on = None

EXPRESSION = "to_tsvector('simple', left(output, 100000))"
EVERY_ROUND = 'ix_review_rounds_output_search'
PENDING = 'ix_review_rounds_pending_search', "state = 'pending'"
DECIDED = 'ix_review_rounds_decided_search', "state <> 'pending'"


def _create(name, where=None):
    op.create_index(name, 'review_rounds', [sa.text(EXPRESSION)], postgresql_using='gin',
                    postgresql_where=sa.text(where) if where else None)


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    _create(*PENDING)
    _create(*DECIDED)
    op.drop_index(EVERY_ROUND, table_name='review_rounds')


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    _create(EVERY_ROUND)
    op.drop_index(DECIDED[0], table_name='review_rounds')
    op.drop_index(PENDING[0], table_name='review_rounds')
