"""Labelled metrics and histograms through prometheus-client: per experiment, arm and model, request
latency, inference time, HTTP requests and Celery tasks.

Every process of a gunicorn (its web workers and their shadow scorers) or of a Celery worker (its
pool children) writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess
mode); ``GET /v1/metrics`` on the web and the worker's ``--metrics-port`` add them up.
``service.gunicorn_conf`` and ``frugal worker`` point the variable at ``<data dir>/prometheus/<role>``
before prometheus-client is imported, and clear it at start: these counters start from zero with the
server, as Prometheus expects of a process's counters (``rate()`` handles the reset).  Without the
variable (tests, ``frugal serve --dev``) the metrics live in this process only.

The unlabelled counters of ``service.metrics`` (routing, shadow scoring, the event log, the cache)
are unchanged and are served beside these.  Metrics are created on first use, never at import.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("frugal.prometheus")
ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds.  Served requests are milliseconds; a slow challenger or a cold session can take a second.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TASK_BUCKETS = (0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


def prepare_multiprocess_dir(data_dir: Path, role: str) -> Path:
    """Point prometheus-client at a fresh ``<data_dir>/prometheus/<role>`` (call before importing it)."""
    path = Path(data_dir).resolve() / "prometheus" / role
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(path)
    return path


@dataclass(frozen=True)
class Instruments:
    predictions: object          # Counter: experiment, arm, model, served
    fallbacks: object            # Counter: experiment, reason
    latency: object              # Histogram: experiment, arm
    inference: object            # Histogram: model
    http_requests: object        # Counter: method, route, status
    http_latency: object         # Histogram: method, route
    tasks: object                # Counter: task, state
    task_seconds: object         # Histogram: task


@functools.cache
def instruments() -> Instruments:
    from prometheus_client import Counter, Histogram

    return Instruments(
        predictions=Counter("frugal_model_predictions", "Rows scored, per experiment, arm and model; served=false: a "
                            "shadow or isolated challenger run nobody waited for", ["experiment", "arm", "model", "served"]),
        fallbacks=Counter("frugal_model_fallbacks", "Rows the champion answered because the challenger failed or was late",
                          ["experiment", "reason"]),
        latency=Histogram("frugal_prediction_latency_seconds", "Latency of a served row inside the service "
                          "(routing, cache and inference)", ["experiment", "arm"], buckets=LATENCY_BUCKETS),
        inference=Histogram("frugal_model_inference_seconds", "onnxruntime time of a scored row's batch, per model",
                            ["model"], buckets=LATENCY_BUCKETS),
        http_requests=Counter("frugal_http_requests", "HTTP requests answered, per route and status",
                              ["method", "route", "status"]),
        http_latency=Histogram("frugal_http_request_duration_seconds", "HTTP request duration, per route",
                               ["method", "route"], buckets=LATENCY_BUCKETS),
        tasks=Counter("frugal_worker_tasks", "Celery tasks finished, per task and final state", ["task", "state"]),
        task_seconds=Histogram("frugal_worker_task_duration_seconds", "Celery task run time", ["task"], buckets=TASK_BUCKETS),
    )


# Labelled children by (family, label values): ``labels()`` costs as much as the increment itself, and
# these run once or more per prediction (a few microseconds in all; see benchmarks/serving.py).
_children: dict[tuple, object] = {}


def _child(family: str, *values: str):
    key = (family, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = getattr(instruments(), family).labels(*values)
    return child


def observe_prediction(event, experiment: str, model: str) -> None:
    """One prediction row (a service.eventlog.PredictionEvent) the router hands to the event log."""
    try:
        arm = event.arm or "none"
        _child("predictions", experiment, arm, model, "true" if event.served else "false").inc()
        if event.served:
            _child("latency", experiment, arm).observe(float(event.latency_ms or 0.0) / 1000.0)
            if event.fallback_reason:
                _child("fallbacks", experiment, event.fallback_reason).inc()
        if not event.cache_hit:
            _child("inference", model).observe(float(event.inference_ms or 0.0) / 1000.0)
    except Exception:  # metrics never fail a prediction
        log.exception("could not record prediction metrics")


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    try:
        _child("http_requests", method, route, str(status)).inc()
        _child("http_latency", method, route).observe(seconds)
    except Exception:
        log.exception("could not record request metrics")


def observe_task(task: str, state: str, seconds: float | None) -> None:
    try:
        _child("tasks", task, state).inc()
        if seconds is not None:
            _child("task_seconds", task).observe(seconds)
    except Exception:
        log.exception("could not record task metrics")


def exposition() -> bytes:
    """This server's labelled metrics: every process's samples (multiprocess mode), else this process's."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    instruments()  # families appear (with no samples) before anything is recorded
    directory = os.environ.get(ENV)
    if not directory or not Path(directory).is_dir():
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit: drop a dead worker's live gauges (its counters stay in the totals)."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
