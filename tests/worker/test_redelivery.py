"""Idempotency of the worker's tasks: run twice, and run with the worker SIGKILLed mid-task.

The analysis of a slot is stored once; roll-ups equal the raw rows however many times (and however
violently) the task ran.  Events are bulk-inserted with SQL so the roll-up takes long enough to be
killed in the middle of it.
"""

from __future__ import annotations

import signal
import time

import pytest
import sqlalchemy as sa

from service.app import create_app
from service.worker.celery_app import make_celery
from tests.conftest import make_settings
from tests.harness.processes import Worker, frugal_env
from tests.worker.conftest import record_models, start_experiment
from tests.worker.test_rollup import _assert_equal, _from_rollups, _from_sql

ROWS = 300_000


def json_stats(value):
    import json

    return json.loads(value) if isinstance(value, str) else value


def _bulk_events(db, experiment, champion, challenger, rows: int) -> None:
    with db.unit_of_work() as session:
        session.execute(sa.text("""
            INSERT INTO predictions (request_id, experiment_id, phase, arm, unit_id, model_id, served, in_experiment,
                                     answered_by_id, latency_ms, inference_ms, prediction, label, confidence, cost,
                                     cache_hit, fallback_reason, source, created_at)
            SELECT 'r' || g, :exp, :phase, CASE WHEN g % 2 = 0 THEN 'champion' ELSE 'challenger' END, 'u' || g,
                   CASE WHEN g % 2 = 0 THEN :champ ELSE :chall END, true, true,
                   CASE WHEN g % 2 = 0 THEN :champ ELSE :chall END,
                   5 + (g % 97) / 10.0, 1 + (g % 13) / 10.0, (g % 3 = 0)::int, NULL, 0.9,
                   CASE WHEN g % 2 = 0 THEN 0.001 ELSE 0.0002 END, false, NULL, 'server',
                   timestamptz '2026-11-02 08:00+00' + (g % 600) * interval '1 minute'
            FROM generate_series(1, :rows) AS g"""),
            {"exp": experiment.id, "phase": experiment.current_phase, "champ": champion.id, "chall": challenger.id, "rows": rows})
        session.execute(sa.text("""
            INSERT INTO outcomes (request_id, value, at, received_at)
            SELECT 'r' || g, (g % 5 <> 0)::int, now(), now() FROM generate_series(1, :rows) AS g WHERE g % 4 <> 0"""),
            {"rows": rows})


@pytest.mark.worker
def test_a_task_killed_mid_rollup_is_redelivered_and_counts_everything_once(fresh_pg, redis_url, data_dir, tmp_path):
    from service.store.database import Database

    db = Database(fresh_pg)
    champion, challenger = record_models(db)
    experiment = start_experiment(db, champion, challenger, name="big", mode="ab")
    _bulk_events(db, experiment, champion, challenger, ROWS)

    env = frugal_env(data_dir, fresh_pg, redis_url, FRUGAL_TASK_REDELIVERY_S="3")
    celery = make_celery(create_app(make_settings(data_dir, database_url=fresh_pg, broker_url=redis_url)))
    first = Worker(env, tmp_path / "worker-1.log")
    second = None
    try:
        result = celery.send_task("frugal.analyze", args=[experiment.id, "slot-kill"])
        deadline = time.monotonic() + 120
        while result.state != "STARTED":
            assert time.monotonic() < deadline, first.log()
            time.sleep(0.05)
        first.signal(signal.SIGKILL)
        first.proc.wait(10)
        with db.unit_of_work() as session:
            # killed in the middle: no analysis stored; a roll-up batch is committed whole or not at all
            assert session.scalar(sa.text("SELECT count(*) FROM analyses")) == 0
            rolled_up = session.scalar(sa.text("SELECT last_id FROM watermarks WHERE name = :n"), {"n": f"predictions:{experiment.id}"})
            counted = sum(s["predictions"] for s in (json_stats(r) for r in session.scalars(sa.text("SELECT stats FROM rollups"))))
            assert counted == (rolled_up or 0)

        second = Worker(env, tmp_path / "worker-2.log")
        outcome = result.get(timeout=180)
        assert outcome["created"] is True

        again = celery.send_task("frugal.analyze", args=[experiment.id, "slot-kill"]).get(timeout=120)
        assert again["analysis_id"] == outcome["analysis_id"] and again["created"] is False
        rolled = celery.send_task("frugal.rollup").get(timeout=120)
        assert rolled["predictions"] == 0 and rolled["late_outcomes"] == 0

        with db.unit_of_work() as session:
            assert session.scalar(sa.text("SELECT count(*) FROM analyses WHERE slot = 'slot-kill'")) == 1
        got = _from_rollups(db)
        assert sum(v["predictions"] for v in got.values()) == ROWS
        _assert_equal(got, _from_sql(db))
    finally:
        first.stop()
        if second is not None:
            second.stop()
        db.dispose()
