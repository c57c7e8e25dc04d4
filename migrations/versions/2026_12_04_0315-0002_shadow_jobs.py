"""Shadow jobs and shadow drops: shadow scoring becomes durable work for scorer workers.

Why: shadow samples used to wait in the memory of a scorer process that each web worker spawned,
and were lost when it died or the web server stopped.  Now the web tier's event log writes a
``shadow_jobs`` row in the same transaction as the served prediction row; scorer workers
(``frugal scorer``) claim jobs with ``FOR UPDATE SKIP LOCKED``, write the challenger's prediction
row and delete the job in one transaction, so a crash anywhere leaves the job to be scored again.
``request_id`` is unique so a replayed spool file queues nothing twice.  ``shadow_drops`` counts,
per experiment, phase and reason, the samples that never got a challenger row (too old for the
backlog bound, or the challenger failed), so analyses and reports can say so (issue 13).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 03:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('shadow_jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.String(length=256), nullable=False),
    sa.Column('features', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('overhead_ms', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_shadow_jobs_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shadow_jobs')),
    sa.UniqueConstraint('request_id', name=op.f('uq_shadow_jobs_request_id'))
    )
    op.create_index('ix_shadow_jobs_created_at', 'shadow_jobs', ['created_at'], unique=False)
    op.create_table('shadow_drops',
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=10), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("reason IN ('expired', 'failed')", name=op.f('ck_shadow_drops_reason')),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_shadow_drops_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('experiment_id', 'phase', 'reason', name=op.f('pk_shadow_drops'))
    )


def downgrade() -> None:
    op.drop_table('shadow_drops')
    op.drop_index('ix_shadow_jobs_created_at', table_name='shadow_jobs')
    op.drop_table('shadow_jobs')
