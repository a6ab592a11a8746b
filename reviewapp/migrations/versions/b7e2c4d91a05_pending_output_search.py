"""pending output search

A full-text (GIN) index over the pending rounds' outputs only, for the queue's search:
with the index over all rounds, a common word matched every decided round too (~1M at
the bench's scale) before ``state = 'pending'`` filtered them out. The index over all
rounds stays: the history search needs the decided rounds'.

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

NAME = 'ix_review_rounds_pending_search'


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.create_index(
        NAME, 'review_rounds', [sa.text("to_tsvector('simple', left(output, 100000))")],
        postgresql_using='gin', postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_index(NAME, table_name='review_rounds')
