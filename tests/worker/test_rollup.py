"""Roll-ups equal a direct SQL aggregation of the raw rows, whatever the order events arrive in.

Seeded rounds insert predictions (A/B and shadow), outcomes for some of them (many late: after
their prediction was already rolled up) and run the roll-up between rounds; the summed buckets must
equal what one SQL query computes from the raw tables, and running the roll-up again changes nothing.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service.analytics.rollup import run_rollup
from service.store.rollups import hold_ingest_lock_shared
from service.store.tables import Outcome, Prediction, Rollup
from tests.worker.conftest import record_models, start_experiment

SLO_MS = 20.0
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


def _setup(db):
    champion, challenger = record_models(db)
    slo = {"guardrails": {"latency": {"threshold_ms": SLO_MS, "max_share": 0.1}}}
    ab = start_experiment(db, champion, challenger, name="ab", mode="ab", **slo)
    shadow = start_experiment(db, champion, challenger, name="shadow", mode="shadow", **slo)
    return ab, shadow, champion, challenger


def _round(rng: random.Random, db, ab, shadow, champion, challenger, state: dict) -> None:
    """Insert a random batch of predictions, then outcomes for a random subset of all requests so far."""
    predictions, outcomes = [], []
    for _ in range(rng.randint(20, 120)):
        k = state["next"]
        state["next"] += 1
        at = T0 + timedelta(minutes=rng.randint(0, 300))
        exp = ab if rng.random() < 0.5 else shadow
        request_id = f"r{k}"
        base = dict(request_id=request_id, experiment_id=exp.id, phase=exp.current_phase, unit_id=f"u{rng.randint(0, 40)}",
                    in_experiment=rng.random() > 0.05, label=None, confidence=0.9, cache_hit=rng.random() < 0.1,
                    fallback_reason=None, source="server", created_at=at)
        if exp.mode == "ab":
            arm = rng.choice(["champion", "challenger"])
            model = champion if arm == "champion" else challenger
            predictions.append(dict(base, arm=arm, model_id=model.id, answered_by_id=model.id, served=True,
                                    latency_ms=rng.lognormvariate(2.5, 0.6), inference_ms=rng.uniform(0.1, 5),
                                    prediction=float(rng.random() < 0.5), cost=rng.uniform(0, 0.002)))
        else:
            for arm, model, served in (("champion", champion, True), ("challenger", challenger, False)):
                if arm == "challenger" and rng.random() < 0.1:
                    continue  # a dropped shadow sample: no pair
                predictions.append(dict(base, arm=arm, model_id=model.id, answered_by_id=model.id, served=served,
                                        latency_ms=rng.lognormvariate(2.5, 0.6), inference_ms=rng.uniform(0.1, 5),
                                        prediction=float(rng.random() < 0.5), cost=rng.uniform(0, 0.002)))
        state["pending"].append(request_id)
    rng.shuffle(state["pending"])
    keep = []
    for request_id in state["pending"]:
        if rng.random() < 0.4:
            outcomes.append(dict(request_id=request_id, value=float(rng.random() < 0.5), at=T0, received_at=T0))
        elif rng.random() < 0.7:
            keep.append(request_id)  # its outcome may come in a later round (late), or never
    state["pending"] = keep
    with db.unit_of_work() as session:
        hold_ingest_lock_shared(session)  # as the event writers do: the roll-up's barrier waits for them
        if predictions:
            session.execute(sa.insert(Prediction), predictions)
        if outcomes:
            session.execute(sa.insert(Outcome), outcomes)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def _from_rollups(db) -> dict:
    totals: dict = defaultdict(lambda: defaultdict(float))
    with db.unit_of_work() as session:
        for row in session.scalars(sa.select(Rollup)):
            t = totals[(row.experiment_id, row.arm, _naive_utc(row.bucket_start))]
            s = row.stats
            t["predictions"] += s["predictions"]
            t["served"] += s["served"]
            t["cache_hits"] += s["cache_hits"]
            t["slow"] += s["latency_slow"]
            t["latency_sum"] += s["latency"]["sum"]
            t["cost_sum"] += s["cost"]["sum"]
            t["outcomes"] += s["quality"]["n"]
            t["correct"] += s["quality"]["sum"]
            t["paired_n"] += s["paired"]["n"]
            t["paired_sum"] += s["paired"]["sum"]
    return {k: dict(v) for k, v in totals.items()}


def _from_sql(db) -> dict:
    """The same statistics straight from the raw rows."""
    totals: dict = defaultdict(lambda: defaultdict(float))
    with db.unit_of_work() as session:
        rows = session.execute(
            sa.select(Prediction.experiment_id, Prediction.arm, Prediction.created_at, Prediction.served, Prediction.cache_hit,
                      Prediction.latency_ms, Prediction.cost, Prediction.prediction, Prediction.request_id, Outcome.value)
            .outerjoin(Outcome, Outcome.request_id == Prediction.request_id)
            .where(Prediction.in_experiment.is_(True))).all()
        modes = dict(session.execute(sa.text("SELECT id, mode FROM experiments")).all())
    by_request: dict = defaultdict(dict)
    for exp_id, arm, at, served, hit, latency, cost, prediction, request_id, outcome in rows:
        bucket = _naive_utc(at).replace(minute=0, second=0, microsecond=0)
        t = totals[(exp_id, arm, bucket)]
        t["predictions"] += 1
        t["served"] += int(served)
        t["cache_hits"] += int(hit)
        t["slow"] += int(latency > SLO_MS)
        t["latency_sum"] += latency
        t["cost_sum"] += cost
        if outcome is not None:
            t["outcomes"] += 1
            t["correct"] += float(prediction == outcome)
            if modes[exp_id] == "shadow":
                by_request[request_id][arm] = (float(prediction == outcome), exp_id, bucket)
    for arms in by_request.values():
        if "champion" in arms and "challenger" in arms:
            value, exp_id, bucket = arms["challenger"]
            t = totals[(exp_id, "challenger", bucket)]
            t["paired_n"] += 1
            t["paired_sum"] += value - arms["champion"][0]
    return {k: dict(v) for k, v in totals.items()}


def _assert_equal(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key in want:
        for name, value in want[key].items():
            assert got[key].get(name, 0) == pytest.approx(value, rel=1e-9, abs=1e-9), (key, name)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_equal_a_direct_sql_aggregation_with_late_outcomes(own_db, seed):
    rng = random.Random(seed)
    ab, shadow, champion, challenger = _setup(own_db)
    state = {"next": 0, "pending": []}
    late = 0
    for _ in range(6):
        _round(rng, own_db, ab, shadow, champion, challenger, state)
        late += run_rollup(own_db).late_outcomes
    assert late > 0, "the seeded rounds must exercise late outcomes"
    want = _from_sql(own_db)
    got = _from_rollups(own_db)
    assert sum(v.get("paired_n", 0) for v in want.values()) > 0
    _assert_equal(got, want)

    again = run_rollup(own_db)
    assert (again.predictions, again.late_outcomes, again.buckets) == (0, 0, 0)
    assert _from_rollups(own_db) == got


def test_latency_sketches_count_every_prediction(own_db):
    from analysis.sketch import LatencySketch

    rng = random.Random(7)
    ab, shadow, champion, challenger = _setup(own_db)
    state = {"next": 0, "pending": []}
    for _ in range(3):
        _round(rng, own_db, ab, shadow, champion, challenger, state)
        run_rollup(own_db)
    with own_db.unit_of_work() as session:
        buckets = list(session.scalars(sa.select(Rollup)))
        for row in buckets:
            sketch = LatencySketch.from_dict(row.stats["latency_sketch"])
            assert sketch.count == row.stats["predictions"]


def test_concurrent_rollups_while_events_arrive_count_everything_once(fresh_pg):
    """Two roll-ups racing each other and the writers: the totals still equal the raw rows."""
    from service.store.database import Database

    db = Database(fresh_pg)
    try:
        rng = random.Random(11)
        ab, shadow, champion, challenger = _setup(db)
        state = {"next": 0, "pending": []}
        errors: list[BaseException] = []
        stop = threading.Event()

        def roll() -> None:
            try:
                while not stop.is_set():
                    run_rollup(db)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=roll) for _ in range(2)]
        for t in threads:
            t.start()
        for _ in range(8):
            _round(rng, db, ab, shadow, champion, challenger, state)
        stop.set()
        for t in threads:
            t.join(60)
        assert not errors, errors
        run_rollup(db)
        _assert_equal(_from_rollups(db), _from_sql(db))
    finally:
        db.dispose()
