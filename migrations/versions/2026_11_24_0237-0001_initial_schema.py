"""Initial schema: keys, models, experiments and phases, audit events, predictions, outcomes,
exposures, roll-ups, watermarks, analyses, reports.

Why: this is the whole of Frugal's first data model (docs/architecture.md).  Constraints carry the
product's rules so a bug cannot store nonsense: one prediction per (request_id, scoring model) is
what makes the event log's replays exactly-once; one analysis per (experiment, slot) makes the
scheduled analysis idempotent; check constraints pin the enumerations.  Predictions are not
range-partitioned on Postgres because a partitioned table cannot enforce that uniqueness without
the partition key (docs/architecture.md explains the trade-off).

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 02:37:44.774854
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("scope IN ('admin', 'sdk', 'read')", name=op.f('ck_api_keys_scope')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix'))
    )
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.String(length=50), nullable=False),
    sa.Column('task', sa.String(length=12), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('file_size', sa.BigInteger(), nullable=False),
    sa.Column('signature', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('declared_cost_per_1k', sa.Float(), nullable=True),
    sa.Column('profile', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('derived_from_id', sa.Integer(), nullable=True),
    sa.Column('transform', sa.String(length=20), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("task IN ('binary', 'multiclass', 'regression')", name=op.f('ck_models_task')),
    sa.CheckConstraint('declared_cost_per_1k IS NULL OR declared_cost_per_1k >= 0', name=op.f('ck_models_cost_nonneg')),
    sa.CheckConstraint('file_size > 0', name=op.f('ck_models_file_size_positive')),
    sa.ForeignKeyConstraint(['derived_from_id'], ['models.id'], name=op.f('fk_models_derived_from_id_models'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
    sa.UniqueConstraint('name', 'version', name=op.f('uq_models_name_version'))
    )
    op.create_index(op.f('ix_models_digest'), 'models', ['digest'], unique=False)
    op.create_table('outcomes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outcomes')),
    sa.UniqueConstraint('request_id', name=op.f('uq_outcomes_request_id'))
    )
    op.create_table('watermarks',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('last_id', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_watermarks'))
    )
    op.create_table('experiments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('mode', sa.String(length=10), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('definition', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('champion_model_id', sa.Integer(), nullable=False),
    sa.Column('challenger_model_id', sa.Integer(), nullable=False),
    sa.Column('coverage_bp', sa.Integer(), nullable=False),
    sa.Column('ramp_step', sa.Integer(), nullable=False),
    sa.Column('current_phase', sa.Integer(), nullable=False),
    sa.Column('served_arm', sa.String(length=10), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("mode IN ('ab', 'shadow')", name=op.f('ck_experiments_mode')),
    sa.CheckConstraint("served_arm IN ('champion', 'challenger')", name=op.f('ck_experiments_served_arm')),
    sa.CheckConstraint("state IN ('draft', 'running', 'paused', 'stopped', 'promoted', 'rolled_back')", name=op.f('ck_experiments_state')),
    sa.CheckConstraint('coverage_bp BETWEEN 0 AND 10000', name=op.f('ck_experiments_coverage_range')),
    sa.CheckConstraint('ramp_step >= 0', name=op.f('ck_experiments_ramp_step_nonneg')),
    sa.ForeignKeyConstraint(['challenger_model_id'], ['models.id'], name=op.f('fk_experiments_challenger_model_id_models'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['champion_model_id'], ['models.id'], name=op.f('fk_experiments_champion_model_id_models'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_experiments')),
    sa.UniqueConstraint('name', name=op.f('uq_experiments_name'))
    )
    op.create_index(op.f('ix_experiments_state'), 'experiments', ['state'], unique=False)
    op.create_table('analyses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=False),
    sa.Column('slot', sa.String(length=40), nullable=False),
    sa.Column('inputs_digest', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=30), nullable=False),
    sa.Column('parameters', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('inputs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('results', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('decision', sa.String(length=10), nullable=False),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("decision IN ('PROMOTE', 'CONTINUE', 'REJECT', 'FUTILE', 'UNHEALTHY')", name=op.f('ck_analyses_decision')),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_analyses_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analyses')),
    sa.UniqueConstraint('experiment_id', 'slot', name=op.f('uq_analyses_experiment_id_slot'))
    )
    op.create_index('ix_analyses_experiment_created', 'analyses', ['experiment_id', 'created_at'], unique=False)
    op.create_table('experiment_models',
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_experiment_models_experiment_id_experiments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_experiment_models_model_id_models'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('experiment_id', 'model_id', name=op.f('pk_experiment_models'))
    )
    op.create_index(op.f('ix_experiment_models_model_id'), 'experiment_models', ['model_id'], unique=False)
    op.create_table('experiment_phases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('weights_bp', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_experiment_phases_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_experiment_phases')),
    sa.UniqueConstraint('experiment_id', 'number', name=op.f('uq_experiment_phases_experiment_id_number'))
    )
    op.create_table('exposures',
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.String(length=256), nullable=False),
    sa.Column('arm', sa.String(length=10), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_exposures_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('experiment_id', 'phase', 'unit_id', 'arm', name=op.f('pk_exposures'))
    )
    op.create_table('predictions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=False),
    sa.Column('arm', sa.String(length=10), nullable=False),
    sa.Column('unit_id', sa.String(length=256), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('served', sa.Boolean(), nullable=False),
    sa.Column('in_experiment', sa.Boolean(), nullable=False),
    sa.Column('answered_by_id', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('inference_ms', sa.Float(), nullable=False),
    sa.Column('prediction', sa.Float(), nullable=True),
    sa.Column('label', sa.String(length=200), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('cost', sa.Float(), nullable=False),
    sa.Column('cache_hit', sa.Boolean(), nullable=False),
    sa.Column('fallback_reason', sa.String(length=40), nullable=True),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("arm IN ('champion', 'challenger')", name=op.f('ck_predictions_arm')),
    sa.CheckConstraint("source IN ('server', 'sdk')", name=op.f('ck_predictions_source')),
    sa.CheckConstraint('latency_ms >= 0 AND inference_ms >= 0 AND cost >= 0', name=op.f('ck_predictions_nonneg')),
    sa.ForeignKeyConstraint(['answered_by_id'], ['models.id'], name=op.f('fk_predictions_answered_by_id_models'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_predictions_experiment_id_experiments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_predictions_model_id_models'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_predictions')),
    sa.UniqueConstraint('request_id', 'model_id', name=op.f('uq_predictions_request_id_model_id'))
    )
    op.create_index('ix_predictions_created_at', 'predictions', ['created_at'], unique=False)
    op.create_index('ix_predictions_experiment_id_id', 'predictions', ['experiment_id', 'id'], unique=False)
    op.create_table('reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=True),
    sa.Column('week', sa.String(length=8), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('html', sa.Text(), nullable=False),
    sa.Column('pdf_path', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(week) = 8', name=op.f('ck_reports_week_format')),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_reports_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reports')),
    sa.UniqueConstraint('experiment_id', 'week', name=op.f('uq_reports_experiment_id_week'))
    )
    op.create_table('rollups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=False),
    sa.Column('arm', sa.String(length=10), nullable=False),
    sa.Column('bucket_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stats', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("arm IN ('champion', 'challenger')", name=op.f('ck_rollups_arm')),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_rollups_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollups')),
    sa.UniqueConstraint('experiment_id', 'phase', 'arm', 'bucket_start', name=op.f('uq_rollups_experiment_id_phase_arm_bucket_start'))
    )
    op.create_table('experiment_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('actor', sa.String(length=50), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('analysis_id', sa.Integer(), nullable=True),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['analysis_id'], ['analyses.id'], name=op.f('fk_experiment_events_analysis_id_analyses'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_experiment_events_experiment_id_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_experiment_events'))
    )
    op.create_index('ix_experiment_events_experiment_at', 'experiment_events', ['experiment_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_experiment_events_experiment_at', table_name='experiment_events')
    op.drop_table('experiment_events')
    op.drop_table('rollups')
    op.drop_table('reports')
    op.drop_index('ix_predictions_experiment_id_id', table_name='predictions')
    op.drop_index('ix_predictions_created_at', table_name='predictions')
    op.drop_table('predictions')
    op.drop_table('exposures')
    op.drop_table('experiment_phases')
    op.drop_index(op.f('ix_experiment_models_model_id'), table_name='experiment_models')
    op.drop_table('experiment_models')
    op.drop_index('ix_analyses_experiment_created', table_name='analyses')
    op.drop_table('analyses')
    op.drop_index(op.f('ix_experiments_state'), table_name='experiments')
    op.drop_table('experiments')
    op.drop_table('watermarks')
    op.drop_table('outcomes')
    op.drop_index(op.f('ix_models_digest'), table_name='models')
    op.drop_table('models')
    op.drop_table('api_keys')
