"""Roll-up phase totals and per-experiment watermarks.

Why (issue 18): analysis merged every hourly bucket of a phase at each look, so its cost grew with
the experiment's length (1,441 buckets took 0.65 s, and counting distinct units more); ``rollup_totals`` holds each phase's buckets
already merged, per arm, kept by the roll-up in the transaction that adds to the buckets.  And one
global pair of watermarks meant one roll-up at a time: each experiment now has its own
("predictions:<id>", "outcomes:<id>"), so workers roll up different experiments in parallel.

Data: totals are backfilled from the existing buckets (counts, moments and latency-sketch bins add)
and the phase's distinct units per arm and units in both arms from ``exposures``;
each experiment's watermarks start where the global ones were, which are then removed.  The merge
is written out here because migrations never import live code.

Revision ID: 0007
Revises: 0001
Create Date: 2026-12-04 03:30:00
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "rollup_totals",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(length=10), nullable=False),
        sa.Column("stats", JSONType, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("arm IN ('champion', 'challenger')", name=op.f("ck_rollup_totals_arm")),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], name=op.f("fk_rollup_totals_experiment_id_experiments"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("experiment_id", "phase", "arm", name=op.f("pk_rollup_totals")),
    )
    conn = op.get_bind()
    now = datetime.now(timezone.utc)
    totals: dict[tuple[int, int, str], dict] = {}
    for experiment_id, phase, arm, stats in conn.execute(sa.text("SELECT experiment_id, phase, arm, stats FROM rollups")):
        stats = json.loads(stats) if isinstance(stats, str) else stats
        key = (experiment_id, phase, arm)
        totals[key] = _merge(totals[key], stats) if key in totals else stats
    units = {(e, p, a): n for e, p, a, n in conn.execute(sa.text(
        "SELECT experiment_id, phase, arm, count(*) FROM exposures GROUP BY experiment_id, phase, arm"))}
    both = {(e, p): n for e, p, n in conn.execute(sa.text(
        "SELECT experiment_id, phase, count(*) FROM (SELECT experiment_id, phase, unit_id FROM exposures "
        "GROUP BY experiment_id, phase, unit_id HAVING count(*) > 1) AS u GROUP BY experiment_id, phase"))}
    for (e, p, a), stats in totals.items():  # the unit counts analysis reads instead of counting exposures
        stats["exposures"] = int(units.get((e, p, a), 0))
        stats["units_in_both_arms"] = int(both.get((e, p), 0))
    table = sa.table("rollup_totals", sa.column("experiment_id"), sa.column("phase"), sa.column("arm"),
                     sa.column("stats", JSONType), sa.column("updated_at"))
    if totals:
        op.bulk_insert(table, [{"experiment_id": e, "phase": p, "arm": a, "stats": s, "updated_at": now}
                               for (e, p, a), s in totals.items()])

    marks = dict(conn.execute(sa.text("SELECT name, last_id FROM watermarks WHERE name IN ('predictions', 'outcomes')")).all())
    if marks:
        for (experiment_id,) in conn.execute(sa.text("SELECT id FROM experiments")).all():
            for stream in ("predictions", "outcomes"):
                conn.execute(sa.text("INSERT INTO watermarks (name, last_id, updated_at) VALUES (:n, :v, :t)"),
                             {"n": f"{stream}:{experiment_id}", "v": marks.get(stream, 0), "t": now})
        conn.execute(sa.text("DELETE FROM watermarks WHERE name IN ('predictions', 'outcomes')"))


def _merge(a: dict, b: dict) -> dict:
    out: dict = {}
    for name in set(a) | set(b):
        x, y = a.get(name), b.get(name)
        if name == "latency_sketch":
            out[name] = _merge_sketch(x, y)
        elif isinstance(x, dict) or isinstance(y, dict):
            x, y = x or {}, y or {}
            out[name] = {k: x.get(k, 0) + y.get(k, 0) for k in set(x) | set(y)}
        else:
            out[name] = (x or 0) + (y or 0)
    return out


def _merge_sketch(x: dict | None, y: dict | None) -> dict | None:
    if not x or not y:
        return x or y
    bins = {int(k): int(v) for k, v in (x.get("bins") or {}).items()}
    for k, v in (y.get("bins") or {}).items():
        bins[int(k)] = bins.get(int(k), 0) + int(v)
    return {"relative_accuracy": x.get("relative_accuracy", 0.01), "zero": int(x.get("zero", 0)) + int(y.get("zero", 0)),
            "bins": {str(k): c for k, c in sorted(bins.items())}}


def downgrade() -> None:
    """Back to global watermarks at the lowest experiment's marks: events between that and another
    experiment's marks would be counted again by the old roll-up, so clear rollups before downgrading."""
    conn = op.get_bind()
    low = conn.execute(sa.text("SELECT "
                               "(SELECT min(last_id) FROM watermarks WHERE name LIKE 'predictions:%'), "
                               "(SELECT min(last_id) FROM watermarks WHERE name LIKE 'outcomes:%')")).one()
    conn.execute(sa.text("DELETE FROM watermarks WHERE name LIKE 'predictions:%' OR name LIKE 'outcomes:%'"))
    now = datetime.now(timezone.utc)
    for stream, value in zip(("predictions", "outcomes"), low):
        if value is not None:
            conn.execute(sa.text("INSERT INTO watermarks (name, last_id, updated_at) VALUES (:n, :v, :t)"),
                         {"n": stream, "v": value, "t": now})
    op.drop_table("rollup_totals")
