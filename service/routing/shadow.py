"""Shadow scoring: the challenger scores what the champion answered, off the request path.

Two executors, chosen by ``FRUGAL_SHADOW_EXECUTOR``:

- ``process`` (the default): each web worker process feeds a bounded queue read by a scorer process
  of its own (``FRUGAL_SHADOW_PROCESSES``, started on first use, with ``spawn``, at the lowest CPU
  priority: ``FRUGAL_SHADOW_NICE`` and, on Linux, ``SCHED_IDLE``).  The scorer has its own onnxruntime sessions and event log, so
  neither its model runs nor its logging hold the request process's interpreter lock, and the
  kernel gives request handling the CPU first: shadow scoring uses what the host has spare.  One-row
  requests that arrived together are scored in one run, but each is charged the time of a
  single-request run timed in the same batch (and a request of several rows is scored as one run of
  its own), so the challenger's inference time and cost are what serving that request would have
  taken.  A scorer that dies is restarted (at most
  once a second); what it had not scored is counted as dropped.
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

MAX_BATCH_ROWS = 256      # a scorer process takes at most this many rows off its pipe at once
RESTART_EVERY_S = 1.0     # a scorer process that died is restarted at most this often
LIVENESS_EVERY_S = 0.5    # how often the sender checks that the scorer processes are alive
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
SEND_EVERY_S = 0.02       # how often the sender ships what requests have queued (fewer wake-ups, larger messages)
FLUSH_RESERVE_S = 3.0     # of the shutdown budget, kept for scorers to flush what they scored (at most half of it)
COMPLETED, FAILED, EVENTS_DROPPED, DEADLINE = range(4)   # slots of the counters shared with the scorers


@dataclass(frozen=True)
class ShadowJob:
    """One request's rows the champion answered, for the challenger policy to score.

    ``rows`` holds (request_id, unit_id, features, overhead_ms): overhead is the request's latency
    minus the champion's inference time, the part of serving that does not depend on the model.
    """

    experiment_id: int
    phase: int
    policy: PolicySpec
    use_cache: bool
    rows: list[tuple[str, str, Any, float]]


@dataclass(frozen=True)
class ShadowCounts:
    submitted: int
    completed: int
    failed: int
    dropped: int
    events_dropped: int


def score_job(run_model: RunModel, settings: Settings, accept: Callable[[dict[str, Any]], bool], job: ShadowJob) -> int:
    """Score one request's rows as that request would have been (one run, so inference time and cost
    are what serving it would have taken) and log one challenger row per row; returns the events
    the log refused.  Latency is the estimate "had the challenger answered": the request's overhead
    (its latency minus the champion's model run: parsing, features, routing, logging) plus the
    challenger policy's model runs for that row (both models', for a row a cascade escalated)."""
    scored = run_policy(run_model, settings, job.policy, [row[2] for row in job.rows], job.use_cache)
    now = datetime.now(timezone.utc)
    refused = 0
    for (request_id, unit_id, _, overhead_ms), s in zip(job.rows, scored):
        event = prediction_event(experiment_id=job.experiment_id, phase=job.phase, request_id=request_id, unit_id=unit_id,
                                 arm="challenger", in_experiment=True, served=False, policy=job.policy, scored=s,
                                 latency_ms=overhead_ms + s.inference_ms, reason=None, now=now)
        refused += 0 if accept(event) else 1
    return refused


def timed_batch_runner(run_model: RunModel) -> RunModel:
    """A model runner for many one-row requests at once: it answers the first row in a run of its own,
    timed, and the rest in one more run, and charges every row that single run's time.

    So a row's inference time (and a measured cost) is what serving it alone took, as in
    ``score_job``, from a run timed in the same batch, while the batch costs two runs, not one per
    request.  Rows answered from the cache still take no time."""
    last_ms: dict[str, float] = {}

    def run(spec, rows: list[Any], use_cache: bool):
        first, first_ms, first_hits = run_model(spec, rows[:1], use_cache)
        if first_ms > 0:
            last_ms[spec.digest] = first_ms
        rest, rest_ms, rest_hits = run_model(spec, rows[1:], use_cache) if len(rows) > 1 else ([], 0.0, [])
        hits = first_hits + rest_hits
        misses = len(rows) - sum(hits)
        # the first row a cache hit: the last timed run of this model (else, rarely, the batch's average)
        single_ms = last_ms.get(spec.digest, rest_ms / max(misses, 1))
        return first + rest, single_ms * misses, hits

    return run


def score_batch(run_model: RunModel, settings: Settings, accept: Callable[[dict[str, Any]], bool],
                jobs: list[ShadowJob], batched: RunModel | None = None) -> tuple[int, int, int]:
    """Score what a scorer took off its pipe; returns (rows completed, rows failed, events refused).

    One-row requests of the same experiment and policy are scored together (``timed_batch_runner``):
    each row is still charged a single-request run's time.  A request of several rows is scored as
    one run of its own (``score_job``), as serving it would have been.  If a batch fails, its
    requests are scored one by one, so one bad row fails only its own request.  ``batched`` is
    ``timed_batch_runner(run_model)``, kept across calls by a scorer (it remembers the last timed run)."""
    completed = failed = refused = 0
    groups: dict[tuple, list[ShadowJob]] = {}
    for job in jobs:
        key = (job.experiment_id, job.phase, job.policy, job.use_cache) if len(job.rows) == 1 else (id(job),)
        groups.setdefault(key, []).append(job)
    batched = batched or timed_batch_runner(run_model)
    for group in groups.values():
        if len(group) > 1:
            try:
                refused += score_job(batched, settings, accept, _merged(group))
                completed += len(group)
                continue
            except Exception as exc:
                log.info("shadow batch of %d requests failed (%s: %s); scoring them one by one", len(group), type(exc).__name__, exc)
        for job in group:
            try:
                refused += score_job(run_model, settings, accept, job)
                completed += len(job.rows)
            except Exception as exc:
                failed += len(job.rows)
                log.warning("shadow challenger %s failed: %s: %s", job.policy.primary.ref, type(exc).__name__, exc)
    return completed, failed, refused


def _merged(group: list[ShadowJob]) -> ShadowJob:
    first = group[0]
    return ShadowJob(first.experiment_id, first.phase, first.policy, first.use_cache, [job.rows[0] for job in group])


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
            completed, failed, refused = score_batch(self._run_model, self._settings, self._accept, [job])
            self._add("completed", completed)
            self._add("failed", failed)
            self._add("events_dropped", refused)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


class ProcessShadow:
    """Shadow runs in scorer processes of this web worker's own.

    A request only appends its job to a bounded list; a sender thread ships what has gathered every
    ``SEND_EVERY_S`` as one message down a pipe (round robin over the scorers), so a request never
    pickles, writes to a pipe or wakes a thread.  The sender also starts and restarts the scorers,
    and blocks when they fall behind, so the list fills and further samples are dropped.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self._shared = None   # counters written by the scorers and the stop deadline (COMPLETED...): made with the first scorer
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: list[ShadowJob] = []
        self._pending_rows = 0
        self._sender: threading.Thread | None = None
        self._scorers: list[tuple[Any, Any]] = []   # (process, pipe end we send on)
        self._next = 0
        self._checked = self._started = 0.0
        self._closed = False
        self._submitted = self._sent = self._full = self._lost = 0
        self.restarts = 0

    def submit(self, job: ShadowJob) -> bool:
        n = len(job.rows)
        with self._lock:
            if self._closed or self._pending_rows + n > self._settings.shadow_queue_size:
                self._full += n
                return False
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_loop, name="frugal-shadow-sender", daemon=True)
                self._sender.start()
            self._pending.append(job)
            self._pending_rows += n
            self._submitted += n
        return True

    def counts(self) -> ShadowCounts:
        with self._lock:
            completed, failed, events_dropped = self._shared[:DEADLINE] if self._shared is not None else (0, 0, 0)
            return ShadowCounts(self._submitted, completed, failed, self._full + self._lost, events_dropped)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _ in self._scorers]

    # -- the sender thread ----------------------------------------------------------------------
    def _send_loop(self) -> None:
        # Scorers are started from this thread and inherit its signal mask: with SIGTERM and SIGINT
        # blocked, one that arrives while a scorer is still starting (a Ctrl-C, or a SIGTERM to the
        # whole process group) waits until the scorer ignores it, instead of killing it half-started.
        # Python runs signal handlers in the main thread, which keeps receiving them.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        while True:
            self._wake.wait(SEND_EVERY_S)
            with self._lock:
                batch, rows, closing = self._pending, self._pending_rows, self._closed
                self._pending, self._pending_rows = [], 0
            if batch:
                self._send(batch, rows)
            if closing:
                for _, conn in self._scorers:
                    try:
                        conn.send(None)
                    except OSError:
                        pass
                return

    def _send(self, jobs: list[ShadowJob], rows: int) -> None:
        try:
            self._ensure_running()
        except Exception:  # cannot start a scorer (out of memory, process limit): drop, count, retry later
            log.exception("cannot start a shadow scorer process")
            with self._lock:
                self._full += rows
            return
        if not self._scorers:   # a crash loop: wait before spawning again
            with self._lock:
                self._full += rows
            return
        _, conn = self._scorers[self._next % len(self._scorers)]
        self._next += 1
        with self._lock:
            self._sent += rows
        try:
            conn.send(jobs)   # blocks while that scorer is behind: meanwhile requests fill the list
        except OSError:       # its scorer died: counted as lost at the restart
            self._checked = float("-inf")
        except Exception:     # say, features that do not pickle: counted as lost, the sender goes on
            log.exception("could not send %d shadow rows to a scorer", rows)

    def _ensure_running(self) -> None:
        now = time.monotonic()
        if self._scorers and now - self._checked < LIVENESS_EVERY_S:
            return
        self._checked = now
        if self._scorers and all(p.is_alive() for p, _ in self._scorers):
            return
        with self._lock:
            self._make_counters()
        if self._started and now - self._started < RESTART_EVERY_S:
            self._stop_scorers()
            return
        if self._started:
            self._stop_scorers()
            with self._lock:
                self._lost = self._unscored()
                self.restarts += 1
            log.warning("shadow scorer process died; restarted (%d rows sent to scorers and not scored so far "
                        "are counted as dropped)", self._lost)
        scorers = []
        for i in range(self._settings.shadow_processes):
            receive, send = self._ctx.Pipe(duplex=False)
            proc = self._ctx.Process(target=_scorer_main, name=f"frugal-shadow-{i}", daemon=True,
                                     args=(self._settings, receive, self._shared, os.getpid()))
            proc.start()
            receive.close()   # the scorer holds the only read end: a send fails once it is gone
            scorers.append((proc, send))
        self._scorers = scorers
        self._started = now

    def _make_counters(self) -> None:
        """The counters shared with the scorers, made when first needed (shared memory, and
        multiprocessing's helper process); call with the lock held."""
        if self._shared is None:
            self._shared = self._ctx.Array("q", 4)

    def _unscored(self) -> int:
        """Rows sent to scorers that they neither scored nor failed (lost with a scorer that died or
        was stopped); call with the lock held."""
        return self._sent - (self._shared[COMPLETED] + self._shared[FAILED] if self._shared is not None else 0)

    def _stop_scorers(self) -> None:
        for proc, conn in self._scorers:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            conn.close()
        self._scorers = []

    def close(self, timeout_s: float | None = None) -> None:
        """Send what is pending, let the scorers finish it and flush their event logs, and stop.

        Within ``FRUGAL_SHADOW_DRAIN_S`` (15 s): gunicorn's worker_exit then flushes the web worker's
        own event log (within 12 s), and both must fit in its graceful_timeout (30 s).  Scorers stop
        scoring ``FLUSH_RESERVE_S`` before the end, so what they scored is flushed, not killed with
        them; what they had not scored is counted as dropped.  Only a scorer that still has not
        exited at the end (hung, or stopped) is killed."""
        timeout_s = self._settings.shadow_drain_s if timeout_s is None else timeout_s
        give_up = time.monotonic() + timeout_s
        with self._lock:
            self._closed = True
            sender = self._sender
            if sender is None:
                return
            # Set before any scorer starts or is lifted (below): a scorer that lowers its priority
            # later sees it and lifts itself.  Monotonic time is one clock for every process of the host.
            self._make_counters()
            self._shared[DEADLINE] = int((give_up - min(FLUSH_RESERVE_S, timeout_s / 2)) * 1000)
        for proc, _ in self._scorers:   # no request is left to protect: let them drain at normal priority
            _restore_priority(proc.pid)
        self._wake.set()
        sender.join(timeout_s)
        for proc, conn in self._scorers:
            proc.join(max(0.1, give_up - time.monotonic()))
            if proc.is_alive():
                log.warning("shadow scorer %s did not stop within %.0f s; killing it", proc.pid, timeout_s)
                proc.kill()
                proc.join(5)
            conn.close()
        with self._lock:
            self._lost = self._unscored()
            lost, sent = self._lost, self._sent
        if lost:
            log.warning("shadow scorers stopped with %d of the %d rows sent to them not scored (counted as dropped)", lost, sent)


