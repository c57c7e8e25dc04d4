"""Widen analyses.slot and add the webhook outbox.

Why: an on-demand analysis's slot is ``task:<celery task uuid>``, 41 characters, and analyses.slot
was VARCHAR(40), so ``POST /v1/experiments/{id}/analyze`` failed on Postgres (SQLite does not
enforce lengths, which hid it); 80 leaves room.  The outbox holds each decision webhook, written in
the analysis's own transaction, so a worker killed between storing an analysis and sending its
webhook cannot lose it: delivery retries from the row until ``delivered_at`` is set.

Revision ID: 0003
Revises: 0007
Create Date: 2026-12-04 03:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0007'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('analyses') as batch:
        batch.alter_column('slot', existing_type=sa.String(length=40), type_=sa.String(length=80), existing_nullable=False)
    op.create_table('webhook_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('analysis_id', sa.Integer(), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('message', JSON, nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['analysis_id'], ['analyses.id'], name=op.f('fk_webhook_outbox_analysis_id_analyses'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_webhook_outbox_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_outbox')),
    sa.UniqueConstraint('analysis_id', name=op.f('uq_webhook_outbox_analysis_id'))
    )


def downgrade() -> None:
    op.drop_table('webhook_outbox')
    with op.batch_alter_table('analyses') as batch:
        batch.alter_column('slot', existing_type=sa.String(length=80), type_=sa.String(length=40), existing_nullable=False)
