"""How long the worker takes at scale, on Postgres.

  python benchmarks/analysis.py [--rows 10000000] [--database postgresql://postgres@127.0.0.1/postgres]

It creates a throwaway database, bulk-loads ``--rows`` logged predictions (one A/B experiment,
outcomes for 75% of them, spread over 30 days) and reports, all in the same run:

- the full scan: one SQL aggregation of every raw row (what an engine without roll-ups pays at each look);
- the first roll-up of everything (paid once);
- rolling up the newest 1% of events on top (what each scheduled run pays);
- analysing the experiment from its roll-ups (what each look pays), with the number of buckets read;
- ingest while a roll-up of ``--ingest-rows`` (1M) runs: a writer process of its own stores predictions
  and outcomes through the event writers' functions (service.store.events) in batches of 20; their
  latency percentiles, and the same writer's for a few seconds with no roll-up running.

Rates are rows per second of wall time on this host; ratios are against the full scan of the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIGNATURE = {"inputs": [{"name": "input", "shape": [None, 3], "dtype": "float32"}], "feature_names": ["a", "b", "c"]}


def _load(db, experiment, champion, challenger, first: int, last: int) -> None:
    with db.unit_of_work() as session:
        session.execute(sa.text("""
            INSERT INTO predictions (request_id, experiment_id, phase, arm, unit_id, model_id, served, in_experiment,
                answered_by_id, latency_ms, inference_ms, prediction, label, confidence, cost, cache_hit, fallback_reason,
                source, created_at)
            SELECT 'r' || g, :exp, :phase, CASE WHEN g % 2 = 0 THEN 'champion' ELSE 'challenger' END, 'u' || (g % 200000),
                   CASE WHEN g % 2 = 0 THEN :champ ELSE :chall END, true, true, CASE WHEN g % 2 = 0 THEN :champ ELSE :chall END,
                   3 + random() * 20, 1 + random(), (random() < 0.9)::int, NULL, 0.9,
                   CASE WHEN g % 2 = 0 THEN 0.001 ELSE 0.0002 END, false, NULL, 'server',
                   timestamptz '2026-10-01 00:00+00' + (g::float / :total) * interval '30 days'
            FROM generate_series(:first, :last) AS g"""),
            {"exp": experiment.id, "phase": experiment.current_phase, "champ": champion.id, "chall": challenger.id,
             "first": first, "last": last, "total": last})
        session.execute(sa.text("""
            INSERT INTO outcomes (request_id, value, at, received_at)
            SELECT 'r' || g, (random() < 0.9)::int, now(), now() FROM generate_series(:first, :last) AS g WHERE (g / 2) % 4 <> 0"""),
            {"first": first, "last": last})


def _timed(label: str, fn, repeat: int = 1):
    best, value = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    print(f"{label:<58} {best:>10.3f} s")
    return best, value


def _ingest(url: str, experiment_id: int, phase: int, model_id: int, prefix: str, stop, out) -> None:
    """A writer process (as a web worker is): store predictions and outcomes in batches of 20, as the
    event log flushes them, until ``stop`` is set; put each batch transaction's latency (ms) in ``out``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from service.eventlog import OutcomeEvent, PredictionEvent
    from service.store.database import Database
    from service.store.events import insert_outcomes, insert_predictions

    db, latencies, k = Database(url), [], 0
    while not stop.is_set():
        now = datetime.now(timezone.utc)
        events = [PredictionEvent(f"{prefix}{k + i}", experiment_id, phase, "champion", f"{prefix}{k + i}", model_id, True,
                                  True, model_id, 8.0, 1.0, 1.0, None, 0.9, 0.001, False, None, "server", now) for i in range(20)]
        t = time.perf_counter()
        with db.unit_of_work() as session:
            insert_predictions(session, events)
        latencies.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        with db.unit_of_work() as session:
            insert_outcomes(session, [OutcomeEvent(e.request_id, 1.0, now, now) for e in events])
        latencies.append((time.perf_counter() - t) * 1000)
        k += 20
    db.dispose()
    out.put(latencies)