def make_shadow(settings: Settings, run_model: RunModel, accept: Callable[[dict[str, Any]], bool],
                inflight: Callable[[], int]) -> ThreadShadow | ProcessShadow:
    if settings.shadow_executor == "process":
        return ProcessShadow(settings)
    return ThreadShadow(settings, run_model, accept, inflight)


# -- the scorer process ---------------------------------------------------------------------------
def _lower_priority(settings: Settings) -> None:
    """Nice, and on Linux SCHED_IDLE: the kernel then runs the scorer only on a CPU nothing else
    wants, and places a waking request thread on a CPU that runs only a scorer as if it were idle."""
    os.nice(settings.shadow_nice)
    if settings.shadow_sched_idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:   # a container that forbids it: nice alone
            log.info("shadow scorer stays at nice %d (SCHED_IDLE refused: %s)", settings.shadow_nice, exc)


def _restore_priority(pid: int) -> None:
    """Put every thread of a scorer back at normal priority (nice 0, SCHED_OTHER), so a stopping web
    worker's scorers drain and flush even while other processes keep the host busy (at SCHED_IDLE
    they would get no CPU at all).  Best effort: it takes CAP_SYS_NICE (root, say), else they drain
    at the priority they had."""
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    for tid in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, 0)
            if hasattr(os, "SCHED_OTHER"):
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        except OSError as exc:   # not permitted, or the thread is gone
            log.debug("shadow scorer %s thread %s keeps its priority: %s", pid, tid, exc)


