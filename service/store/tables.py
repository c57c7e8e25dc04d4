"""The relational schema, as SQLAlchemy 2 typed models.

Alembic migrations (``migrations/``) are the only way this schema is created; these classes are
what the code reads and writes, and a test checks the two agree (``alembic check``-style
autogenerate comparison).  See docs/architecture.md for why each table exists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on Postgres (indexable, compact), JSON text on SQLite.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# 64-bit ids on Postgres; SQLite only auto-increments a column declared INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)

SCOPES = ("admin", "sdk", "read")
TASKS = ("binary", "multiclass", "regression")
MODES = ("ab", "shadow")
STATES = ("draft", "running", "paused", "stopped", "promoted", "rolled_back")
ARMS = ("champion", "challenger")
DECISIONS = ("PROMOTE", "CONTINUE", "REJECT", "FUTILE", "UNHEALTHY")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class ApiKey(Base):
    """An API key.  Only the SHA-256 of the secret is stored; the prefix identifies it in logs."""

    __tablename__ = "api_keys"
    __table_args__ = (sa.CheckConstraint(_in("scope", SCOPES), name="scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scope: Mapped[str] = mapped_column(sa.String(10))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ModelArtifact(Base):
    """A model file's bytes, keyed by their SHA-256, so web replicas and workers share nothing but the
    database (each keeps a local copy as a cache).  A row exists per distinct file, not per version."""

    __tablename__ = "model_artifacts"
    __table_args__ = (sa.CheckConstraint("size > 0", name="size_positive"),)

    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class InstanceSecret(Base):
    """A secret the whole deployment shares, made once (the dashboard's session key when
    FRUGAL_SECRET_KEY is not set), so every replica signs and checks the same cookies."""

    __tablename__ = "instance_secrets"

    name: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class Model(Base):
    """A registered ONNX model version; the file's bytes are in ``model_artifacts`` (or an object store)."""

    __tablename__ = "models"
    __table_args__ = (
        sa.UniqueConstraint("name", "version"),
        sa.CheckConstraint(_in("task", TASKS), name="task"),
        sa.CheckConstraint("declared_cost_per_1k IS NULL OR declared_cost_per_1k >= 0", name="cost_nonneg"),
        sa.CheckConstraint("file_size > 0", name="file_size_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    version: Mapped[str] = mapped_column(sa.String(50))
    task: Mapped[str] = mapped_column(sa.String(12))
    digest: Mapped[str] = mapped_column(sa.String(64), index=True)
    file_size: Mapped[int] = mapped_column(sa.BigInteger)
    signature: Mapped[dict[str, Any]] = mapped_column(JSONType)
    declared_cost_per_1k: Mapped[float | None] = mapped_column(sa.Float)
    profile: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    derived_from_id: Mapped[int | None] = mapped_column(sa.ForeignKey("models.id", ondelete="SET NULL"))
    transform: Mapped[str | None] = mapped_column(sa.String(20))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    # a derived model's record of its making, kept when the source is deleted (service.candidates)
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Experiment(Base):
    """An experiment definition and its lifecycle state.

    The full validated definition (policies, metric, guardrails, ramp, ...) is kept as JSON in
    ``definition``; columns hold what queries filter on.
    """

    __tablename__ = "experiments"
    __table_args__ = (
        sa.CheckConstraint(_in("mode", MODES), name="mode"),
        sa.CheckConstraint(_in("state", STATES), name="state"),
        sa.CheckConstraint(_in("served_arm", ARMS), name="served_arm"),
        sa.CheckConstraint("coverage_bp BETWEEN 0 AND 10000", name="coverage_range"),
        sa.CheckConstraint("ramp_step >= 0", name="ramp_step_nonneg"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    mode: Mapped[str] = mapped_column(sa.String(10))
    state: Mapped[str] = mapped_column(sa.String(12), index=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    champion_model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="RESTRICT"))
    challenger_model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="RESTRICT"))
    coverage_bp: Mapped[int] = mapped_column(sa.Integer)
    ramp_step: Mapped[int] = mapped_column(sa.Integer, default=0)
    current_phase: Mapped[int] = mapped_column(sa.Integer, default=1)
    served_arm: Mapped[str] = mapped_column(sa.String(10), default="champion")
    revision: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class ExperimentModel(Base):
    """Every model an experiment's policies use (a cascade uses two): guards model deletion."""

    __tablename__ = "experiment_models"

    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="RESTRICT"), primary_key=True, index=True)


