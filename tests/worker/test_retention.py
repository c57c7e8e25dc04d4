"""Retention deletes raw events that are old *and* rolled up, in batches, and nothing an analysis needs:
the analysis after it has the same inputs as before it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tests.routing.conftest import seed


@pytest.mark.parametrize("own_db", ["postgres", "sqlite"])
def test_retention_deletes_old_rolled_up_events_and_keeps_what_analyses_need(own_db, request, data_dir, demo_models):
    from service.analytics.analyze import analyze
    from service.analytics.rollup import run_rollup
    from service.retention import run_retention
    from service.runtime import Runtime
    from service.store.tables import Outcome, Prediction, Rollup
    from tests.conftest import make_settings

    url = request.getfixturevalue("fresh_pg" if own_db == "postgres" else "sqlite_url")
    s = seed(url, data_dir, demo_models)
    rt = Runtime(make_settings(data_dir, database_url=url))
    now = datetime.now(timezone.utc)
    old, recent = now - timedelta(days=200), now - timedelta(days=1)
    with rt.db.unit_of_work() as session:
        experiment_id = session.execute(sa.text("SELECT id FROM experiments WHERE name = :n"), {"n": s.experiment}).scalar_one()
        model_ids = dict(session.execute(sa.text("SELECT name || ':' || version, id FROM models")).all())

    def add(prefix: str, n: int, at: datetime) -> None:
        with rt.db.unit_of_work() as session:
            for k in range(n):
                arm = ("champion", "challenger")[k % 2]
                model = model_ids[s.champion if arm == "champion" else s.challenger]
                session.add(Prediction(request_id=f"{prefix}-{k}", experiment_id=experiment_id, phase=1, arm=arm,
                                       unit_id=f"{prefix}-u{k}", model_id=model, served=True, in_experiment=True,
                                       answered_by_id=model, latency_ms=2.0 + k % 7, inference_ms=1.0, prediction=float(k % 2),
                                       label=None, confidence=0.9, cost=0.0001, cache_hit=False, fallback_reason=None,
                                       source="server", created_at=at))
                session.add(Outcome(request_id=f"{prefix}-{k}", value=float((k // 2) % 2), at=at, received_at=at))

    add("old", 100, old)
    add("new", 100, recent)
    run_rollup(rt.db)
    add("unread", 40, old)          # old, but the roll-up has not read them yet: never deleted
    before, _ = analyze(rt.db, experiment_id, "before")
    with rt.db.unit_of_work() as session:
        rollups_before = sorted((r.arm, r.bucket_start.isoformat(), str(r.stats)) for r in session.scalars(sa.select(Rollup)))

    result = run_retention(rt.db, days=90, batch=30, now=now)
    assert (result.predictions_deleted, result.outcomes_deleted) == (100, 100)
    assert result.batches >= 8                      # 100 rows of each in batches of 30
    with rt.db.unit_of_work() as session:
        left = sorted(session.scalars(sa.select(Prediction.request_id)))
        outcomes_left = session.scalar(sa.select(sa.func.count()).select_from(Outcome))
        rollups_after = sorted((r.arm, r.bucket_start.isoformat(), str(r.stats)) for r in session.scalars(sa.select(Rollup)))
    assert len(left) == 140 and not any(r.startswith("old-") for r in left)
    assert outcomes_left == 140
    assert rollups_after == rollups_before
    after, _ = analyze(rt.db, experiment_id, "after")
    # the same evidence (the second analysis differs only in counting the first as an earlier look)
    arms = lambda a: a.inputs["decision_inputs"]["arms"]  # noqa: E731
    assert arms(after) == arms(before) and after.decision == before.decision
    assert sum(a["outcomes"] for a in arms(before).values()) == 200

    again = run_retention(rt.db, days=90, batch=30, now=now)
    assert (again.predictions_deleted, again.outcomes_deleted) == (0, 0)   # idempotent
    assert run_retention(rt.db, days=0, batch=30, now=now + timedelta(days=999)).predictions_deleted == 0  # 0 keeps all
    rt.close()
