"""Shadow scoring: the challenger scores what the champion answered, off the request path.

Two executors, chosen by ``FRUGAL_SHADOW_EXECUTOR``:

- ``process`` (the default): each web worker process feeds a bounded queue read by a scorer process
  of its own (``FRUGAL_SHADOW_PROCESSES``, started on first use, with ``spawn``, at a lower CPU
  priority, ``FRUGAL_SHADOW_NICE``).  The scorer has its own onnxruntime sessions and event log, so
  neither its model runs nor its logging hold the request process's interpreter lock, and the
  kernel gives request handling the CPU first: shadow scoring uses what the host has spare.  It
  scores what has queued up as one batch per policy.  A scorer that dies is restarted (at most once
  a second); what it had not scored is counted as dropped.
- ``thread``: a bounded thread pool in the request process, each run first waiting (up to
  ``FRUGAL_SHADOW_DEFER_MS``) for a moment with no request in flight.  No extra process, but the
  challenger's Python work shares the interpreter lock with requests.

Either way a full queue drops the shadow sample and counts it; a failing challenger is counted and
logged, and never reaches the caller.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_module
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from service.routing.catalog import PolicySpec
from service.routing.policy import RunModel, prediction_event, run_policy
from service.settings import Settings

log = logging.getLogger("frugal.shadow")

MAX_BATCH_ROWS = 256      # a scorer process scores at most this many queued rows in one run
RESTART_EVERY_S = 1.0     # a scorer process that died is restarted at most this often
LIVENESS_EVERY_S = 0.5    # how often submit() checks that the scorer processes are alive


@dataclass(frozen=True)
class ShadowJob:
    """Rows the champion answered, for the challenger policy to score: [(request_id, unit_id, features)]."""

    experiment_id: int
    phase: int
    policy: PolicySpec
    use_cache: bool
    rows: list[tuple[str, str, Any]]


@dataclass(frozen=True)
class ShadowCounts:
    submitted: int
    completed: int
    failed: int
    dropped: int
    events_dropped: int


def score_job(run_model: RunModel, settings: Settings, accept: Callable[[dict[str, Any]], bool], job: ShadowJob) -> int:
    """Score a job and log one challenger row per request; returns the events the log refused."""
    started = time.perf_counter()
    scored = run_policy(run_model, settings, job.policy, [f for _, _, f in job.rows], job.use_cache)
    elapsed_ms = (time.perf_counter() - started) * 1000.0 / len(job.rows)
    now = datetime.now(timezone.utc)
    refused = 0
    for (request_id, unit_id, _), s in zip(job.rows, scored):
        event = prediction_event(experiment_id=job.experiment_id, phase=job.phase, request_id=request_id, unit_id=unit_id,
                                 arm="challenger", in_experiment=True, served=False, policy=job.policy, scored=s,
                                 latency_ms=elapsed_ms, reason=None, now=now)
        refused += 0 if accept(event) else 1
    return refused


class ThreadShadow:
    """Shadow runs on a bounded thread pool in the request process."""

    def __init__(self, settings: Settings, run_model: RunModel, accept: Callable[[dict[str, Any]], bool],
                 inflight: Callable[[], int]) -> None:
        self._settings, self._run_model, self._accept, self._inflight = settings, run_model, accept, inflight
        self._pool = ThreadPoolExecutor(max_workers=settings.shadow_workers, thread_name_prefix="frugal-shadow")
        self._slots = threading.BoundedSemaphore(settings.shadow_queue_size)
        self.defer_s = settings.shadow_defer_ms / 1000.0
        self._lock = threading.Lock()
        self._counts = {"submitted": 0, "completed": 0, "failed": 0, "dropped": 0, "events_dropped": 0}

    def _add(self, name: str, n: int) -> None:
        with self._lock:
            self._counts[name] += n

    def counts(self) -> ShadowCounts:
        with self._lock:
            return ShadowCounts(**self._counts)

    def submit(self, job: ShadowJob) -> bool:
        if not self._slots.acquire(blocking=False):
            self._add("dropped", len(job.rows))
            return False
        try:
            self._pool.submit(self._run, job)
        except RuntimeError:  # shut down
            self._slots.release()
            self._add("dropped", len(job.rows))
            return False
        self._add("submitted", len(job.rows))
        return True

    def _run(self, job: ShadowJob) -> None:
        # Threads share one interpreter lock, so a shadow run while a request is in flight delays
        # that request: wait (up to defer_s) for a moment with none in flight.
        give_up = time.monotonic() + self.defer_s
        while self._inflight() and time.monotonic() < give_up:
            time.sleep(0.0005)
        try:
            self._add("events_dropped", score_job(self._run_model, self._settings, self._accept, job))
            self._add("completed", len(job.rows))
        except Exception as exc:
            self._add("failed", len(job.rows))
            log.warning("shadow challenger %s failed: %s: %s", job.policy.primary.ref, type(exc).__name__, exc)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


class ProcessShadow:
    """Shadow runs in scorer processes of this web worker's own, fed through a bounded queue."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self._shared = self._ctx.Array("q", 3)    # completed, failed, events_dropped: written by the scorers
        self._lock = threading.Lock()
        self._queue = None
        self._procs: list[Any] = []
        self._checked = 0.0
        self._started = 0.0
        self._closed = False
        self._submitted = self._full = self._lost = 0
        self.restarts = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def _start(self) -> None:
        """(Re)start the scorers on a fresh queue; what the old ones had not scored is lost."""
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
        if self._queue is not None:
            self.restarts += 1
            self._queue.cancel_join_thread()  # its reader is gone: do not wait to flush it
            self._queue.close()
            self._lost = self._submitted - self._shared[0] - self._shared[1]
            log.warning("shadow scorer process died; restarted (%d rows it had not scored are counted as dropped)",
                        self._lost)
        self._queue = self._ctx.Queue(maxsize=self._settings.shadow_queue_size)
        self._procs = [self._ctx.Process(target=_scorer_main, name=f"frugal-shadow-{i}", daemon=True,
                                         args=(self._settings, self._queue, self._shared, os.getpid()))
                       for i in range(self._settings.shadow_processes)]
        for proc in self._procs:
            proc.start()
        self._started = time.monotonic()

    def _ensure_running(self) -> bool:
        now = time.monotonic()
        if self._queue is not None and now - self._checked < LIVENESS_EVERY_S:
            return True
        with self._lock:
            if self._closed:
                return False
            self._checked = now
            if self._queue is None:
                self._start()
            elif not all(p.is_alive() for p in self._procs):
                if now - self._started < RESTART_EVERY_S:
                    return False   # a crash loop: drop samples rather than spawn without end
                self._start()
        return True

    def submit(self, job: ShadowJob) -> bool:
        if not self._ensure_running():
            with self._lock:
                self._full += len(job.rows)
            return False
        try:
            self._queue.put_nowait(job)
        except (queue_module.Full, ValueError, AssertionError, OSError):  # full, or closed under us
            with self._lock:
                self._full += len(job.rows)
            return False
        with self._lock:
            self._submitted += len(job.rows)
        return True

    def counts(self) -> ShadowCounts:
        with self._lock:
            completed, failed, events_dropped = self._shared[:]
            return ShadowCounts(self._submitted, completed, failed, self._full + self._lost, events_dropped)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def close(self, timeout_s: float = 20.0) -> None:
        """Let the scorers finish what was queued, flush their event logs, and stop."""
        with self._lock:
            self._closed = True
            procs, q = self._procs, self._queue
        if q is None:
            return
        give_up = time.monotonic() + timeout_s
        for proc in procs:
            if proc.is_alive():
                try:
                    q.put(None, timeout=max(0.1, give_up - time.monotonic()))
                except (queue_module.Full, ValueError, OSError):
                    break
        for proc in procs:
            proc.join(max(0.1, give_up - time.monotonic()))
            if proc.is_alive():
                log.warning("shadow scorer %s did not stop within %.0f s; killing it", proc.pid, timeout_s)
                proc.kill()
                proc.join(5)
        q.cancel_join_thread()
        q.close()
        with self._lock:
            self._lost = self._submitted - self._shared[0] - self._shared[1]


