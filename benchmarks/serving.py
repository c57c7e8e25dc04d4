"""Frugal's request path under load, against a bare Flask + onnxruntime endpoint, on this host.

    python benchmarks/serving.py [--seconds 10] [--connections 8] [--database postgresql://postgres@127.0.0.1/postgres]

Each configuration runs under gunicorn with service/gunicorn_conf.py (2 workers, gthread) on
loopback, loaded by benchmarks/loadgen.py in another process for a bounded time:

  (a) bare Flask + onnxruntime, the demo champion model, no routing, auth or logging;
  (b) Frugal POST /v1/predict, A/B experiment (50/50), every event logged to Postgres;
  (c) Frugal POST /v1/predict, shadow experiment sampling 100% of requests: each request also
      queues a shadow job through the event log.  No scorer runs during the web measurement (in
      production scorers run on other hosts: docs/deploy.md); the jobs wait in Postgres.

It prints (b)/(a) throughput, the p99 difference, and (c) vs (b): throughput and p99 in closed
loops at saturation (each connection sends as soon as it is answered), and p99 in open loops,
arrivals at a fixed rate (25% and 50% of (b)'s throughput by default), with latency counted from
when each request was due.  Then one ``frugal scorer`` process scores the jobs (c) queued, timed
until the queue is empty: the scorer's rows/s and rows per CPU-second, and a check that every
queued job got exactly one challenger row.  The machines are small and shared (2 cores, also
running the load generator and Postgres): compare ratios, and run it more than once.

``--web-cpus 0`` pins gunicorn to those CPUs and the load generator and Postgres to the others
(Postgres's affinity is put back at the end; it needs the right to change it, e.g. root): a
production layout, where callers and the database are other machines; with one core of two for
serving, capacity halves.  The run prints the CPU cores the web workers and Postgres used in each
run (from /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pinned(cpus: set[int] | None):
    """preexec_fn for a child process that runs only on ``cpus`` (None: anywhere)."""
    return None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))


class PinnedPostgres:
    """Postgres's processes (and so the backends it forks later) on ``cpus`` until restored."""

    def __init__(self, cpus: set[int]) -> None:
        self.saved: dict[int, set[int]] = {}
        for pid, (_, name, _) in _proc_table().items():
            if name.startswith("postgres"):
                try:
                    saved = os.sched_getaffinity(pid)
                    os.sched_setaffinity(pid, cpus)
                    self.saved[pid] = saved
                except ProcessLookupError:   # a backend that just exited
                    continue
                except PermissionError as exc:
                    self.restore()
                    raise SystemExit(f"--web-cpus: cannot pin Postgres process {pid} ({exc}); run as its owner or root")

    def restore(self) -> None:
        for pid, cpus in self.saved.items():
            try:
                os.sched_setaffinity(pid, cpus)
            except (PermissionError, ProcessLookupError):
                pass
        self.saved.clear()


class Gunicorn:
    def __init__(self, app: str, env: dict[str, str], log: Path, cpus: set[int] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "2", app], env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_pinned(cpus))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit(f"{app} did not start; see {log}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


LOADGEN_CPUS: set[int] | None = None   # --web-cpus: the load generator runs on the other CPUs


def _load(url: str, body: dict, headers: dict[str, str], seconds: float, connections: int, rate: float | None = None) -> dict:
    argv = [sys.executable, str(ROOT / "benchmarks" / "loadgen.py"), url, json.dumps(body), "--seconds", str(seconds),
            "--connections", str(connections)] + [arg for k, v in headers.items() for arg in ("--header", f"{k}: {v}")]
    if rate:
        argv += ["--rate", str(rate)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 120, preexec_fn=_pinned(LOADGEN_CPUS))
    return json.loads(out.stdout.strip().splitlines()[-1])


TICKS = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds used) for every process (Linux /proc)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / TICKS)
    return table


def cpu_by_role(master_pid: int) -> dict[str, float]:
    """CPU seconds used so far by gunicorn's web workers and by Postgres."""
    table = _proc_table()
    workers = {pid for pid, (ppid, _, _) in table.items() if ppid == master_pid}
    return {"web workers": sum(table[p][2] for p in workers),
            "postgres": sum(cpu for _, name, cpu in table.values() if name.startswith("postgres"))}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def all_ratios(results: dict, rates: list[int], repeats: int) -> list[float]:
    return [results[f"c@{rate}#{r}"]["p99_ms"] / results[f"b@{rate}#{r}"]["p99_ms"] for rate in rates for r in range(repeats)]


