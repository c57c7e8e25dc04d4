"""A shadow challenger's row records the champion's cost timed beside it by the same scorer.

Why (issue 16): in shadow mode the challenger is timed in a scorer process (warm, back to back) and
the champion on the request path (beside other work); one model against itself measured up to 52%
cheaper that way.  The scorer now also times the champion on the rows it scores, and the savings
share compares the two measured side by side (docs/models.md#cost).  ``reference_cost`` holds the
champion's cost on a shadow challenger's row and is NULL on every other row, including every row
written before this revision (their experiments keep the comparison they had).  Adding a nullable
column without a default does not rewrite the table on Postgres.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-04 17:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('predictions', sa.Column('reference_cost', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('predictions') as batch:
        batch.drop_column('reference_cost')
