"""What a shadow scorer spends per row: one run per request against the batched scorer.

    python benchmarks/shadow_scoring.py [--rows 5000] [--batch 11] [--repeats 3] [--database postgresql://...]

Runs in this process what a scorer process runs (service/routing/shadow.py): the demo challenger on
real onnxruntime sessions timed in thread CPU time, and the event log writing each challenger row to
Postgres.  For the same one-row requests it measures the process's CPU time per row (the scoring
thread and the event-log writer) with ``score_job`` once per request, as before batching, and with
``score_batch`` on groups of ``--batch`` requests (what a web worker's sender ships in 20 ms at about
550 requests/s), alternating the two ``--repeats`` times, and prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=11, help="one-row requests per message a scorer takes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    from service import experiments, registry
    from service.definition import ExperimentDefinition
    from service.demo.models import build_demo_models
    from service.eventlog import PredictionEvent, event_log
    from service.inference.sessions import SessionPool
    from service.migrate import upgrade
    from service.routing.runtime import catalog, model_runner
    from service.routing.shadow import ShadowJob, score_batch, score_job, timed_batch_runner
    from service.runtime import Runtime
    from service.settings import load_settings
    from tests.harness.servers import create_database, drop_database

    url = create_database(args.database)
    try:
        models = build_demo_models(ROOT / ".frugal" / "demo-models")
        champion = next(m for m in models.values() if m.role == "champion")
        challenger = next(m for m in models.values() if m.role == "challenger")
        rt = Runtime(load_settings({"FRUGAL_DATABASE_URL": url, "FRUGAL_DATA_DIR": tempfile.mkdtemp(prefix="frugal-bench-"),
                                    "FRUGAL_LOG_LEVEL": "WARNING"}))
        upgrade(rt.db.engine)
        refs = {m.role: registry.register(rt.db, rt.settings, m.path.read_bytes(), name=m.name, version=m.version,
                                          task=m.task).ref for m in (champion, challenger)}
        record = experiments.create(rt.db, ExperimentDefinition.model_validate({
            "name": "bench-scorer", "mode": "shadow", "champion": {"kind": "model", "model": refs["champion"]},
            "challenger": {"kind": "model", "model": refs["challenger"]}, "metric": {"kind": "binary", "margin": 0.02},
            "shadow_sample": 1.0}), actor="bench")
        experiments.transition(rt.db, str(record.id), "start", actor="bench")
        config = catalog(rt).get("bench-scorer")
        rt.lazy("sessions", lambda: SessionPool(rt.settings, clock=time.thread_time))   # as in a scorer
        run_model = model_runner(rt)
        batched = timed_batch_runner(run_model)
        events = event_log(rt)

        def accept(event) -> bool:
            return events.record(PredictionEvent(**event))

        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer().data.tolist()
        counter = iter(range(10**9))

        def jobs(n: int) -> list[ShadowJob]:
            out = []
            for _ in range(n):
                k = next(counter)
                out.append(ShadowJob(config.id, config.phase, config.challenger, False,
                                     [(f"r{k}", f"u{k}", data[k % len(data)], 0.3)]))
            return out

        def per_request(todo: list[ShadowJob]) -> None:
            for job in todo:
                score_job(run_model, rt.settings, accept, job)

        def in_batches(todo: list[ShadowJob]) -> None:
            for i in range(0, len(todo), args.batch):
                score_batch(run_model, rt.settings, accept, todo[i:i + args.batch], batched)

        def measure(score) -> float:
            todo = jobs(args.rows)
            events.flush()
            started = time.process_time()
            score(todo)
            if not events.flush(120):
                raise SystemExit("the event log did not drain")
            return (time.process_time() - started) * 1000.0 / args.rows

        measure(per_request)   # warm up: sessions, connections, caches
        results: dict[str, list[float]] = {"one run per request": [], f"batched ({args.batch} per message)": []}
        for r in range(args.repeats):
            order = [per_request, in_batches] if r % 2 == 0 else [in_batches, per_request]
            for score in order:
                key = "one run per request" if score is per_request else f"batched ({args.batch} per message)"
                results[key].append(measure(score))
        rt.close()

        print(f"\n{args.rows:,} one-row requests per run, {args.repeats} alternating runs each; process CPU per row "
              "(scoring thread + event-log writer to Postgres)\n")
        for key, values in results.items():
            print(f"{key:<32} median {_median(values):.4f} ms  ({', '.join(f'{v:.4f}' for v in values)})")
        a, b = (_median(v) for v in results.values())
        print(f"\nbatched / one run per request: {b / a:.2f}x the CPU per row")
    finally:
        drop_database(args.database, url)


if __name__ == "__main__":
    main()
