"""gunicorn settings for Frugal (used by `frugal serve` and the Docker image): a module of the
installed package, so ``gunicorn -c python:service.gunicorn_conf 'service.app:create_app()'`` works
from any directory.

The app is created in the master (``preload_app``) so a bad setting stops start-up once, with a
message naming the variable; everything with a thread, socket or onnxruntime session is created
lazily in each worker after the fork (service/runtime.py).
"""

import multiprocessing
import os
from pathlib import Path

from service.logs import gunicorn_logconfig
from service.prometheus import mark_process_dead, prepare_multiprocess_dir

# prometheus-client's multiprocess mode: set before the app (and prometheus-client) is imported.
prepare_multiprocess_dir(Path(os.environ.get("FRUGAL_DATA_DIR", ".frugal")), "web")

bind = os.environ.get("FRUGAL_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("FRUGAL_WEB_WORKERS", max(2, multiprocessing.cpu_count())))
threads = int(os.environ.get("FRUGAL_WEB_THREADS", "4"))
worker_class = "gthread"
preload_app = True
timeout = 30
graceful_timeout = 30          # time a worker has to flush its event log on SIGTERM
keepalive = 5
max_requests = 0
accesslog = None
errorlog = "-"
loglevel = os.environ.get("FRUGAL_LOG_LEVEL", "info").lower()
logconfig_dict = gunicorn_logconfig(loglevel, json_lines=os.environ.get("FRUGAL_LOG_JSON", "true").lower() not in ("0", "false", "no"))


def post_fork(server, worker):
    # Background threads share the worker's interpreter lock with request threads (the event-log
    # writer, isolated challenger runs).  With
    # CPython's default 5 ms switch interval a request thread can wait that long behind one of them;
    # a shorter one keeps requests moving (benchmarks/serving.py, open loop).
    import sys

    sys.setswitchinterval(float(os.environ.get("FRUGAL_GIL_SWITCH_INTERVAL_S", "0.0005")))
    # Drop connections inherited from the master; the Runtime re-creates per-process objects.
    app = worker.app.wsgi()
    runtime = app.extensions.get("frugal")
    if runtime is not None:
        runtime.db.engine.dispose(close=False)


def worker_exit(server, worker):
    # SIGTERM (or max_requests): flush the event log, or spool it to disk if the database is down.
    try:
        app = worker.wsgi
    except AttributeError:
        return
    runtime = getattr(app, "extensions", {}).get("frugal")
    if runtime is not None:
        runtime.close()


def child_exit(server, worker):
    mark_process_dead(worker.pid)   # its live gauges go; its counters stay in the totals
