"""A seeded experiment for report tests: synthetic hourly roll-ups over last week, analysed after each day by
the real analysis use case (``service.analytics.analyze.analyze``), plus audit events in that week.

The database is made once per session (seeding runs the analysis six times); tests that write reports
either roll back (the in-process app) or upsert, which is idempotent.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import sqlalchemy as sa

from tests.harness import servers
from tests.worker.conftest import record_models, start_experiment

NAME = "churn-cheap"
DAYS = 6
PER_ARM_PER_DAY = 3_000
ACCURACY = {"champion": 0.92, "challenger": 0.918}
COST_PER_REQUEST = {"champion": 0.001, "challenger": 0.0002}
LATENCY_MEDIAN_MS = {"champion": 42.0, "challenger": 9.0}
SLO_MS = 120.0


def _bucket_stats(rng, arm: str, n: int, cost_rng=None) -> dict:
    from analysis.sketch import LatencySketch
    from service.analytics.rollup import empty_stats

    stats = empty_stats()
    successes = int(rng.binomial(n, ACCURACY[arm]))
    latencies = rng.lognormal(np.log(LATENCY_MEDIAN_MS[arm]), 0.45, size=n)
    # each request's cost varies around the arm's mean, as measured CPU times do (sd 30% of the mean)
    # (drawn from a generator of their own, so the quality and latency draws stay those of the seed)
    costs = COST_PER_REQUEST[arm] * (cost_rng or np.random.default_rng(n)).lognormal(-0.5 * 0.3**2, 0.3, size=n)
    stats.update(predictions=n, served=n, outcomes=n, latency_slow=int((latencies > SLO_MS).sum()))
    stats["quality"] = {"n": n, "sum": float(successes), "sum_sq": float(successes)}
    stats["latency"] = {"n": n, "sum": float(latencies.sum()), "sum_sq": float((latencies**2).sum())}
    stats["inference"] = dict(stats["latency"])
    stats["cost"] = {"n": n, "sum": float(costs.sum()), "sum_sq": float((costs**2).sum())}
    sketch = LatencySketch()
    sketch.add_many(latencies)
    stats["latency_sketch"] = sketch.to_dict()
    return stats


def seed(url: str, settings) -> dict:
    """Seed ``url`` (migrated) and return what the tests need to know about it."""
    from service.analytics.analyze import analyze
    from service.reports.weeks import IsoWeek
    from service.store import experiments as experiment_store
    from service.store import rollups as rollup_store
    from service.store.database import Database
    from service.store.tables import Analysis, ExperimentPhase, Exposure

    db = Database(url)
    week = IsoWeek.previous(datetime.now(timezone.utc), settings.report_timezone)
    monday, _ = week.bounds(settings.report_timezone)
    champion, challenger = record_models(db, costs=(1.0, 0.2))
    record = start_experiment(
        db, champion, challenger, name=NAME,
        guardrails={"latency": {"threshold_ms": SLO_MS, "max_share": 0.05}, "cost_must_be_lower": True},
        design={"alpha": 0.05, "power": 0.8, "planned_n_per_arm": 40_000, "method": "asymptotic_cs"})
    rng, cost_rng = np.random.default_rng(7), np.random.default_rng(8)
    with db.unit_of_work() as session:  # the experiment started that Monday, when its traffic begins
        session.execute(sa.update(ExperimentPhase).where(ExperimentPhase.experiment_id == record.id)
                        .values(started_at=monday + timedelta(hours=8)))
    analyses = []
    for day in range(DAYS):
        start = monday + timedelta(days=day, hours=8)
        with db.unit_of_work() as session:
            for hour in range(2):
                bucket = (start + timedelta(hours=hour)).replace(tzinfo=None)
                for arm in ("champion", "challenger"):
                    stats = _bucket_stats(rng, arm, PER_ARM_PER_DAY // 2, cost_rng)
                    rollup_store.save_bucket(session, None, (record.id, 1, arm, bucket), stats, start)
            session.execute(sa.insert(Exposure), [  # distinct units per arm, as the roll-up records them
                {"experiment_id": record.id, "phase": 1, "unit_id": f"d{day}-{arm}-{k}", "arm": arm, "first_seen_at": start}
                for arm in ("champion", "challenger") for k in range(PER_ARM_PER_DAY)])
        analysis, _ = analyze(db, record.id, f"seed-day-{day}")
        at = start + timedelta(hours=3)
        with db.unit_of_work() as session:  # the analysis ran that day: the history spreads over the week
            session.execute(sa.update(Analysis).where(Analysis.id == analysis.id).values(created_at=at))
        analyses.append(analysis.id)
        if day == 2:
            with db.unit_of_work() as session:
                experiment_store.add_event(session, record.id, kind="ramp", actor="automation",
                                           reason="guardrails hold: next ramp step", now=at + timedelta(minutes=5),
                                           data={"step": 1, "coverage_bp": 5000, "from_coverage_bp": 1000})
    db.dispose()
    return {"experiment_id": record.id, "name": NAME, "week": week, "analysis_ids": analyses}


@pytest.fixture(scope="session")
def seeded(pg_admin_url, tmp_path_factory):
    """A migrated, seeded Postgres database shared by the report tests: {"url", "week", "name", ...}."""
    from service.migrate import upgrade
    from service.store.database import make_engine
    from tests.conftest import make_settings

    url = servers.create_database(pg_admin_url)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    settings = make_settings(tmp_path_factory.mktemp("seed-data"), database_url=url)
    info = seed(url, settings)
    yield {"url": url, **info}
    servers.drop_database(pg_admin_url, url)


FRESH_NAME = "churn-fresh"
FRESH_AGE = timedelta(minutes=10)
FRESH_PER_ARM = 600
FRESH_MEMORY_MB = {"champion": 2.9, "challenger": 0.8}


def seed_fresh(url: str) -> dict:
    """An experiment started ten minutes ago: one roll-up bucket per arm, its first analysis now, and benchmark
    profiles (memory) on its models."""
    from service.analytics.analyze import analyze
    from service.store import models as model_store
    from service.store import rollups as rollup_store
    from service.store.database import Database
    from service.store.tables import ExperimentPhase, Exposure

    db = Database(url)
    now = datetime.now(timezone.utc)
    started = now - FRESH_AGE
    models = record_models(db, names=("fresh-champion", "fresh-challenger"), costs=(None, None))
    with db.unit_of_work() as session:
        for model, arm in zip(models, ("champion", "challenger")):
            model_store.set_profile(session, model.id, {"memory_mb": FRESH_MEMORY_MB[arm], "cpu_ms_per_prediction": 0.02})
    record = start_experiment(db, *models, name=FRESH_NAME, guardrails={"latency": {"threshold_ms": SLO_MS, "max_share": 0.05}},
                              design={"alpha": 0.05, "power": 0.8, "planned_n_per_arm": 40_000, "method": "asymptotic_cs"})
    rng = np.random.default_rng(11)
    with db.unit_of_work() as session:
        session.execute(sa.update(ExperimentPhase).where(ExperimentPhase.experiment_id == record.id).values(started_at=started))
        bucket = started.replace(minute=0, second=0, microsecond=0).replace(tzinfo=None)
        for arm in ("champion", "challenger"):
            rollup_store.save_bucket(session, None, (record.id, 1, arm, bucket), _bucket_stats(rng, arm, FRESH_PER_ARM), now)
        session.execute(sa.insert(Exposure), [
            {"experiment_id": record.id, "phase": 1, "unit_id": f"fresh-{arm}-{k}", "arm": arm, "first_seen_at": started}
            for arm in ("champion", "challenger") for k in range(FRESH_PER_ARM)])
    analysis, _ = analyze(db, record.id, "fresh-1")
    db.dispose()
    return {"name": FRESH_NAME, "experiment_id": record.id, "analysis_id": analysis.id, "started": started}


@pytest.fixture(scope="session")
def seeded_two(pg_admin_url, tmp_path_factory):
    """A database with the week-old experiment (``seed``) and one ten minutes old (``seed_fresh``)."""
    from service.migrate import upgrade
    from service.store.database import make_engine
    from tests.conftest import make_settings

    url = servers.create_database(pg_admin_url)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    settings = make_settings(tmp_path_factory.mktemp("seed-two"), database_url=url)
    week = seed(url, settings)
    fresh = seed_fresh(url)
    yield {"url": url, "week_old": week, "fresh": fresh}
    servers.drop_database(pg_admin_url, url)
