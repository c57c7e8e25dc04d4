"""The event log: every prediction and outcome reaches the database exactly once, without ever
blocking or failing the request that produced it.

- ``record()`` appends to a bounded in-memory queue and returns at once; one writer thread per
  process drains it in batches (``FRUGAL_EVENT_BATCH_SIZE`` or every ``FRUGAL_EVENT_FLUSH_INTERVAL_S``).
- If the database is unreachable, or the queue is full, the batch goes to an append-only spool on
  local disk (``<data dir>/spool``, JSON lines, fsynced per ``FRUGAL_SPOOL_FSYNC``); the writer
  replays spool files, oldest first, once the database answers, and deletes each file only after its
  rows are committed.  A file is replayed under an exclusive ``flock``, so two processes never
  replay it at once, and inserts are idempotent by (request_id, model_id), so a replay after a crash
  between commit and delete stores nothing twice.
- A row the database rejects as invalid (not a duplicate: say, a foreign key to a deleted model) is
  isolated by bisecting its batch and written to ``spool/dead/`` with the reason; the rest lands.
- A sampled shadow request adds a ``ShadowJobEvent`` right after its served row; the writer never
  splits the two across batches, so the job is committed with the row it shadows (or neither is),
  and scorer workers (service/scorer.py) score it from the database.
- ``close()`` (gunicorn's worker_exit on SIGTERM, the CLI) drains the queue to the database or the spool.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from service.errors import ServiceUnavailable

log = logging.getLogger("frugal.eventlog")

REPLAY_EVERY_S = 2.0


@dataclass(frozen=True, slots=True)
class PredictionEvent:
    request_id: str
    experiment_id: int
    phase: int
    arm: str
    unit_id: str
    model_id: int
    served: bool
    in_experiment: bool
    answered_by_id: int | None
    latency_ms: float
    inference_ms: float
    prediction: float | None
    label: str | None
    confidence: float | None
    cost: float
    cache_hit: bool
    fallback_reason: str | None
    source: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    request_id: str
    value: float
    at: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True)
class ShadowJobEvent:
    """A shadow request's row for a scorer: the features the champion answered and the request's
    overhead (its latency minus the champion's inference)."""

    request_id: str
    experiment_id: int
    phase: int
    unit_id: str
    features: Any
    overhead_ms: float
    created_at: datetime


KINDS = {"p": PredictionEvent, "o": OutcomeEvent, "s": ShadowJobEvent}
_KIND_OF = {cls: kind for kind, cls in KINDS.items()}
_TIME_FIELDS = {"created_at", "at", "received_at"}


def to_line(event: PredictionEvent | OutcomeEvent | ShadowJobEvent) -> str:
    data = asdict(event)
    for name in _TIME_FIELDS & data.keys():
        data[name] = data[name].isoformat()
    data["_k"] = _KIND_OF[type(event)]
    return json.dumps(data, separators=(",", ":"))


def from_line(line: str) -> PredictionEvent | OutcomeEvent | ShadowJobEvent:
    data = json.loads(line)
    cls = KINDS[data.pop("_k")]
    for name in _TIME_FIELDS & data.keys():
        data[name] = datetime.fromisoformat(data[name])
    return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass
class EventLogStats:
    recorded: int = 0
    written: int = 0          # prediction rows and outcomes handed to the database (duplicates included)
    spooled: int = 0
    replayed: int = 0
    dead_lettered: int = 0
    overflowed: int = 0       # queue full: went straight to the spool
    queued: int = 0
    spool_files: int = 0
    last_error: str | None = None


class Spool:
    """Append-only JSON-lines files; one new file per spilled batch, renamed into place when complete."""

    def __init__(self, directory: Path, fsync: str) -> None:
        self.directory = directory
        self.dead = directory / "dead"
        self.fsync = fsync
        self._lock = threading.Lock()

    def write(self, events: list[Any]) -> None:
        if not events:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = self.directory / f".{name}.tmp"
        with self._lock, open(tmp, "w") as handle:
            handle.write("".join(to_line(e) + "\n" for e in events))
            handle.flush()
            if self.fsync != "never":
                os.fsync(handle.fileno())
        tmp.rename(self.directory / f"{name}.jsonl")
        if self.fsync == "always":
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob("*.jsonl"))

    def dead_letter(self, events: list[Any], reason: str) -> None:
        self.dead.mkdir(parents=True, exist_ok=True)
        path = self.dead / f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        with open(path, "w") as handle:
            for e in events:
                handle.write(json.dumps({"reason": reason[:500], "event": json.loads(to_line(e))}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


class EventLog:
    def __init__(self, db, settings) -> None:
        self._db = db
        self._max = settings.event_queue_size
        self._batch = settings.event_batch_size
        self._interval = settings.event_flush_interval_s
        self.spool = Spool(settings.spool_dir, settings.spool_fsync)
        self._queue: deque[Any] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._db_down_until = 0.0
        self._last_replay = 0.0
        self._stats = EventLogStats()

    # -- the request path -------------------------------------------------------------------------
    def record(self, event: PredictionEvent | OutcomeEvent) -> bool:
        """Queue one event; never blocks on the database and never raises.  False only if even the
        spool could not take it (the disk is gone): the caller counts it."""
        return self.record_many([event])

    def record_outcomes(self, events: Iterable[OutcomeEvent]) -> bool:
        return self.record_many(list(events))

    def record_many(self, events: list[Any]) -> bool:
        try:
            with self._cond:
                self._stats.recorded += len(events)
                if self._closed or len(self._queue) + len(events) > self._max:
                    overflow = True
                else:
                    overflow = False
                    self._queue.extend(events)
                    self._ensure_writer()
                    if len(self._queue) >= self._batch:
                        self._cond.notify()
            if overflow:
                self.spool.write(events)
                with self._cond:
                    self._stats.overflowed += len(events)
                    self._stats.spooled += len(events)
            return True
        except Exception as exc:  # logging never fails a prediction
            log.error("event log could not queue or spool %d events: %s", len(events), exc)
            with self._cond:
                self._stats.last_error = f"{type(exc).__name__}: {exc}"
            return False

    # -- the writer -------------------------------------------------------------------------------
    def _ensure_writer(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="frugal-eventlog", daemon=True)
            self._thread.start()

    def _take(self) -> list[Any]:
        with self._cond:
            if len(self._queue) < self._batch and not self._closed:
                self._cond.wait(self._interval)
            batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
            while self._queue and isinstance(self._queue[0], ShadowJobEvent):  # stays with its served row
                batch.append(self._queue.popleft())
            self._in_flight = len(batch)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            try:
                if batch:
                    self._deliver(batch)
                self._maybe_replay()
            except Exception as exc:  # never let the writer die with events in hand
                log.exception("event writer error")
                self._stats.last_error = f"{type(exc).__name__}: {exc}"
                try:
                    self.spool.write(batch)
                    self._stats.spooled += len(batch)
                except Exception:
                    log.critical("could not spool %d events", len(batch))
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
            with self._cond:
                if self._closed and not self._queue:
                    return

    def _deliver(self, batch: list[Any]) -> None:
        """Write a batch to the database, or spool it if the database is down."""
        if time.monotonic() < self._db_down_until:
            self.spool.write(batch)
            self._stats.spooled += len(batch)
            return
        try:
            self._write(batch)
            self._stats.written += len(batch)
        except (ServiceUnavailable, OperationalError) as exc:
            self._db_down_until = time.monotonic() + 1.0
            self._stats.last_error = f"database unavailable: {str(exc)[:200]}"
            log.warning("database unavailable; spooling %d events to %s", len(batch), self.spool.directory)
            self.spool.write(batch)
            self._stats.spooled += len(batch)

    def _write(self, batch: list[Any]) -> None:
        """Insert; on an integrity error (not a duplicate: those are skipped), bisect to find the bad rows."""
        from service.store.events import insert_outcomes, insert_predictions, insert_shadow_jobs

        predictions = [e for e in batch if isinstance(e, PredictionEvent)]
        outcomes = [e for e in batch if isinstance(e, OutcomeEvent)]
        jobs = [e for e in batch if isinstance(e, ShadowJobEvent)]
        try:
            with self._db.unit_of_work() as session:
                insert_predictions(session, predictions)
                insert_outcomes(session, outcomes)
                insert_shadow_jobs(session, jobs)
        except (IntegrityError, DBAPIError) as exc:
            if isinstance(exc, OperationalError) or getattr(exc, "connection_invalidated", False):
                raise ServiceUnavailable("the database is unreachable") from exc
            if len(batch) == 1:
                self.spool.dead_letter(batch, f"{type(exc.orig).__name__}: {exc.orig}")
                self._stats.dead_lettered += 1
                log.error("dead-lettered an event the database refuses: %s", exc.orig)
                return
            middle = len(batch) // 2
            self._write(batch[:middle])
            self._write(batch[middle:])

    def _maybe_replay(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (now - self._last_replay < REPLAY_EVERY_S or now < self._db_down_until):
            return
        self._last_replay = now
        for path in self.spool.files():
            if not self._replay_file(path):
                return

    def _replay_file(self, path: Path) -> bool:
        try:
            handle = open(path)
        except FileNotFoundError:
            return True  # another process replayed it
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True  # another process is replaying it
            if not path.exists():
                return True
            events = [from_line(line) for line in handle if line.strip()]
            try:
                for start in range(0, len(events), max(self._batch, 1000)):
                    self._write(events[start:start + max(self._batch, 1000)])
            except (ServiceUnavailable, OperationalError):
                self._db_down_until = time.monotonic() + 1.0
                return False
            path.unlink()
            self._stats.replayed += len(events)
            return True

    # -- control ----------------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything recorded so far is in the database (queue drained, spool replayed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.notify_all()
                self._cond.wait(min(remaining, 0.05))
        while self.spool.files():
            if time.monotonic() >= deadline:
                return False
            with self._cond:
                busy = self._in_flight
            if not busy:
                self._db_down_until = 0.0
                self._maybe_replay(force=True)
            if self.spool.files():
                time.sleep(0.1)
        return True

    def close(self, timeout: float = 12.0) -> None:
        """Drain the queue into the database, or into the spool if it cannot be reached in time.

        Within 12 s: in a gunicorn worker, inside its graceful_timeout (30 s).  Shadow jobs are
        drained like any event: nothing else waits on shutdown."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
        if left:
            self.spool.write(left)
            self._stats.spooled += len(left)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            self._stats.queued = len(self._queue) + self._in_flight
        self._stats.spool_files = len(self.spool.files())
        return asdict(self._stats)


def event_log(rt) -> EventLog:
    """The process's event log (created on first use after a fork; closed with the runtime)."""

    def build() -> EventLog:
        from service.metrics import publisher

        publisher(rt)  # closers run in reverse: the publisher's last snapshot comes after the log's drain
        created = EventLog(rt.db, rt.settings)
        rt.on_close(created.close)
        if created.spool.files():  # left by a previous process (an outage, a crash): replay them now
            with created._cond:
                created._ensure_writer()
        return created

    return rt.lazy("eventlog", build)