class ExperimentPhase(Base):
    """A period with fixed weights and salt.  Analysis never mixes phases."""

    __tablename__ = "experiment_phases"
    __table_args__ = (sa.UniqueConstraint("experiment_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(sa.Integer)
    salt: Mapped[str] = mapped_column(sa.String(64))
    weights_bp: Mapped[list[int]] = mapped_column(JSONType)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    ended_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ExperimentEvent(Base):
    """The audit trail: every state change and automatic action, with who, when and why."""

    __tablename__ = "experiment_events"
    __table_args__ = (sa.Index("ix_experiment_events_experiment_at", "experiment_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(Timestamp)
    kind: Mapped[str] = mapped_column(sa.String(30))
    actor: Mapped[str] = mapped_column(sa.String(50))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    analysis_id: Mapped[int | None] = mapped_column(sa.ForeignKey("analyses.id", ondelete="SET NULL"))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class Prediction(Base):
    """One row per request per scoring model (a shadow request has two rows).

    ``(request_id, model_id)`` is unique: it is how replays of the spool and SDK retries are
    deduplicated.  Not partitioned on Postgres: see docs/architecture.md ("Why predictions are not
    partitioned").
    """

    __tablename__ = "predictions"
    __table_args__ = (
        sa.UniqueConstraint("request_id", "model_id"),
        sa.CheckConstraint(_in("arm", ARMS), name="arm"),
        sa.CheckConstraint("latency_ms >= 0 AND inference_ms >= 0 AND cost >= 0", name="nonneg"),
        sa.CheckConstraint("source IN ('server', 'sdk')", name="source"),
        sa.Index("ix_predictions_experiment_id_id", "experiment_id", "id"),
        sa.Index("ix_predictions_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(sa.String(128))
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"))
    phase: Mapped[int] = mapped_column(sa.Integer)
    arm: Mapped[str] = mapped_column(sa.String(10))
    unit_id: Mapped[str] = mapped_column(sa.String(256))
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="RESTRICT"))
    served: Mapped[bool] = mapped_column(sa.Boolean)
    in_experiment: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    answered_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("models.id", ondelete="RESTRICT"))
    latency_ms: Mapped[float] = mapped_column(sa.Float)
    inference_ms: Mapped[float] = mapped_column(sa.Float)
    prediction: Mapped[float | None] = mapped_column(sa.Float)
    label: Mapped[str | None] = mapped_column(sa.String(200))
    confidence: Mapped[float | None] = mapped_column(sa.Float)
    cost: Mapped[float] = mapped_column(sa.Float)
    cache_hit: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    fallback_reason: Mapped[str | None] = mapped_column(sa.String(40))
    source: Mapped[str] = mapped_column(sa.String(10), default="server")
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    # a shadow challenger's row: the champion's cost on the same rows, timed by the same scorer beside
    # the challenger (docs/models.md#cost); NULL on every other row
    reference_cost: Mapped[float | None] = mapped_column(sa.Float)


class ShadowJob(Base):
    """A shadow request's row waiting for the challenger: written by the web tier's event log in the
    same transaction as the served row, scored and deleted by a scorer (service/scorer.py).

    ``request_id`` is unique, so a replayed spool file queues nothing twice; ``overhead_ms`` is the
    request's latency minus the champion's inference (the part of serving that does not depend on
    the model), so the challenger's latency estimate is overhead + its own inference.
    """

    __tablename__ = "shadow_jobs"
    __table_args__ = (sa.Index("ix_shadow_jobs_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"))
    phase: Mapped[int] = mapped_column(sa.Integer)
    unit_id: Mapped[str] = mapped_column(sa.String(256))
    features: Mapped[Any] = mapped_column(JSONType)
    overhead_ms: Mapped[float] = mapped_column(sa.Float)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


SHADOW_DROP_REASONS = ("expired", "failed")


class ShadowDrop(Base):
    """Shadow samples that never got a challenger row, counted per experiment, phase and reason:
    ``expired`` (waited longer than FRUGAL_SHADOW_MAX_AGE_S for a scorer) or ``failed`` (the
    challenger raised).  The analysis and the report quote them."""

    __tablename__ = "shadow_drops"
    __table_args__ = (sa.CheckConstraint(_in("reason", SHADOW_DROP_REASONS), name="reason"),)

    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    phase: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    count: Mapped[int] = mapped_column(sa.BigInteger)


class Outcome(Base):
    """A late label or conversion, joined to predictions by ``request_id``."""

    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    value: Mapped[float] = mapped_column(sa.Float)
    at: Mapped[datetime] = mapped_column(Timestamp)
    received_at: Mapped[datetime] = mapped_column(Timestamp)


class Exposure(Base):
    """Distinct units per (experiment, phase, arm): sample-ratio checks and crossover detection."""

    __tablename__ = "exposures"

    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    phase: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    unit_id: Mapped[str] = mapped_column(sa.String(256), primary_key=True)
    arm: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(Timestamp)


class Rollup(Base):
    """Sufficient statistics per (experiment, phase, arm, hour bucket); analysis reads only these."""

    __tablename__ = "rollups"
    __table_args__ = (
        sa.UniqueConstraint("experiment_id", "phase", "arm", "bucket_start"),
        sa.CheckConstraint(_in("arm", ARMS), name="arm"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"))
    phase: Mapped[int] = mapped_column(sa.Integer)
    arm: Mapped[str] = mapped_column(sa.String(10))
    bucket_start: Mapped[datetime] = mapped_column(Timestamp)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class RollupTotal(Base):
    """Every bucket of a phase merged, per (experiment, phase, arm): what analysis reads, so a look
    costs the same on day 1 and day 300.  The roll-up adds to it in the transaction that adds to the buckets."""

    __tablename__ = "rollup_totals"
    __table_args__ = (sa.CheckConstraint(_in("arm", ARMS), name="arm"),)

    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    phase: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    arm: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class Watermark(Base):
    """How far the roll-up has read each event stream (by id), per experiment: "predictions:<id>", "outcomes:<id>"."""

    __tablename__ = "watermarks"

    name: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    last_id: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class Analysis(Base):
    """One analysis run: its inputs' digest, method, parameters, numbers, decision."""

    __tablename__ = "analyses"
    __table_args__ = (
        sa.UniqueConstraint("experiment_id", "slot"),
        sa.CheckConstraint(_in("decision", DECISIONS), name="decision"),
        sa.Index("ix_analyses_experiment_created", "experiment_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"))
    phase: Mapped[int] = mapped_column(sa.Integer)
    slot: Mapped[str] = mapped_column(sa.String(80))  # "task:<uuid>" is 41 characters
    inputs_digest: Mapped[str] = mapped_column(sa.String(64))
    method: Mapped[str] = mapped_column(sa.String(30))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    results: Mapped[dict[str, Any]] = mapped_column(JSONType)
    decision: Mapped[str] = mapped_column(sa.String(10))
    explanation: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class WebhookOutbox(Base):
    """A webhook to deliver, written in the same transaction as the analysis that caused it, so a
    worker that dies after storing the analysis cannot lose the message; delivered marks it sent."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (sa.UniqueConstraint("analysis_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(sa.ForeignKey("analyses.id", ondelete="CASCADE"))
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(sa.Text)
    message: Mapped[dict[str, Any]] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Report(Base):
    """A rendered weekly report (per experiment, or the portfolio when experiment_id is NULL)."""

    __tablename__ = "reports"
    __table_args__ = (
        sa.UniqueConstraint("experiment_id", "week"),
        sa.CheckConstraint("length(week) = 8", name="week_format"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"))
    week: Mapped[str] = mapped_column(sa.String(8))
    title: Mapped[str] = mapped_column(sa.String(200))
    html: Mapped[str] = mapped_column(sa.Text)
    pdf_path: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
