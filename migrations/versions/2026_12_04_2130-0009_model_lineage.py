"""A derived model keeps the record of what it was made from, even after its source is deleted.

Why (issue 20): ``derived_from_id`` is set to NULL when the source model is deleted, so a quantized,
pruned or distilled model lost its lineage with its source.  ``lineage`` holds it as a copy: the
source's ref and sha256, the transform and its parameters, the data it was made or checked with
(sha256 and rows) and the check against its source (agreement, quality, cost).  NULL for a model
registered as uploaded, including every model registered before this revision.  Adding a nullable
column without a default does not rewrite the table on Postgres.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('models', sa.Column('lineage', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.drop_column('lineage')