def make_shadow(settings: Settings, run_model: RunModel, accept: Callable[[dict[str, Any]], bool],
                inflight: Callable[[], int]) -> ThreadShadow | ProcessShadow:
    if settings.shadow_executor == "process":
        return ProcessShadow(settings)
    return ThreadShadow(settings, run_model, accept, inflight)


# -- the scorer process ---------------------------------------------------------------------------
def _take_batch(q, first: ShadowJob) -> tuple[list[ShadowJob], bool]:
    """``first`` and whatever else is queued, up to MAX_BATCH_ROWS rows; True if a stop was read."""
    jobs, rows = [first], len(first.rows)
    while rows < MAX_BATCH_ROWS:
        try:
            job = q.get_nowait()
        except queue_module.Empty:
            break
        if job is None:
            return jobs, True
        jobs.append(job)
        rows += len(job.rows)
    return jobs, False


def _merge(jobs: list[ShadowJob]) -> list[ShadowJob]:
    """One job per (experiment, phase, policy, cache): one model run for all of their rows."""
    groups: dict[tuple, list[ShadowJob]] = {}
    for job in jobs:
        groups.setdefault((job.experiment_id, job.phase, job.policy, job.use_cache), []).append(job)
    return [ShadowJob(k[0], k[1], k[2], k[3], [row for job in group for row in job.rows]) for k, group in groups.items()]


def _scorer_main(settings: Settings, q, shared, parent_pid: int) -> None:
    """Entry point of a scorer process: score until told to stop, or until the web worker is gone."""
    # Ctrl-C in a terminal, or SIGTERM to the whole process group: the web worker stops us in order
    # (a stop message after its requests), and if it dies we notice and stop ourselves.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(settings.shadow_nice)
    from service.eventlog import PredictionEvent, event_log
    from service.logs import configure_logging
    from service.routing.runtime import model_runner
    from service.runtime import Runtime

    configure_logging(settings)
    rt = Runtime(settings)
    run_model = model_runner(rt)
    events = event_log(rt)

    def accept(event: dict[str, Any]) -> bool:
        try:
            return events.record(PredictionEvent(**event))
        except Exception:
            log.exception("event log refused a shadow event")
            return False

    def add(index: int, n: int) -> None:
        with shared.get_lock():
            shared[index] += n

    stop = False
    try:
        while not stop:
            try:
                first = q.get(timeout=1.0)
            except queue_module.Empty:
                if os.getppid() != parent_pid:   # the web worker died without stopping us
                    break
                continue
            if first is None:
                break
            jobs, stop = _take_batch(q, first)
            scored = 0
            for job in _merge(jobs):
                try:
                    add(2, score_job(run_model, settings, accept, job))
                    scored += len(job.rows)
                except Exception as exc:
                    add(1, len(job.rows))
                    log.warning("shadow challenger %s failed: %s: %s", job.policy.primary.ref, type(exc).__name__, exc)
            # "completed" means durable (in the database or the spool): a scorer killed after this
            # point loses none of it.  Waiting here also batches the next take when traffic is heavy.
            if not events.drain(timeout=30.0):
                log.warning("shadow events not yet durable after 30 s; they stay queued in the event log")
            add(0, scored)
    finally:
        rt.close()   # flushes the event log (or spools it)
