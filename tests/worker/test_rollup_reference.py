"""The set-based SQL roll-up gives the buckets the Python fold it replaced gave, on a shared fixture.

Two databases get the same events in the same rounds (A/B and shadow experiments, every quality
kind, label-only predictions, fallbacks, cache hits, zero and sub-microsecond latencies, time stamps
in a non-UTC zone, outcomes that arrive late); one is rolled up by ``tests/worker/reference_fold.py``
(the old code, unchanged) and the other by ``service.analytics.rollup``, round for round.  Every
count, every moment's n and every latency-sketch bin must be equal; sums of floats may differ only
in the last bits, as the database adds them in its own order (relative 1e-12).
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service.analytics.rollup import COUNTS, MOMENTS, run_rollup
from service.store.tables import Outcome, Prediction, Rollup, RollupTotal
from tests.harness import servers
from tests.worker.conftest import record_models, start_experiment
from tests.worker.reference_fold import run_reference_rollup

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=-5)))
KINDS = {  # name: (mode, metric)
    "ab-accuracy": ("ab", {"kind": "binary", "quality": "accuracy", "margin": 0.02}),
    "ab-outcome": ("ab", {"kind": "binary", "quality": "outcome", "margin": 0.02}),
    "ab-abs": ("ab", {"kind": "continuous", "quality": "absolute_error", "higher_is_better": False, "margin": 0.1}),
    "shadow-accuracy": ("shadow", {"kind": "binary", "quality": "accuracy", "margin": 0.02}),
    "shadow-squared": ("shadow", {"kind": "continuous", "quality": "squared_error", "higher_is_better": False, "margin": 0.1}),
}


def _setup(db) -> list:
    champion, challenger = record_models(db)
    slo = {"latency": {"threshold_ms": 20.0, "max_share": 0.1}}
    return [start_experiment(db, champion, challenger, name=name, mode=mode, metric=metric, guardrails=slo)
            for name, (mode, metric) in KINDS.items()] + [champion, challenger]


def _events(seed: int, experiments: list, champion, challenger, rounds: int) -> list[tuple[list, list]]:
    """Rounds of (predictions, outcomes), the same for both databases."""
    rng = random.Random(seed)
    pending: list[tuple[str, bool]] = []
    out, k = [], 0
    for _ in range(rounds):
        predictions, outcomes = [], []
        for _ in range(rng.randint(30, 150)):
            k += 1
            exp = rng.choice(experiments)
            continuous = KINDS[exp.name][1]["kind"] == "continuous"
            at = T0 + timedelta(minutes=rng.randint(0, 400), seconds=rng.random() * 60)
            base = dict(request_id=f"r{k}", experiment_id=exp.id, phase=exp.current_phase, unit_id=f"u{rng.randint(0, 30)}",
                        in_experiment=rng.random() > 0.05, confidence=0.9, cache_hit=rng.random() < 0.1,
                        fallback_reason="timeout" if rng.random() < 0.05 else None, source="server", created_at=at)
            arms = [("champion", champion, True)] if exp.mode == "ab" else [("champion", champion, True), ("challenger", challenger, False)]
            if exp.mode == "ab":
                arms = [rng.choice([("champion", champion, True), ("challenger", challenger, True)])]
            for arm, model, served in arms:
                if arm == "challenger" and exp.mode == "shadow" and rng.random() < 0.1:
                    continue  # a dropped shadow sample: no pair
                latency = rng.choice([0.0, 5e-7, rng.lognormvariate(2.5, 0.6), rng.lognormvariate(2.5, 0.6)])
                label_only = not continuous and rng.random() < 0.15
                prediction = rng.gauss(1, 2) if continuous else (None if label_only else float(rng.random() < 0.5))
                predictions.append(dict(base, arm=arm, model_id=model.id, answered_by_id=model.id, served=served,
                                        latency_ms=latency, inference_ms=rng.uniform(0.1, 5), prediction=prediction,
                                        label=rng.choice(["0", "1"]) if label_only else None, cost=rng.uniform(0, 0.002),
                                        # a shadow challenger's row: the champion timed beside it, on most requests
                                        reference_cost=rng.uniform(0, 0.004) if not served and rng.random() < 0.8 else None))
            pending.append((f"r{k}", continuous))
        rng.shuffle(pending)
        keep = []
        for request_id, continuous in pending:
            if rng.random() < 0.4:
                value = rng.gauss(1, 2) if continuous else float(rng.random() < 0.5)
                outcomes.append(dict(request_id=request_id, value=value, at=T0, received_at=T0))
            elif rng.random() < 0.7:
                keep.append((request_id, continuous))
        pending = keep
        out.append((predictions, outcomes))
    return out


def _buckets(db) -> dict:
    with db.unit_of_work() as session:
        rows = session.execute(sa.select(Rollup.experiment_id, Rollup.phase, Rollup.arm, Rollup.bucket_start, Rollup.stats))
        return {(e, p, a, _utc(b)): s for e, p, a, b, s in rows}


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def _same(got: dict, want: dict, where) -> tuple[int, int]:
    """Assert one bucket equal; returns (float sums compared, of which bit-identical)."""
    for name in COUNTS:
        assert got[name] == want.get(name, 0), (where, name)
    compared = identical = 0
    for name in MOMENTS:
        assert got[name]["n"] == want[name]["n"], (where, name)
        for field in ("sum", "sum_sq"):
            assert got[name][field] == pytest.approx(want[name][field], rel=1e-12, abs=1e-12), (where, name, field)
            compared += 1
            identical += got[name][field] == want[name][field]
    assert got["latency_sketch"] == want["latency_sketch"], where
    return compared, identical


def _database_pair(request, tmp_path):
    from service.migrate import upgrade
    from service.store.database import Database, make_engine

    if request.param == "sqlite":
        urls = [f"sqlite:///{tmp_path / f'{side}.db'}" for side in ("reference", "sql")]
    else:
        admin = request.getfixturevalue("pg_admin_url")
        urls = [servers.create_database(admin) for _ in range(2)]
        request.addfinalizer(lambda: [servers.drop_database(admin, u) for u in urls])
    for url in urls:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
    return [Database(u) for u in urls]


@pytest.fixture(params=["postgres", "sqlite"])
def two_dbs(request, tmp_path):
    dbs = _database_pair(request, tmp_path)
    yield dbs
    for db in dbs:
        db.dispose()


@pytest.mark.parametrize("seed", [1, 2])
def test_sql_rollup_gives_the_buckets_the_python_fold_gave(two_dbs, seed):
    reference, sql = two_dbs
    setups = [_setup(db) for db in two_dbs]
    assert [r.id for r in setups[0]] == [r.id for r in setups[1]]
    *experiments, champion, challenger = setups[0]
    late = 0
    for predictions, outcomes in _events(seed, experiments, champion, challenger, rounds=7):
        for db in two_dbs:
            with db.unit_of_work() as session:
                session.execute(sa.insert(Prediction), predictions)
                if outcomes:
                    session.execute(sa.insert(Outcome), outcomes)
        late += run_reference_rollup(reference).late_outcomes
        run_rollup(sql, batch_rows=40)  # several transactions per round: batches must not change the result
    assert late > 0

    want, got = _buckets(reference), _buckets(sql)
    assert set(got) == set(want)
    compared = identical = 0
    for key in want:
        c, i = _same(got[key], want[key], key)
        compared, identical = compared + c, identical + i
    assert sum(s["paired"]["n"] for s in got.values()) > 0
    assert sum(1 for s in got.values() if s["latency_sketch"] and s["latency_sketch"]["zero"]) > 0
    print(f"\n{len(want)} buckets equal; {identical} of {compared} float sums bit-identical, the rest within 1e-12")


def test_phase_totals_are_the_sum_of_the_buckets(own_db):
    from service.analytics.rollup import empty_stats, merge_stats

    *experiments, champion, challenger = _setup(own_db)
    for predictions, outcomes in _events(5, experiments, champion, challenger, rounds=4):
        with own_db.unit_of_work() as session:
            session.execute(sa.insert(Prediction), predictions)
            if outcomes:
                session.execute(sa.insert(Outcome), outcomes)
        run_rollup(own_db, batch_rows=25)
    merged: dict = {}
    for (e, p, a, _), stats in _buckets(own_db).items():
        merged[(e, p, a)] = merge_stats(merged.get((e, p, a), empty_stats()), stats)
    with own_db.unit_of_work() as session:
        totals = {(e, p, a): s for e, p, a, s in session.execute(
            sa.select(RollupTotal.experiment_id, RollupTotal.phase, RollupTotal.arm, RollupTotal.stats))}
    assert set(totals) == set(merged) and len(totals) >= len(KINDS)
    for key in merged:
        _same(totals[key], merged[key], key)
    # the distinct units analysis reads from the totals are what counting ``exposures`` gives
    from service.store import rollups as store

    crossed = 0
    with own_db.unit_of_work() as session:
        for (e, p, a), stats in totals.items():
            units = store.exposure_counts(session, e, p)
            both = store.crossover_units(session, e, p)
            assert (stats["exposures"], stats["units_in_both_arms"]) == (units.get(a, 0), both), (e, p, a)
            crossed += both
    assert crossed > 0, "the fixture must put some units in both arms"


def test_a_row_with_unsummable_values_is_skipped_and_counted_not_fatal(own_db):
    """latency_ms of 1e308 (its square overflows), NaN, infinity, an outcome of 1e200: each row is
    left out and counted in its bucket's ``skipped``; the roll-up goes on and counts the rest."""
    *experiments, champion, challenger = _setup(own_db)
    exp = next(e for e in experiments if e.name == "ab-outcome")
    at = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)
    base = dict(experiment_id=exp.id, phase=exp.current_phase, arm="champion", unit_id="u", model_id=champion.id,
                answered_by_id=champion.id, served=True, in_experiment=True, inference_ms=1.0, prediction=1.0, label=None,
                confidence=0.9, cost=0.001, cache_hit=False, fallback_reason=None, source="server", created_at=at)
    bad_latencies = [1e308, math.inf] + ([math.nan] if own_db.dialect == "postgresql" else [])  # SQLite stores NaN as NULL
    rows = [dict(base, request_id=f"ok{i}", latency_ms=10.0 + i) for i in range(5)]
    rows += [dict(base, request_id=f"bad{i}", latency_ms=v) for i, v in enumerate(bad_latencies)]
    with own_db.unit_of_work() as session:
        session.execute(sa.insert(Prediction), rows)
        session.execute(sa.insert(Outcome), [dict(request_id="ok0", value=1e200, at=at, received_at=at),
                                             dict(request_id="ok1", value=1.0, at=at, received_at=at)])
    result = run_rollup(own_db)
    assert result.predictions == len(rows) and result.skipped == len(bad_latencies) + 1
    # a late outcome out of range is skipped too
    with own_db.unit_of_work() as session:
        session.execute(sa.insert(Outcome), [dict(request_id="ok2", value=-math.inf, at=at, received_at=at),
                                             dict(request_id="ok3", value=0.0, at=at, received_at=at)])
    assert run_rollup(own_db).skipped == 1
    [stats] = [s for (e, _, _, _), s in _buckets(own_db).items() if e == exp.id]
    assert stats["predictions"] == 5 and stats["skipped"] == len(bad_latencies) + 2
    assert stats["latency"]["sum"] == sum(10.0 + i for i in range(5))
    assert stats["quality"] == {"n": 2, "sum": 1.0, "sum_sq": 1.0}
    assert stats["latency_sketch"] and sum(stats["latency_sketch"]["bins"].values()) == 5
