"""resume call counts: each job's /resume calls and latest HTTP status, kept on the job

``resume_jobs.resume_calls`` and ``resume_jobs.last_http_status``, kept by an insert
trigger on ``resume_attempts`` (reviewapp/resume_call_counts.py); the history page and
the exports read them instead of two lookups of the attempts per row. Existing jobs get
theirs from their attempts here.

Revision ID: e2a9c7d41b38
Revises: d5a8f3c60e17
Create Date: 2026-11-29 17:40:00.000000

"""
from alembic import op
import sqlalchemy as sa

from reviewapp import resume_call_counts


# revision identifiers, used by Alembic.
revision = 'e2a9c7d41b38'
down_revision = 'd5a8f3c60e17'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('resume_jobs', sa.Column('resume_calls', sa.Integer(), server_default='0', nullable=False))
    op.add_column('resume_jobs', sa.Column('last_http_status', sa.Integer(), nullable=True))
    bind = op.get_bind()
    resume_call_counts.backfill(bind)
    resume_call_counts.create_trigger(bind)


def downgrade():
    bind = op.get_bind()
    resume_call_counts.drop_trigger(bind)
    # plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would break the
    # decision summaries' triggers on resume_jobs
    op.drop_column('resume_jobs', 'last_http_status')
    op.drop_column('resume_jobs', 'resume_calls')