def _scorer_main(settings: Settings, conn, shared, parent_pid: int) -> None:
    """Entry point of a scorer process: score until told to stop, or until the web worker is gone."""
    # Ctrl-C in a terminal, or SIGTERM to the whole process group: the web worker stops us in order
    # (a stop message after its requests), and if it dies we notice and stop ourselves.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)   # blocked since the fork (see _send_loop)
    _lower_priority(settings)
    if shared[DEADLINE]:   # the web worker began to stop before we lowered it: it lifted our priority first
        _restore_priority(os.getpid())
    from service.eventlog import PredictionEvent, event_log
    from service.logs import configure_logging
    from service.routing.runtime import model_runner
    from service.runtime import Runtime

    configure_logging(settings)
    rt = Runtime(settings)
    # Timed in this thread's CPU time: at the lowest priority a run may be preempted, and time spent
    # waiting for a CPU is not the challenger's latency or cost (SessionPool must exist before model_runner).
    from service.inference.sessions import SessionPool

    rt.lazy("sessions", lambda: SessionPool(settings, clock=time.thread_time))
    run_model = model_runner(rt)
    batched = timed_batch_runner(run_model)
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

    def out_of_time() -> bool:   # the web worker is stopping and its budget for scoring is spent
        deadline = shared[DEADLINE]
        return deadline > 0 and time.monotonic() * 1000 >= deadline

    stop = False
    try:
        while not stop and not out_of_time():
            if not conn.poll(1.0):
                if os.getppid() != parent_pid:   # the web worker died without stopping us
                    break
                continue
            jobs: list[ShadowJob] = []
            while True:   # what has arrived, up to MAX_BATCH_ROWS rows
                try:
                    message = conn.recv()
                except EOFError:   # the web worker closed its end
                    stop = True
                    break
                if message is None:
                    stop = True
                    break
                jobs.extend(message)
                if sum(len(j.rows) for j in jobs) >= MAX_BATCH_ROWS or not conn.poll(0):
                    break
            if jobs and out_of_time():
                log.warning("shadow scorer stopping: shutdown budget spent with %d rows unscored (counted as dropped)",
                            sum(len(j.rows) for j in jobs))
                break
            if jobs:
                completed, failed, refused = score_batch(run_model, settings, accept, jobs, batched)
                add(EVENTS_DROPPED, refused)
                add(FAILED, failed)
                add(COMPLETED, completed)
    finally:
        rt.close()   # flushes the event log (or spools it)