def _ingest_during(db, record, model, prefix: str, work=None, seconds: float = 5.0) -> tuple[list[float], object]:
    """Ingest from a process of its own while ``work`` runs here (or for ``seconds`` with nothing else)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_ingest, args=(db.url, record.id, record.current_phase, model.id, prefix, stop, out))
    proc.start()
    time.sleep(3)  # the writer has imported and connected
    result = work() if work is not None else time.sleep(seconds)
    stop.set()
    latencies = out.get(timeout=120)
    proc.join(30)
    return latencies, result


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--ingest-rows", type=int, default=1_000_000, help="rows of the roll-up ingest runs beside")
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres", help="an admin URL")
    args = parser.parse_args()

    from service import experiments
    from service.analytics.analyze import analyze
    from service.analytics.rollup import run_rollup
    from service.definition import ExperimentDefinition
    from service.migrate import upgrade
    from service.store import models as model_store
    from service.store.database import Database
    from tests.harness.servers import create_database, drop_database

    url = create_database(args.database)
    name = urlparse(url).path.lstrip("/")
    db = Database(url)
    try:
        upgrade(db.engine)
        with db.unit_of_work() as session:
            models = [model_store.insert(session, name=n, version="1", task="binary", digest=f"{i:064d}", file_size=1,
                                         signature=SIGNATURE, declared_cost_per_1k=None, profile=None, derived_from_id=None,
                                         transform=None, description="", created_at=datetime.now(timezone.utc))
                      for i, n in enumerate(("champion", "challenger"))]
        definition = ExperimentDefinition.model_validate({
            "name": "bench", "mode": "ab", "champion": {"kind": "model", "model": models[0].ref},
            "challenger": {"kind": "model", "model": models[1].ref}, "metric": {"kind": "binary", "margin": 0.02},
            "guardrails": {"latency": {"threshold_ms": 20, "max_share": 0.2}},
            "design": {"planned_n_per_arm": args.rows // 2}})
        record = experiments.create(db, definition, actor="bench")
        record = experiments.transition(db, str(record.id), "start", actor="bench")
        bulk = args.rows - args.rows // 100
        print(f"loading {args.rows:,} predictions into {name} ...", flush=True)
        t = time.perf_counter()
        _load(db, record, *models, 1, bulk)
        with db.engine.connect() as conn:
            conn.execute(sa.text("ANALYZE predictions"))
            conn.execute(sa.text("ANALYZE outcomes"))
            conn.commit()
        print(f"loaded in {time.perf_counter() - t:.0f} s\n")

        def full_scan():
            with db.engine.connect() as conn:
                return conn.execute(sa.text("""
                    SELECT p.arm, date_trunc('hour', p.created_at), count(*), sum(p.latency_ms), sum(p.cost),
                           count(o.id), sum((p.prediction = o.value)::int)
                    FROM predictions p LEFT JOIN outcomes o ON o.request_id = p.request_id
                    WHERE p.experiment_id = :e GROUP BY 1, 2"""), {"e": record.id}).all()

        print(f"{'step':<58} {'time':>12}")
        scan_s, groups = _timed(f"full scan: SQL aggregate of {bulk:,} raw rows", full_scan)
        first_s, first = _timed(f"first roll-up of {bulk:,} rows (once)", lambda: run_rollup(db))
        _load(db, record, *models, bulk + 1, args.rows)
        newest = args.rows - bulk
        inc_s, inc = _timed(f"roll-up of the newest 1% ({newest:,} rows)", lambda: run_rollup(db))
        slots = iter(range(1000))
        analyse_s, (stored, _) = _timed(f"analysis of {args.rows:,} predictions from roll-ups",
                                        lambda: analyze(db, record.id, f"bench-{next(slots)}"), repeat=3)

        # ingest beside a roll-up of --ingest-rows more predictions
        extra = args.ingest_rows
        _load(db, record, *models, args.rows + 1, args.rows + extra)
        quiet, _ = _ingest_during(db, record, models[0], "quiet")
        t = time.perf_counter()
        latencies, during = _ingest_during(db, record, models[0], "live", lambda: run_rollup(db))
        during_s = time.perf_counter() - t - 3
        with db.engine.connect() as conn:
            buckets = conn.execute(sa.text("SELECT count(*) FROM rollups")).scalar()
            totals = conn.execute(sa.text("SELECT count(*) FROM rollup_totals")).scalar()
        print(f"roll-up of {during.predictions:,} rows beside ingest{'':<18} {during_s:>10.3f} s")
        print()
        print(f"first roll-up: {first.predictions / first_s:,.0f} rows/s in {first.transactions} transactions "
              f"(full scan: {bulk / scan_s:,.0f} rows/s; roll-up takes {first_s / scan_s:.1f}x the scan)")
        print(f"newest 1%: {inc_s * 1000:,.0f} ms ({newest / inc_s:,.0f} rows/s)")
        print(f"analysis: {analyse_s * 1000:,.1f} ms, reading {totals} phase totals (the roll-up keeps {buckets:,} hour buckets)"
              f"; decision {stored.decision}")
        print(f"  {stored.explanation}")
        print(f"each look, analysis from roll-ups vs a full scan: {scan_s / analyse_s:,.0f}x faster")
        print(f"scheduled run (newest 1% roll-up + analysis) vs full scan: {scan_s / (inc_s + analyse_s):,.1f}x faster")
        print(f"ingest during a {during.predictions:,}-row roll-up: {len(latencies):,} batches of 20 "
              f"(predictions and outcomes), p50 {_percentile(latencies, 0.5):.1f} ms, p99 {_percentile(latencies, 0.99):.1f} ms, "
              f"max {max(latencies):.1f} ms; with no roll-up running: p50 {_percentile(quiet, 0.5):.1f} ms, "
              f"p99 {_percentile(quiet, 0.99):.1f} ms ({len(quiet):,} batches)")
        assert inc.predictions == newest and first.predictions == bulk and len(groups) > 0
        assert during.predictions >= extra
    finally:
        db.dispose()
        drop_database(args.database, url)


if __name__ == "__main__":
    main()