def score_backlog(engine, env: dict[str, str], work: Path, cpus: set[int] | None) -> dict[str, float]:
    """One ``frugal scorer`` on the jobs the shadow runs queued: time and CPU until the queue is empty."""
    def count(sql: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar())

    jobs = count("SELECT count(*) FROM shadow_jobs")
    with open(work / "scorer.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "scorer"], env={**env, "FRUGAL_SCORER_POLL_S": "0.05"},
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_pinned(cpus))
        while b"started" not in (work / "scorer.log").read_bytes():   # imported and connected: time from here
            if proc.poll() is not None:
                raise SystemExit(f"the scorer exited; see {work / 'scorer.log'}")
            time.sleep(0.005)
        cpu0 = _proc_table().get(proc.pid, (0, "", 0.0))[2]
        pg0, t0 = sum(cpu for _, name, cpu in _proc_table().values() if name.startswith("postgres")), time.perf_counter()
        left = jobs
        while left:
            time.sleep(0.05)
            left = count("SELECT count(*) FROM shadow_jobs")
            cpu = _proc_table().get(proc.pid, (0, "", 0.0))[2] - cpu0   # the scorer's own CPU, read while it runs
            if proc.poll() is not None:
                raise SystemExit(f"the scorer exited; see {work / 'scorer.log'}")
        elapsed = time.perf_counter() - t0
        pg = sum(cpu_ for _, name, cpu_ in _proc_table().values() if name.startswith("postgres")) - pg0
        proc.terminate()
        proc.wait(30)
    rows = count("SELECT count(*) FROM predictions p JOIN experiments e ON e.id = p.experiment_id "
                 "WHERE e.name = 'bench-shadow' AND NOT p.served")
    distinct = count("SELECT count(DISTINCT p.request_id) FROM predictions p JOIN experiments e ON e.id = p.experiment_id "
                     "WHERE e.name = 'bench-shadow' AND NOT p.served")
    return {"jobs": jobs, "rows/s": jobs / elapsed, "cores": cpu / elapsed, "per_core": jobs / max(cpu, 1e-9),
            "pg_cores": pg / elapsed, "rows": rows, "distinct": distinct}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--open-loop-shares", default="0.25,0.5", help="open-loop rates as shares of (b)'s req/s")
    parser.add_argument("--repeats", type=int, default=3, help="open-loop (b)/(c) pairs per rate")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a FRUGAL_ setting for the Frugal server and scorer, e.g. --setting EVENT_BATCH_SIZE=1000")
    parser.add_argument("--web-cpus", default=None, metavar="LIST",
                        help="CPUs for gunicorn, e.g. 0; the load generator and Postgres get the others")
    args = parser.parse_args()
    global LOADGEN_CPUS
    web_cpus = None
    if args.web_cpus:
        try:
            web_cpus = {int(c) for c in args.web_cpus.split(",")}
        except ValueError:
            parser.error(f"--web-cpus takes CPU numbers separated by commas, e.g. 0 or 0,1; got {args.web_cpus!r}")
        LOADGEN_CPUS = os.sched_getaffinity(0) - web_cpus
        if not web_cpus <= os.sched_getaffinity(0) or not LOADGEN_CPUS:
            parser.error(f"--web-cpus must leave at least one of CPUs {sorted(os.sched_getaffinity(0))} for the rest")

    from service import experiments, registry
    from service.auth import create_key
    from service.definition import ExperimentDefinition
    from service.demo.models import build_demo_models
    from service.migrate import upgrade
    from service.runtime import Runtime
    from service.settings import load_settings
    from service.store.database import normalize_url

    engine = None

    def shadow_rows() -> tuple[int, int]:
        """(champion answers logged, shadow jobs queued) for bench-shadow so far (no scorer runs meanwhile)."""
        time.sleep(1.0)   # the event writers' last flush
        with engine.connect() as conn:
            served = conn.execute(sa.text(
                "SELECT count(*) FROM predictions p JOIN experiments e ON e.id = p.experiment_id "
                "WHERE e.name = 'bench-shadow' AND p.served")).scalar()
            queued = conn.execute(sa.text("SELECT count(*) FROM shadow_jobs")).scalar()
        return served, queued
    from tests.harness.servers import create_database, drop_database

    work = Path(tempfile.mkdtemp(prefix="frugal-bench-"))
    models = build_demo_models(ROOT / ".frugal" / "demo-models")
    champion = next(m for m in models.values() if m.role == "champion")
    challenger = next(m for m in models.values() if m.role == "challenger")

    url = create_database(args.database)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRUGAL_")}
    env.update({"FRUGAL_DATABASE_URL": url, "FRUGAL_DATA_DIR": str(work), "FRUGAL_LOG_LEVEL": "WARNING",
                "BARE_MODEL": str(champion.path), "PYTHONPATH": str(ROOT)})
    env.update({f"FRUGAL_{k.upper().removeprefix('FRUGAL_')}": v for k, v in (item.split("=", 1) for item in args.setting)})
    servers: list[Gunicorn] = []
    pinned_pg = PinnedPostgres(LOADGEN_CPUS) if LOADGEN_CPUS else None
    try:
        rt = Runtime(load_settings({k: v for k, v in env.items() if k.startswith("FRUGAL_")}))
        upgrade(rt.db.engine)
        refs = {m.role: registry.register(rt.db, rt.settings, m.path.read_bytes(), name=m.name, version=m.version, task=m.task).ref
                for m in (champion, challenger)}
        for exp, mode in (("bench-ab", "ab"), ("bench-shadow", "shadow")):
            record = experiments.create(rt.db, ExperimentDefinition.model_validate({
                "name": exp, "mode": mode, "champion": {"kind": "model", "model": refs["champion"]},
                "challenger": {"kind": "model", "model": refs["challenger"]}, "metric": {"kind": "binary", "margin": 0.02},
                "shadow_sample": 1.0}), actor="bench")
            experiments.transition(rt.db, str(record.id), "start", actor="bench")
        key = {"Authorization": "Bearer " + create_key(rt.db, name="bench", scope="sdk").secret}
        rt.close()
        features = [0.5] * len(champion.feature_names)

        bare = Gunicorn("benchmarks.bare_app:create_app()", env, work / "bare.log", web_cpus)
        servers.append(bare)
        results = {"a": _load(bare.url + "/predict", {"features": features}, {}, args.seconds, args.connections)}
        bare.stop()
        servers.remove(bare)

        frugal = Gunicorn("service.app:create_app()", env, work / "frugal.log", web_cpus)
        servers.append(frugal)
        engine = sa.create_engine(normalize_url(url))
        coverage: dict[str, tuple[int, int]] = {}
        cores: dict[str, dict[str, float]] = {}
        for label, exp in (("b", "bench-ab"), ("c", "bench-shadow")):
            body = {"experiment": exp, "unit_id": "u-__N__", "features": features}  # a new unit per request
            before = shadow_rows()
            cpu0, t0 = cpu_by_role(frugal.proc.pid), time.perf_counter()
            results[label] = _load(frugal.url + "/v1/predict", body, key, args.seconds, args.connections)
            cores[label] = {k: (v - cpu0[k]) / (time.perf_counter() - t0) for k, v in cpu_by_role(frugal.proc.pid).items()}
            if label == "c":
                after = shadow_rows()
                coverage[label] = (after[0] - before[0], after[1] - before[1])
        # The same two at a fixed arrival rate, half of (b)'s capacity: the latency a caller sees when the
        # service is not saturated (a closed loop at saturation charges (c)'s extra shadow CPU to every request).
        # Each rate runs (b) and (c) --repeats times, alternating which goes first, and the ratio is the
        # median over the pairs: one run's p99 rests on ~1% of its requests, and the host is shared.
        rates = [round(results["b"]["rps"] * float(x)) for x in args.open_loop_shares.split(",")]
        for rate in rates:
            for r in range(args.repeats):
                pair = [(f"b@{rate}#{r}", "bench-ab"), (f"c@{rate}#{r}", "bench-shadow")]
                for label, exp in (pair if r % 2 == 0 else pair[::-1]):
                    body = {"experiment": exp, "unit_id": "u-__N__", "features": features}
                    before = shadow_rows()
                    cpu0, t0 = cpu_by_role(frugal.proc.pid), time.perf_counter()
                    results[label] = _load(frugal.url + "/v1/predict", body, key, args.seconds, args.connections, rate=rate)
                    cores[label] = {k: (v - cpu0[k]) / (time.perf_counter() - t0)
                                    for k, v in cpu_by_role(frugal.proc.pid).items()}
                    if exp == "bench-shadow":
                        after = shadow_rows()
                        coverage[label] = (after[0] - before[0], after[1] - before[1])
        frugal.stop()
        servers.remove(frugal)

        with engine.connect() as conn:
            logged = conn.execute(sa.text("SELECT count(*) FROM predictions")).scalar()
        scoring = score_backlog(engine, env, work, web_cpus)
        engine.dispose()

        labels = {"a": "(a) bare Flask + onnxruntime", "b": "(b) Frugal /v1/predict, A/B, logging on",
                  "c": "(c) Frugal /v1/predict, shadow 100%"}
        for rate in rates:
            for r in range(args.repeats):
                labels[f"b@{rate}#{r}"] = f"(b) A/B at a fixed {rate} req/s #{r + 1}"
                labels[f"c@{rate}#{r}"] = f"(c) shadow 100% at {rate} req/s #{r + 1}"
        layout = (f"gunicorn on CPU {sorted(web_cpus)}, load generator and Postgres on CPU {sorted(LOADGEN_CPUS)}"
                  if web_cpus else "everything sharing the host's CPUs")
        print(f"\n{args.connections} connections, {args.seconds:.0f} s each, gunicorn 2 gthread workers, "
              f"{os.cpu_count()}-core host, {layout}, no shadow scorer during the web runs"
              f"{''.join(' ' + x for x in args.setting)}\n")
        print(f"{'configuration':<42} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for k in labels:
            if k == f"b@{rates[0]}#0":
                print("open loop (arrivals at a fixed rate, latency from when each request was due):")
            r = results[k]
            print(f"{labels[k]:<42} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}")
        a, b, c = results["a"], results["b"], results["c"]
        print()
        print(f"(b)/(a) throughput: {b['rps'] / a['rps']:.2f}  (target >= 0.85)")
        print(f"(b) - (a) p99: {b['p99_ms'] - a['p99_ms']:+.2f} ms")
        print(f"(c)/(b) throughput, closed loop at saturation: {c['rps'] / b['rps']:.3f}  (target >= 0.97); "
              f"p99 {c['p99_ms'] / b['p99_ms']:.2f}x")
        for rate in rates:
            ratios = [results[f"c@{rate}#{r}"]["p99_ms"] / results[f"b@{rate}#{r}"]["p99_ms"] for r in range(args.repeats)]
            print(f"(c) vs (b) p99 at {rate} req/s (open loop): median {_median(ratios):.3f}x over "
                  f"{args.repeats} pairs ({', '.join(f'{x:.2f}' for x in ratios)})  (target <= 1.05 at half capacity)")
        print(f"(c) vs (b) p99, all open-loop pairs: median {_median(all_ratios(results, rates, args.repeats)):.2f}x")
        print("\nCPU cores in use during each Frugal run (busy CPU seconds per second):")
        print(f"{'configuration':<42} " + " ".join(f"{k:>15}" for k in next(iter(cores.values()))))
        for label, used in cores.items():
            print(f"{labels[label]:<42} " + " ".join(f"{v:>15.2f}" for v in used.values()))
        for label, (served, queued) in coverage.items():
            print(f"shadow jobs queued {labels[label].split(' ', 1)[1]}: {queued:,} for {served:,} champion answers")
        print(f"\nthen one scorer (frugal scorer) on the {scoring['jobs']:,} queued jobs: {scoring['rows/s']:,.0f} rows/s "
              f"using {scoring['cores']:.2f} cores, {scoring['per_core']:,.0f} rows per CPU-second "
              f"(Postgres {scoring['pg_cores']:.2f} cores); challenger rows {scoring['rows']:,}, "
              f"distinct request ids {scoring['distinct']:,}")
        answered = sum(r["requests"] for k, r in results.items() if k != "a")
        print(f"prediction rows logged to Postgres during (b) and (c): {logged:,} "
              f"(requests answered: {answered:,} + warm-up; shadow requests log two rows)")
    finally:
        for server in servers:
            server.stop()
        if pinned_pg is not None:
            pinned_pg.restore()
        drop_database(args.database, url)


if __name__ == "__main__":
    main()
