"""What a worker (or beat) process hooks into Celery: logging in Frugal's JSON format at
FRUGAL_LOG_LEVEL (Celery configures nothing itself once ``setup_logging`` has a receiver), the task
id bound to every record a task logs, and the task metrics (service.prometheus)."""

from __future__ import annotations

import time

from celery import signals

from service.settings import Settings

_started: dict[str, tuple[float, object]] = {}


def connect(settings: Settings) -> None:
    """Connect the receivers (once per process, before the worker or beat starts)."""
    from service.logs import configure_logging
    from service.logs import task_id as task_id_var
    from service.prometheus import observe_task

    def _logging(**_: object) -> None:
        import logging

        configure_logging(settings)
        logging.captureWarnings(True)     # Celery's start-up warnings (running as root, say) become JSON lines too
        warnings_logger = logging.getLogger("py.warnings")
        warnings_logger.handlers = logging.getLogger("frugal").handlers[:]
        warnings_logger.propagate = False

    _logging()
    signals.setup_logging.connect(_logging, weak=False)

    @signals.task_prerun.connect(weak=False)
    def _prerun(task_id=None, task=None, **_: object) -> None:  # noqa: A002 - Celery's argument names
        token = task_id_var.set(task_id)
        _started[task_id] = (time.perf_counter(), token)

    @signals.task_postrun.connect(weak=False)
    def _postrun(task_id=None, task=None, state=None, **_: object) -> None:
        started, token = _started.pop(task_id, (None, None))
        observe_task(getattr(task, "name", "unknown"), state or "UNKNOWN",
                     time.perf_counter() - started if started is not None else None)
        if token is not None:
            try:
                task_id_var.reset(token)
            except ValueError:   # set in another context (a thread pool): leave it
                pass


def serve_metrics(port: int) -> None:
    """The worker's metrics (every pool process's, added up) on http://0.0.0.0:<port>/metrics."""
    import os

    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client import multiprocess

    from service.prometheus import ENV, instruments

    instruments()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=os.environ[ENV])
    start_http_server(port, registry=registry)
