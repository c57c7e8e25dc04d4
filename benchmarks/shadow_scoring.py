"""Shadow scorers: rows/s and rows per CPU-second, one scorer against two on one queue.

    python benchmarks/shadow_scoring.py [--jobs 20000] [--repeats 2] [--batch 256] [--reference-shares 1]
                                        [--database postgresql://...]

Each run starts ``frugal scorer`` processes (real ones, as deployed), waits until they poll an empty
queue and have loaded their onnxruntime sessions (a warm-up batch), then commits ``--jobs`` shadow
jobs at once (with the event log's own insert, ``insert_shadow_jobs``) and times until the queue is
empty.  It prints jobs/s, the scorers' CPU seconds per second (from /proc), jobs per scorer
CPU-second, and Postgres's CPU, for one scorer and for two, alternating ``--repeats`` times; then
the two-to-one throughput ratio.  ``--reference-shares 0,1`` repeats it at each
FRUGAL_SHADOW_REFERENCE_SHARE (the share of requests on which the scorer also times the champion,
for the cost comparison: docs/models.md#cost) and prints each one's rows per CPU-second against the
first's, in the same session.  Every job is the demo challenger on one row of scikit-learn's
breast-cancer data, scored as its request would have been served (one run of one row).  On a small
shared host the two scorers compete with Postgres and with each other for the same cores: read
the CPU columns with the throughput.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import _median, _proc_table  # noqa: E402


def _cpu(pids: list[int]) -> float:
    table = _proc_table()
    return sum(table[p][2] for p in pids if p in table)


def _postgres_cpu() -> float:
    return sum(cpu for _, name, cpu in _proc_table().values() if name.startswith("postgres"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256, help="FRUGAL_SHADOW_BATCH_SIZE")
    parser.add_argument("--reference-shares", default="1",
                        help="comma-separated FRUGAL_SHADOW_REFERENCE_SHARE values to compare (default: 1, the default)")
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    from sklearn.datasets import load_breast_cancer

    from service import experiments, registry
    from service.definition import ExperimentDefinition
    from service.demo.models import build_demo_models
    from service.eventlog import ShadowJobEvent
    from service.migrate import upgrade
    from service.routing.runtime import catalog
    from service.runtime import Runtime
    from service.settings import load_settings
    from service.store.events import insert_shadow_jobs
    from tests.harness.servers import create_database, drop_database

    url = create_database(args.database)
    work = Path(tempfile.mkdtemp(prefix="frugal-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRUGAL_")}
    env.update({"FRUGAL_DATABASE_URL": url, "FRUGAL_DATA_DIR": str(work), "FRUGAL_LOG_LEVEL": "WARNING",
                "FRUGAL_SHADOW_BATCH_SIZE": str(args.batch), "FRUGAL_SCORER_POLL_S": "0.05", "PYTHONPATH": str(ROOT)})
    procs: list[subprocess.Popen] = []
    try:
        models = build_demo_models(ROOT / ".frugal" / "demo-models")
        rt = Runtime(load_settings({k: v for k, v in env.items() if k.startswith("FRUGAL_")}))
        upgrade(rt.db.engine)
        refs = {m.role: registry.register(rt.db, rt.settings, m.path.read_bytes(), name=m.name, version=m.version,
                                          task=m.task).ref for m in models.values() if m.role in ("champion", "challenger")}
        record = experiments.create(rt.db, ExperimentDefinition.model_validate({
            "name": "bench-scorer", "mode": "shadow", "champion": {"kind": "model", "model": refs["champion"]},
            "challenger": {"kind": "model", "model": refs["challenger"]}, "metric": {"kind": "binary", "margin": 0.02},
            "shadow_sample": 1.0}), actor="bench")
        experiments.transition(rt.db, str(record.id), "start", actor="bench")
        config = catalog(rt).get("bench-scorer")
        data = load_breast_cancer().data.tolist()
        counter = iter(range(10**9))

        def queue(n: int) -> None:
            now = datetime.now(timezone.utc)
            jobs = []
            for i in range(n):
                k = next(counter)
                # a time of its own: the scorer groups jobs of one request by their shared time, and each job
                # here stands for a one-row request (one run of one row)
                jobs.append(ShadowJobEvent(f"r{k}", config.id, config.phase, f"u{k}", data[k % len(data)], 0.3,
                                           now + timedelta(microseconds=i)))
            with rt.db.unit_of_work() as session:   # one commit: every job appears at once
                insert_shadow_jobs(session, jobs)

        def backlog() -> int:
            with rt.db.engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM shadow_jobs")).scalar())

        def wait_empty(timeout: float = 600) -> None:
            deadline = time.monotonic() + timeout
            while backlog():
                if time.monotonic() > deadline:
                    raise SystemExit("the scorers did not empty the queue in time")
                time.sleep(0.02)

        def run(scorers: int, share: str) -> dict[str, float]:
            env["FRUGAL_SHADOW_REFERENCE_SHARE"] = share
            logs = [open(work / f"scorer-{len(procs) + i}.log", "wb") for i in range(scorers)]
            started = [subprocess.Popen([sys.executable, "-m", "service.cli", "scorer"], env=env, cwd=ROOT,
                                        stdout=log, stderr=subprocess.STDOUT) for log in logs]
            procs.extend(started)
            queue(50 * scorers)   # warm-up: every scorer loads its sessions and connects
            wait_empty()
            time.sleep(0.5)
            pids = [p.pid for p in started]
            cpu0, pg0 = _cpu(pids), _postgres_cpu()
            queue(args.jobs)
            t0 = time.perf_counter()
            wait_empty()
            elapsed = time.perf_counter() - t0
            cpu, pg = _cpu(pids) - cpu0, _postgres_cpu() - pg0
            for p in started:
                p.terminate()
            for p in started:
                p.wait(30)
                procs.remove(p)
            for log in logs:
                log.close()
            return {"jobs/s": args.jobs / elapsed, "scorer cores": cpu / elapsed, "jobs per scorer CPU-s": args.jobs / max(cpu, 1e-9),
                    "postgres cores": pg / elapsed}

        shares = [x.strip() for x in args.reference_shares.split(",") if x.strip()]
        by_share: dict[str, dict[int, list[dict[str, float]]]] = {share: {1: [], 2: []} for share in shares}
        for r in range(args.repeats):
            for share in (shares if r % 2 == 0 else shares[::-1]):
                for scorers in ((1, 2) if r % 2 == 0 else (2, 1)):
                    by_share[share][scorers].append(run(scorers, share))
        rt.close()

        with sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://")).connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*), count(DISTINCT request_id) FROM predictions WHERE NOT served")).one()
        print(f"\n{args.jobs:,} shadow jobs per run, batches of {args.batch}, {args.repeats} alternating runs each, "
              f"{os.cpu_count()}-core host shared with Postgres (and, here, other users)\n")
        per_core: dict[str, float] = {}
        for share, results in by_share.items():
            print(f"FRUGAL_SHADOW_REFERENCE_SHARE={share}")
            print(f"{'scorers':<8} " + " ".join(f"{k:>22}" for k in results[1][0]))
            for scorers, runs in results.items():
                for one in runs:
                    print(f"{scorers:<8} " + " ".join(f"{v:>22.2f}" for v in one.values()))
            one, two = (_median([x["jobs/s"] for x in results[k]]) for k in (1, 2))
            per_core[share] = _median([x["jobs per scorer CPU-s"] for runs in results.values() for x in runs])
            print(f"\ntwo scorers / one: {two / one:.2f}x the throughput (median jobs/s {two:,.0f} vs {one:,.0f})")
            print(f"a scorer scores {per_core[share]:,.0f} rows per CPU-second (median of every run)\n")
        for share in shares[1:]:
            print(f"reference share {share} / {shares[0]}: {per_core[share] / per_core[shares[0]]:.2f}x the rows per "
                  f"scorer CPU-second")
        queued = next(counter)   # every job queued, warm-ups included
        print(f"challenger rows stored: {rows[0]:,} of {queued:,} jobs queued, distinct request ids {rows[1]:,}")
        if not rows[0] == rows[1] == queued:
            raise SystemExit("a job was lost or scored into two rows")
    finally:
        for p in procs:
            p.kill()
        drop_database(args.database, url)


if __name__ == "__main__":
    main()
