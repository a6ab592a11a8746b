"""review rounds listing index

A covering index of the columns the history and the export read from a decided round
(see ReviewRound.__table_args__): on SQLite a long output is stored in the row, and
received_at, stored after it, was reached by walking the whole output.

Revision ID: c41d7e9a2b60
Revises: b7e2c4d91a05
Create Date: 2026-11-29 04:30:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c41d7e9a2b60'
down_revision = 'b7e2c4d91a05'
branch_labels = None
depends_on = None

NAME = 'ix_review_rounds_listing'
COLUMNS = ['id', 'execution_id', 'crew_id', 'task_id', 'round_number', 'received_at']


def upgrade():
    op.create_index(NAME, 'review_rounds', COLUMNS)


def downgrade():
    op.drop_index(NAME, table_name='review_rounds')
