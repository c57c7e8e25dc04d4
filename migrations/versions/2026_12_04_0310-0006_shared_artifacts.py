"""Model files and the session secret in the database: web replicas become stateless.

Why: model files lived in each node's FRUGAL_DATA_DIR/models and the dashboard's session key in
FRUGAL_DATA_DIR/secret_key, so a second web replica answered 500 to every prediction for a model
uploaded through the first (issue 17).  ``model_artifacts`` holds each distinct file once, keyed by
its SHA-256 (the digest ``models`` already records); a node's data directory keeps only a cache.
``instance_secrets`` holds secrets every replica must share, made once by whichever starts first.
Files registered before this revision stay where they were; ``frugal models sync`` copies them in.

Revision ID: 0006
Revises: 0007
Create Date: 2026-12-04 03:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model_artifacts',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('size > 0', name=op.f('ck_model_artifacts_size_positive')),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_model_artifacts'))
    )
    op.create_table('instance_secrets',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_instance_secrets'))
    )


def downgrade() -> None:
    op.drop_table('instance_secrets')
    op.drop_table('model_artifacts')
