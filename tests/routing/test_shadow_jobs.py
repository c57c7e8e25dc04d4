"""Shadow jobs, in one process, on both backends: the router's event log writes a job with its
served row, a scorer turns it into the challenger's row (built like a served one) and deletes it;
old jobs are dropped and counted; replays queue and store nothing twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tests.routing.conftest import seed


@pytest.fixture(params=["postgres", "sqlite"])
def rig(request, data_dir, demo_models):
    from service.eventlog import event_log
    from service.routing.runtime import catalog, router
    from service.runtime import Runtime
    from tests.conftest import make_settings

    url = request.getfixturevalue("fresh_pg" if request.param == "postgres" else "sqlite_url")
    s = seed(url, data_dir, demo_models, mode="shadow", shadow_sample=1.0)
    rt = Runtime(make_settings(data_dir, database_url=url, shadow_max_age_s=60))
    config = catalog(rt).get(s.experiment)
    yield {"rt": rt, "router": router(rt), "log": event_log(rt), "seeded": s, "config": config}
    rt.close()


def _rows(rt, sql: str) -> list:
    with rt.db.engine.connect() as conn:
        return conn.execute(sa.text(sql)).all()


def _drain(scorer) -> int:
    claimed = 0
    while True:
        result = scorer.score_batch()
        claimed += result.claimed
        if not result.claimed and not result.expired:
            return claimed


def test_a_shadow_request_queues_one_job_and_the_scorer_writes_the_challengers_row_like_a_served_one(rig):
    from service.registry import prediction_cost
    from service.scorer import Scorer

    rt, s, config = rig["rt"], rig["seeded"], rig["config"]
    answers = [rig["router"].predict(s.experiment, [(f"u{i}", s.features, f"job-{i}")])[0] for i in range(30)]
    assert all(a.arm == "champion" for a in answers)
    assert rig["log"].flush(timeout=30)
    assert rig["router"].stats.shadow_sampled == 30
    jobs = _rows(rt, "SELECT request_id, overhead_ms FROM shadow_jobs ORDER BY request_id")
    assert sorted(j.request_id for j in jobs) == sorted(a.request_id for a in answers)
    assert _rows(rt, "SELECT count(*) FROM predictions WHERE NOT served")[0][0] == 0   # nothing scored on the web side

    scorer = Scorer(rt)
    assert _drain(scorer) == 30 and scorer.stats.scored == 30
    assert _rows(rt, "SELECT count(*) FROM shadow_jobs")[0][0] == 0
    served = {r.request_id: r for r in _rows(rt, "SELECT * FROM predictions WHERE served")}
    shadow = {r.request_id: r for r in _rows(rt, "SELECT * FROM predictions WHERE NOT served")}
    assert set(shadow) == set(served) == {a.request_id for a in answers}
    overhead = {j.request_id: j.overhead_ms for j in jobs}
    for rid, row in shadow.items():
        assert row.arm == "challenger" and row.model_id == config.challenger.primary.id and row.in_experiment
        assert row.inference_ms > 0
        assert row.latency_ms == pytest.approx(overhead[rid] + row.inference_ms)
        # the shared cost function, on the challenger's own one-row run
        assert row.cost == pytest.approx(prediction_cost(config.challenger.primary.cost_per_1k, row.inference_ms, rt.settings))
        assert str(row.created_at)[:19] == str(served[rid].created_at)[:19]   # the request's time, not the scoring time
        assert row.phase == served[rid].phase


def test_jobs_older_than_the_bound_are_dropped_and_counted_for_the_experiment(rig):
    from service.eventlog import ShadowJobEvent
    from service.scorer import Scorer
    from service.store.shadow import DropReason, dropped

    rt, s, config = rig["rt"], rig["seeded"], rig["config"]
    old = datetime.now(timezone.utc) - timedelta(seconds=120)   # the bound is 60 s here
    assert rig["log"].record_many([ShadowJobEvent(f"old-{i}", config.id, config.phase, "u", s.features, 1.0, old)
                                   for i in range(7)])
    rig["router"].predict(s.experiment, [("u", s.features, "fresh-1")])
    assert rig["log"].flush(timeout=30)
    scorer = Scorer(rt)
    _drain(scorer)
    assert scorer.stats.expired == 7 and scorer.stats.scored == 1
    with rt.db.unit_of_work() as session:
        assert dropped(session, config.id) == {DropReason.EXPIRED: 7}
        assert dropped(session, config.id, config.phase + 1) == {}
    assert [r.request_id for r in _rows(rt, "SELECT request_id FROM predictions WHERE NOT served")] == ["fresh-1"]
    assert _rows(rt, "SELECT count(*) FROM shadow_jobs")[0][0] == 0
    # counts add up across batches
    assert rig["log"].record_many([ShadowJobEvent("old-again", config.id, config.phase, "u", s.features, 1.0, old)])
    assert rig["log"].flush(timeout=30)
    _drain(scorer)
    with rt.db.unit_of_work() as session:
        assert dropped(session, config.id) == {DropReason.EXPIRED: 8}
    # the analysis states them with its decision (and the report shows results["shadow"])
    from service.analytics.analyze import analyze
    from service.analytics.rollup import run_rollup

    run_rollup(rt.db)
    analysis, _ = analyze(rt.db, config.id, "test-slot")
    assert analysis.results["shadow"] == {"dropped": 8, "expired": 8, "failed": 0}
    assert "8 shadow samples dropped" in analysis.explanation


def test_a_replayed_job_is_queued_once_and_a_rescored_one_stores_no_second_row(rig):
    from service.eventlog import ShadowJobEvent
    from service.scorer import Scorer

    rt, s, config = rig["rt"], rig["seeded"], rig["config"]
    job = ShadowJobEvent("replayed", config.id, config.phase, "u", s.features, 2.0, datetime.now(timezone.utc))
    assert rig["log"].record_many([job]) and rig["log"].record_many([job])   # say, a spool file replayed twice
    assert rig["log"].flush(timeout=30)
    assert _rows(rt, "SELECT count(*) FROM shadow_jobs")[0][0] == 1
    scorer = Scorer(rt)
    _drain(scorer)
    assert rig["log"].record_many([job]) and rig["log"].flush(timeout=30)   # replayed after it was scored
    _drain(scorer)
    assert scorer.stats.scored == 2
    assert _rows(rt, "SELECT count(*) FROM predictions WHERE request_id = 'replayed'")[0][0] == 1


def test_the_writer_never_separates_a_job_from_the_served_row_before_it(data_dir, sqlite_url):
    """A batch boundary falls before a served row, never between it and its job: the two commit together."""
    from service.eventlog import EventLog, OutcomeEvent, ShadowJobEvent
    from service.runtime import Runtime
    from tests.conftest import make_settings

    rt = Runtime(make_settings(data_dir, database_url=sqlite_url, event_batch_size=2))
    log = EventLog(rt.db, rt.settings)
    now = datetime.now(timezone.utc)
    outcome = OutcomeEvent("o", 1.0, now, now)
    job = ShadowJobEvent("j", 1, 1, "u", [0.0], 0.0, now)
    log._queue.extend([outcome, outcome, job, job, outcome])   # stand-ins: two rows, then a row's jobs
    log._closed = True   # _take without waiting
    assert [type(e).__name__ for e in log._take()] == ["OutcomeEvent", "OutcomeEvent", "ShadowJobEvent", "ShadowJobEvent"]
    assert [type(e).__name__ for e in log._take()] == ["OutcomeEvent"]
    rt.close()


def test_a_job_whose_row_the_database_refuses_is_counted_and_does_not_block_the_queue(rig):
    from service.eventlog import ShadowJobEvent
    from service.scorer import Scorer
    from service.store.shadow import DropReason, dropped

    rt, s, config = rig["rt"], rig["seeded"], rig["config"]
    now = datetime.now(timezone.utc)
    # a negative overhead makes a negative latency, which the predictions table's check refuses
    jobs = [ShadowJobEvent(f"ok-{i}", config.id, config.phase, "u", s.features, 1.0, now) for i in range(5)]
    jobs.insert(2, ShadowJobEvent("poison", config.id, config.phase, "u", s.features, -1e9, now))
    assert rig["log"].record_many(jobs) and rig["log"].flush(timeout=30)
    scorer = Scorer(rt)
    _drain(scorer)
    assert scorer.stats.scored == 5 and scorer.stats.failed == 1
    assert sorted(r[0] for r in _rows(rt, "SELECT request_id FROM predictions")) == [f"ok-{i}" for i in range(5)]
    assert _rows(rt, "SELECT count(*) FROM shadow_jobs")[0][0] == 0
    with rt.db.unit_of_work() as session:
        assert dropped(session, config.id) == {DropReason.FAILED: 1}
    # alone in its batch too
    assert rig["log"].record_many([ShadowJobEvent("poison-2", config.id, config.phase, "u", s.features, -1e9, now)])
    assert rig["log"].flush(timeout=30)
    _drain(scorer)
    with rt.db.unit_of_work() as session:
        assert dropped(session, config.id) == {DropReason.FAILED: 2}


def test_a_batch_requests_rows_are_scored_in_one_run_as_the_champion_served_them(rig):
    """A 40-row request is one champion run, each row charged a 40th: the challenger's rows for it
    must be one run too, or the challenger pays forty single-row runs and looks dearer than it is."""
    from service.routing.runtime import model_runner
    from service.scorer import Scorer

    rt, s = rig["rt"], rig["seeded"]
    single = [rig["router"].predict(s.experiment, [(f"s{i}", s.features, f"single-{i}")])[0] for i in range(3)]
    batch = rig["router"].predict(s.experiment, [(f"b{i}", s.features, f"batch-{i}") for i in range(40)])
    assert rig["log"].flush(timeout=30)

    real, runs = model_runner(rt), []

    def counting(spec, rows, use_cache):   # the web workers' real runner, counting its runs
        runs.append((spec.id, len(rows)))
        return real(spec, rows, use_cache)

    scorer = Scorer(rt, run_model=counting)
    assert _drain(scorer) == 43 and scorer.stats.scored == 43
    config = rig["config"]
    assert sorted(n for model, n in runs if model == config.challenger.primary.id) == [1, 1, 1, 40]
    # the champion, timed beside it for the cost comparison (FRUGAL_SHADOW_REFERENCE_SHARE = 1): the same runs
    assert sorted(n for model, n in runs if model == config.champion.primary.id) == [1, 1, 1, 40]
    shadow = {r.request_id: r for r in _rows(rt, "SELECT request_id, inference_ms, cost, reference_cost "
                                                 "FROM predictions WHERE NOT served")}
    assert set(shadow) == {a.request_id for a in single + batch}
    shares = {round(shadow[a.request_id].inference_ms, 9) for a in batch}
    assert len(shares) == 1   # every row of the request is charged the same share of its one run
    assert all(r.reference_cost is not None and r.reference_cost > 0 for r in shadow.values())
    assert len({round(shadow[a.request_id].reference_cost, 15) for a in batch}) == 1   # and so is the champion's
    served = _rows(rt, "SELECT reference_cost FROM predictions WHERE served")
    assert served and all(r.reference_cost is None for r in served)   # only a shadow challenger's row has one


@pytest.mark.parametrize("how", ["share 0", "champion fails"])
def test_a_request_without_the_champions_timing_is_still_scored(rig, data_dir, how):
    """FRUGAL_SHADOW_REFERENCE_SHARE=0 runs only the challenger; a champion run that fails in the scorer
    costs the challenger's rows only their reference_cost, never the row itself."""
    from service.routing.runtime import model_runner
    from service.runtime import Runtime
    from service.scorer import Scorer
    from tests.conftest import make_settings

    s, config = rig["seeded"], rig["config"]
    answers = rig["router"].predict(s.experiment, [(f"u{i}", s.features, f"req-{i}") for i in range(5)])
    assert rig["log"].flush(timeout=30)
    rt = Runtime(make_settings(data_dir, database_url=rig["rt"].settings.database_url, shadow_max_age_s=60,
                               shadow_reference_share=0.0 if how == "share 0" else 1.0))
    try:
        real, runs = model_runner(rt), []

        def runner(spec, rows, use_cache):
            runs.append(spec.id)
            if spec.id == config.champion.primary.id and how == "champion fails":
                raise RuntimeError("the champion's session broke in this scorer")
            return real(spec, rows, use_cache)

        scorer = Scorer(rt, run_model=runner)
        assert _drain(scorer) == 5 and scorer.stats.scored == 5 and scorer.stats.failed == 0
        expected = {config.challenger.primary.id} | ({config.champion.primary.id} if how == "champion fails" else set())
        assert set(runs) == expected
        shadow = _rows(rt, "SELECT request_id, reference_cost FROM predictions WHERE NOT served")
        assert {r.request_id for r in shadow} == {a.request_id for a in answers}
        assert all(r.reference_cost is None for r in shadow)
    finally:
        rt.close()
