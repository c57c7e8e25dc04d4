"""Migration 0007 keeps what was rolled up: phase totals from the existing buckets, and each
experiment's watermarks where the global ones were (so nothing is counted twice or skipped)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from service.migrate import upgrade
from service.store.database import make_engine
from tests.harness import servers

NOW = "2026-11-02 08:00:00"


def _bucket(n: int, bins: dict[str, int]) -> dict:
    return {"predictions": n, "served": n, "fallbacks": 0, "cache_hits": 1, "outcomes": n - 1, "latency_slow": 2,
            "latency": {"n": n, "sum": 10.0 * n, "sum_sq": 100.0 * n}, "inference": {"n": n, "sum": 1.0, "sum_sq": 1.0},
            "cost": {"n": n, "sum": 0.5, "sum_sq": 0.25}, "quality": {"n": n - 1, "sum": 2.0, "sum_sq": 2.0},
            "paired": {"n": 0, "sum": 0.0, "sum_sq": 0.0},
            "latency_sketch": {"relative_accuracy": 0.01, "zero": 1, "bins": bins}}


@pytest.fixture(params=["postgres", "sqlite"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield engine
        engine.dispose()
        return
    admin = request.getfixturevalue("pg_admin_url")
    url = servers.create_database(admin)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    servers.drop_database(admin, url)


def test_0007_backfills_phase_totals_and_per_experiment_watermarks(engine):
    upgrade(engine, "0001")
    with engine.begin() as conn:
        for name in ("a", "b"):
            conn.execute(sa.text("INSERT INTO models (name, version, task, digest, file_size, signature, description, created_at) "
                                 "VALUES (:n, '1', 'binary', :d, 1, '{}', '', :t)"), {"n": name, "d": name * 64, "t": NOW})
        for name in ("x", "y"):
            conn.execute(sa.text(
                "INSERT INTO experiments (name, mode, state, definition, champion_model_id, challenger_model_id, coverage_bp, "
                "ramp_step, current_phase, served_arm, revision, created_at, updated_at) "
                "VALUES (:n, 'ab', 'running', '{}', 1, 2, 10000, 0, 1, 'champion', 1, :t, :t)"), {"n": name, "t": NOW})
        for hour, (n, bins) in enumerate([(3, {"10": 2}), (4, {"10": 1, "12": 2})]):
            conn.execute(sa.text("INSERT INTO rollups (experiment_id, phase, arm, bucket_start, stats, updated_at) "
                                 "VALUES (1, 1, 'champion', :b, :s, :t)"),
                         {"b": f"2026-11-02 0{hour}:00:00", "s": json.dumps(_bucket(n, bins)), "t": NOW})
        conn.execute(sa.text("INSERT INTO watermarks (name, last_id, updated_at) VALUES ('predictions', 70, :t), "
                             "('outcomes', 40, :t)"), {"t": NOW})
    upgrade(engine)
    with engine.connect() as conn:
        [(stats,)] = conn.execute(sa.text("SELECT stats FROM rollup_totals WHERE experiment_id = 1 AND phase = 1 "
                                          "AND arm = 'champion'")).all()
        marks = dict(conn.execute(sa.text("SELECT name, last_id FROM watermarks")).all())
    stats = json.loads(stats) if isinstance(stats, str) else stats
    assert stats["predictions"] == 7 and stats["outcomes"] == 5 and stats["latency"] == {"n": 7, "sum": 70.0, "sum_sq": 700.0}
    assert stats["latency_sketch"] == {"relative_accuracy": 0.01, "zero": 2, "bins": {"10": 3, "12": 2}}
    assert marks == {"predictions:1": 70, "outcomes:1": 40, "predictions:2": 70, "outcomes:2": 40}
