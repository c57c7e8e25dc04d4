"""Counters every process keeps (routing, shadow scoring, the event log, the prediction cache),
gathered across processes for ``GET /v1/metrics``.

gunicorn runs several web workers (and a scorer may run beside them), and a request reaches one
of them; so each process publishes a snapshot of its counters to
``<data dir>/metrics/<pid>.<token>.json`` every ``FRUGAL_METRICS_INTERVAL_S`` and when it stops, and
the endpoint adds up every process's latest snapshot.  A process that has stopped (or died) has its last snapshot folded into
``retired.json``, so the totals never go down while the data directory lives: they are Prometheus
counters, and a decrease would read as a reset.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("frugal.metrics")

# name -> (type, help).  Values come from snapshot(); a name missing from a snapshot counts as 0.
METRICS: dict[str, tuple[str, str]] = {
    "frugal_predictions_total": ("counter", "Rows answered by the router"),
    "frugal_fallbacks_total": ("counter", "Rows a failing or late A/B challenger left to the champion"),
    "frugal_shadow_sampled_total": ("counter", "Shadow jobs the web workers handed to the event log for the scorers"),
    "frugal_shadow_scored_total": ("counter", "Shadow jobs a scorer scored and wrote the challenger's row for"),
    "frugal_shadow_failed_total": ("counter", "Shadow jobs whose challenger run failed (counted in shadow_drops)"),
    "frugal_shadow_dropped_total": ("counter", "Shadow jobs dropped unscored, older than FRUGAL_SHADOW_MAX_AGE_S"),
    "frugal_shadow_backlog": ("gauge", "Shadow jobs waiting in the database for a scorer (read when scraped)"),
    "frugal_router_events_dropped_total": ("counter", "Prediction events the event log refused"),
    "frugal_eventlog_recorded_total": ("counter", "Events handed to the event log"),
    "frugal_eventlog_written_total": ("counter", "Events written to the database (duplicates included)"),
    "frugal_eventlog_spooled_total": ("counter", "Events written to the disk spool (database unreachable, or queue full)"),
    "frugal_eventlog_replayed_total": ("counter", "Spooled events replayed into the database"),
    "frugal_eventlog_dead_lettered_total": ("counter", "Events the database refuses, set aside in spool/dead/"),
    "frugal_eventlog_corrupt_lines_total": ("counter", "Unreadable spool lines (torn, corrupt) set aside in spool/dead/"),
    "frugal_eventlog_lost_total": ("counter", "Accepted events neither stored nor spooled: the spool could not be written"),
    "frugal_eventlog_queued": ("gauge", "Events waiting in memory for the writer"),
    "frugal_eventlog_spool_unwritable": ("gauge", "Processes whose spool cannot be written now (disk full or read-only)"),
    "frugal_eventlog_database_unavailable": ("gauge", "Processes whose event writer cannot reach the database now"),
    "frugal_prediction_cache_hits_total": ("counter", "Prediction cache hits"),
    "frugal_prediction_cache_misses_total": ("counter", "Prediction cache misses"),
    "frugal_prediction_cache_evictions_total": ("counter", "Prediction cache entries evicted (size bound)"),
}


def snapshot(rt) -> dict[str, float]:
    """This process's counters: only what it has created (a scorer has no router, say)."""
    values: dict[str, float] = {}
    router = rt.peek("router")
    if router is not None:
        s = router.stats
        values.update({
            "frugal_predictions_total": s.predictions, "frugal_fallbacks_total": s.fallbacks,
            "frugal_shadow_sampled_total": s.shadow_sampled, "frugal_router_events_dropped_total": s.events_dropped,
        })
    scorer = rt.peek("scorer")
    if scorer is not None:
        c = scorer.stats
        values.update({"frugal_shadow_scored_total": c.scored, "frugal_shadow_failed_total": c.failed,
                       "frugal_shadow_dropped_total": c.expired})
    events = rt.peek("eventlog")
    if events is not None:
        e = events.stats()
        values.update({f"frugal_eventlog_{k}_total": e[k]
                       for k in ("recorded", "written", "spooled", "replayed", "dead_lettered", "corrupt_lines", "lost")})
        values["frugal_eventlog_queued"] = e["queued"]
        values["frugal_eventlog_spool_unwritable"] = 0 if e["spool_writable"] else 1
        values["frugal_eventlog_database_unavailable"] = 0 if e["database_available"] else 1
    cache = rt.peek("prediction_cache")
    if cache is not None:
        c = cache.stats
        values.update({"frugal_prediction_cache_hits_total": c.hits, "frugal_prediction_cache_misses_total": c.misses,
                       "frugal_prediction_cache_evictions_total": c.evictions})
    return values


class Publisher:
    """Writes this process's snapshot every ``interval_s`` and once more when it stops."""

    def __init__(self, rt, directory: Path, interval_s: float) -> None:
        self._rt, self._dir, self._interval = rt, directory, interval_s
        self._path = directory / f"{os.getpid()}.{secrets.token_hex(4)}.json"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="frugal-metrics", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.publish()

    def publish(self) -> None:
        try:
            _write_json(self._path, snapshot(self._rt))
        except Exception:   # metrics never break the process that keeps them
            log.exception("could not publish metrics")

    def close(self) -> None:
        self._stop.set()
        self.publish()
        try:
            _retire(self._dir, [self._path])
        except Exception:
            log.exception("could not retire this process's metrics")


def publisher(rt) -> Publisher:
    """This process's publisher (started on first use after a fork; stopped with the runtime)."""

    def build() -> Publisher:
        created = Publisher(rt, rt.settings.data_dir / "metrics", rt.settings.metrics_interval_s)
        rt.on_close(created.close)
        return created

    return rt.lazy("metrics_publisher", build)


def collect(directory: Path) -> tuple[dict[str, float], int]:
    """Every process's latest counters added up (retired processes included), and how many are live."""
    dead = [path for path in _snapshots(directory) if not _alive(int(path.name.split(".")[0]))]
    if dead:
        _retire(directory, dead)
    with _locked(directory, fcntl.LOCK_SH):
        totals = dict(_read_json(directory / "retired.json"))
        live = _snapshots(directory)
        for path in live:
            for name, value in _read_json(path).items():
                if name in METRICS:
                    totals[name] = totals.get(name, 0) + value
    return totals, len(live)


def exposition(totals: dict[str, float], live: int) -> str:
    """Prometheus text format (version 0.0.4)."""
    lines = ["# HELP frugal_processes Processes publishing metrics now", "# TYPE frugal_processes gauge",
             f"frugal_processes {live}"]
    for name, (kind, text) in METRICS.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {_number(totals.get(name, 0))}"]
    return "\n".join(lines) + "\n"


# -- files ----------------------------------------------------------------------------------------
def _snapshots(directory: Path) -> list[Path]:
    """Live snapshot files: ``<pid>.<token>.json``."""
    try:
        return sorted(p for p in directory.glob("*.*.json") if p.name.split(".")[0].isdigit())
    except OSError:
        return []


@contextmanager
def _locked(directory: Path, mode: int):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, mode)
        yield


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _retire(directory: Path, paths: list[Path]) -> None:
    """Fold these processes' last snapshots into retired.json (counters only) and remove them."""
    with _locked(directory, fcntl.LOCK_EX):
        retired = _read_json(directory / "retired.json")
        for path in paths:
            for name, value in _read_json(path).items():
                if METRICS.get(name, ("gauge",))[0] == "counter":
                    retired[name] = retired.get(name, 0) + value
            _write_json(directory / "retired.json", retired)
            path.unlink(missing_ok=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
