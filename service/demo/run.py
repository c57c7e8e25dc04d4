"""`make demo`: the whole loop on the embedded default, in under two minutes, then a recommendation.

It trains (or loads) the demo models, starts the web service (gunicorn) and a Celery worker on SQLite
and the embedded broker, registers the models, creates a shadow and an A/B experiment (cheap vs
complex), replays labelled traffic with outcomes over HTTP, asks the worker to analyse, prints the
result table, and stops everything it started.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

DEMO_REQUESTS = int(os.environ.get("FRUGAL_DEMO_REQUESTS", "4000"))


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return s.getsockname()[1]   # the port itself, or the one picked for --port 0
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


class _Stack:
    """The processes the demo starts; all stopped on exit, whatever happens."""

    def __init__(self, env: dict[str, str], port: int, logs: Path) -> None:
        self.env, self.port, self.logs, self.procs = env, port, logs, []

    def start(self, name: str, argv: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "wb")
        self.procs.append((name, subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)))

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in reversed(self.procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


DEMO_MARK = ".made-by-frugal-demo"


def _logs() -> Path:
    return Path(os.environ.get("FRUGAL_DATA_DIR", ".frugal")).resolve() / "logs"
# What a run leaves in the data directory; the trained models (demo-models/) are kept between runs.
_DEMO_STATE = ("frugal.db", "frugal.db-wal", "frugal.db-shm", "broker.db", "broker.db-wal", "broker.db-shm", "results.db",
               "results.db-wal", "results.db-shm", "celerybeat-schedule", "secret_key", "models", "reports", "spool",
               "metrics", "logs")


def _fresh_demo_dir(data_dir: Path) -> None:
    """A fresh database and broker each run, but never over a database the demo did not make."""
    if (data_dir / "frugal.db").exists() and not (data_dir / DEMO_MARK).exists():
        raise SystemExit(f"{data_dir / 'frugal.db'} holds a database the demo did not create; set FRUGAL_DATA_DIR "
                         "to another directory for the demo (it starts from an empty database each run)")
    for name in _DEMO_STATE:
        path = data_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    (data_dir / "logs").mkdir(parents=True)
    (data_dir / DEMO_MARK).write_text("frugal demo owns this data directory's database; it replaces it on each run\n")


def run_demo(port: int = 8000) -> int:
    from service.auth import create_key
    from service.demo.models import build_demo_models
    from service.migrate import upgrade
    from service.settings import load_settings
    from service.store.database import Database

    started = time.monotonic()
    # The demo's database is the embedded default one (FRUGAL_DATA_DIR, default .frugal), so the commands
    # it suggests afterwards (frugal report, frugal keys list, frugal serve) see what it made.
    data_dir = Path(os.environ.get("FRUGAL_DATA_DIR", ".frugal")).resolve()
    _fresh_demo_dir(data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRUGAL_")}
    # `frugal worker` on the embedded default also runs a shadow scorer: demo-shadow's rows get scored there.
    env.update({"FRUGAL_DATA_DIR": str(data_dir), "FRUGAL_LOG_LEVEL": "WARNING", "FRUGAL_ANALYSIS_INTERVAL_S": "3600",
                "FRUGAL_METRICS_INTERVAL_S": "0.5"})
    settings = load_settings({k: v for k, v in env.items() if k.startswith("FRUGAL_")})

    _say("training or loading the demo models (scikit-learn's bundled breast-cancer data set) ...")
    models = build_demo_models(data_dir / "demo-models")
    champion, challenger = _pick(models)
    _say(f"champion {champion.name}:{champion.version}, challenger {challenger.name}:{challenger.version}")

    db = Database(settings.resolved_database_url)
    upgrade(db.engine)
    admin = {"Authorization": "Bearer " + create_key(db, name="demo-admin", scope="admin").secret}
    sdk = {"Authorization": "Bearer " + create_key(db, name="demo-sdk", scope="sdk").secret}
    db.dispose()

    port = _free_port(port)
    url = f"http://127.0.0.1:{port}"
    stack = _Stack(env, port, data_dir / "logs")
    try:
        stack.start("web", [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf",
                            "--bind", f"127.0.0.1:{port}", "--workers", "2", "service.app:create_app()"])
        stack.start("worker", [sys.executable, "-m", "service.cli", "worker", "--concurrency", "1"])
        _wait_healthy(url)
        _say(f"service up at {url} (API docs: {url}/docs); worker and shadow scorer started on the embedded broker")

        refs = {}
        for model in (champion, challenger):
            with open(model.path, "rb") as handle:
                response = requests.post(f"{url}/v1/models", headers=admin, timeout=60,
                                         files={"file": (model.path.name, handle)},
                                         data={"name": model.name, "version": model.version, "task": model.task,
                                               "description": model.description})
            _check(response, 201)
            refs[model.name] = response.json()["ref"]
            # measure it on this host: its cost per 1,000 predictions comes from the measured CPU time
            bench = requests.post(f"{url}/v1/models/{response.json()['id']}/benchmark", headers=admin, timeout=120,
                                  json={"budget_s": 1.0})
            _check(bench, 200)
        rows, labels = _labelled_rows(challenger)
        experiments = {
            "demo-shadow": _definition("demo-shadow", "shadow", refs[champion.name], refs[challenger.name]),
            "demo-ab": _definition("demo-ab", "ab", refs[champion.name], refs[challenger.name]),
        }
        for name, body in experiments.items():
            _check(requests.post(f"{url}/v1/experiments", headers=admin, json=body, timeout=30), 201)
            _check(requests.post(f"{url}/v1/experiments/{name}/start", headers=admin, json={"reason": "demo"}, timeout=30), 200)
        _say(f"created and started {', '.join(experiments)}; replaying {DEMO_REQUESTS} labelled requests into each ...")
        for name in experiments:
            _replay(url, sdk, name, rows, labels)
        _wait_for_shadow_scoring(url, admin)
        time.sleep(1.0)  # the event writers flush every 0.25 s
        results = {}
        for name in experiments:
            task = requests.post(f"{url}/v1/experiments/{name}/analyze", headers=admin, timeout=30)
            _check(task, 202)
            _wait_task(url, admin, task.json()["task_id"])
            response = requests.get(f"{url}/v1/experiments/{name}/results", headers=admin, timeout=30)
            _check(response, 200)
            results[name] = response.json()
        _print_table(results, experiments)
        _say("each analysis is stored: GET /v1/experiments/<name>/results (latest) and /analyses (history); "
             f"the demo's database is in {data_dir}")
        _say(f"done in {time.monotonic() - started:.0f} s; stopping the service and the worker")
        return 0
    finally:
        stack.stop()


def _pick(models: dict[str, Any]):
    values = list(models.values())
    champion = next((m for m in values if m.role == "champion"), None) if hasattr(values[0], "role") else None
    challenger = next((m for m in values if m.role == "challenger"), None) if hasattr(values[0], "role") else None
    if champion is None or challenger is None:
        champion = next(m for k, m in models.items() if "gbm" in k or "forest" in k or "champion" in k)
        challenger = next(m for k, m in models.items() if "logistic" in k or "cheap" in k or "challenger" in k)
    return champion, challenger


def _definition(name: str, mode: str, champion: str, challenger: str) -> dict[str, Any]:
    return {
        "name": name, "mode": mode, "description": "demo: cheap logistic regression vs gradient boosting",
        "champion": {"kind": "model", "model": champion}, "challenger": {"kind": "model", "model": challenger},
        "unit": "unit_id", "weights": [0.5, 0.5],
        "metric": {"kind": "binary", "quality": "accuracy", "margin": 0.03, "margin_type": "absolute"},
        "guardrails": {"latency": {"threshold_ms": 50, "max_share": 0.05}, "cost_must_be_lower": True},
        "design": {"alpha": 0.05, "power": 0.8, "planned_n_per_arm": DEMO_REQUESTS, "method": "asymptotic_cs"},
    }


def _labelled_rows(model) -> tuple[list[list[float]], list[float]]:
    path = Path(model.path).parent / "test.csv"
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        label_at = header.index("label")
        rows, labels = [], []
        for record in reader:
            values = [float(v) for v in record]
            labels.append(values[label_at])
            rows.append([v for i, v in enumerate(values) if i != label_at])
    return rows, labels


def _replay(url: str, headers: dict[str, str], experiment: str, rows, labels) -> None:
    outcomes = []
    batch = 50
    for start in range(0, DEMO_REQUESTS, batch):
        items = []
        for k in range(start, min(start + batch, DEMO_REQUESTS)):
            items.append({"unit_id": f"user-{k}", "features": rows[k % len(rows)], "request_id": f"{experiment}-{k}"})
            outcomes.append({"request_id": f"{experiment}-{k}", "value": labels[k % len(rows)]})
        _check(requests.post(f"{url}/v1/predict/batch", headers=headers, json={"experiment": experiment, "items": items}, timeout=30), 200)
    for start in range(0, len(outcomes), 1000):
        _check(requests.post(f"{url}/v1/outcomes", headers=headers, json=outcomes[start:start + 1000], timeout=30), 200)


def _wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the demo service did not start; see {_logs()}/web.log")


def _wait_for_shadow_scoring(url: str, headers, timeout: float = 60) -> None:
    """Until every shadow job sampled is written and scored (or failed, or dropped), from /v1/metrics."""
    deadline = time.monotonic() + timeout
    while True:
        text = requests.get(f"{url}/v1/metrics", headers=headers, timeout=10).text
        m = {k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines()
                                      if line.startswith(("frugal_shadow_", "frugal_eventlog_queued")))}
        settled = m["frugal_shadow_scored_total"] + m["frugal_shadow_failed_total"] + m["frugal_shadow_dropped_total"]
        done = (settled >= m["frugal_shadow_sampled_total"] and m["frugal_shadow_backlog"] == 0
                and m["frugal_eventlog_queued"] == 0)
        if done or time.monotonic() > deadline:
            _say(f"shadow scoring: {m['frugal_shadow_scored_total']:.0f} of {m['frugal_shadow_sampled_total']:.0f} "
                 f"samples scored, {m['frugal_shadow_dropped_total']:.0f} dropped, {m['frugal_shadow_failed_total']:.0f} failed")
            return
        time.sleep(0.3)


def _wait_task(url: str, headers, task_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(f"{url}/v1/tasks/{task_id}", headers=headers, timeout=10).json()
        if body["state"] == "SUCCESS":
            return body
        if body["state"] == "FAILURE":
            raise SystemExit(f"analysis failed on the worker: {body.get('error')} (see {_logs()}/worker.log)")
        time.sleep(0.3)
    raise SystemExit(f"the worker did not finish the analysis in time; see {_logs()}/worker.log")


def _check(response: requests.Response, status: int) -> None:
    if response.status_code != status:
        raise SystemExit(f"{response.request.method} {response.url} answered {response.status_code}: {response.text[:500]}")


def _print_table(results: dict[str, Any], definitions: dict[str, Any]) -> None:
    from service.demo.summary import summarise

    print()
    header = f"{'experiment':<12} {'decision':<10} {'quality diff':>12} {'bound':>8} {'margin':>7} {'p95 champ':>10} {'p95 chall':>10} {'$/1M champ':>11} {'$/1M chall':>11} {'savings':>8}"
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        s = summarise(result)
        print(f"{name:<12} {s['decision']:<10} {s['diff']:>12} {s['bound']:>8} {s['margin']:>7} {s['p95_champion']:>10} "
              f"{s['p95_challenger']:>10} {s['cost_champion']:>11} {s['cost_challenger']:>11} {s['savings']:>8}")
    print()
    for name, result in results.items():
        print(f"{name}: {result['explanation']}")
    print()
