"""The event log: every prediction and outcome reaches the database exactly once, without ever
blocking or failing the request that produced it.

- ``record()`` appends to a bounded in-memory queue and returns at once; one writer thread per
  process drains it in batches (``FRUGAL_EVENT_BATCH_SIZE`` or every ``FRUGAL_EVENT_FLUSH_INTERVAL_S``).
- If the database is unreachable or too slow (an ingest transaction is bounded by
  ``FRUGAL_INGEST_STATEMENT_TIMEOUT_MS`` and ``FRUGAL_INGEST_LOCK_TIMEOUT_MS``), or the queue is full,
  the batch goes to an append-only spool on local disk (``<data dir>/spool``, JSON lines, fsynced per
  ``FRUGAL_SPOOL_FSYNC``); the writer replays spool files, oldest first, once the database answers,
  and deletes each file only after its rows are committed.  A file is replayed under an exclusive
  ``flock``, so two processes never replay it at once, and inserts are idempotent by their natural
  keys, so a replay after a crash between commit and delete stores nothing twice.
- Any row the database refuses for what it holds (not for being unreachable: a NUL byte, a value out
  of range, a foreign key to a deleted model) is isolated by bisecting its batch and written to
  ``spool/dead/`` with the reason; every other row lands.  A spool line that cannot be read (torn,
  corrupt) is set aside there too, and the rest of its file is replayed.  ``frugal events
  replay-dead-letters`` puts dead letters back through the writer once the cause is fixed.
- If the spool cannot be written (disk full, read-only), the events are counted as lost
  (``frugal_eventlog_lost_total``), ``/readyz`` and the metrics say the spool is not writable, and
  :meth:`EventLog.spool_now` (outcomes answered "queued") reports failure so the caller answers 503.
- ``close()`` (gunicorn's worker_exit on SIGTERM, the CLI) gives the writer ``FRUGAL_EVENT_CLOSE_BUDGET_S``
  to drain the queue to the database, then spools whatever is left, the batch in flight included.

Record kinds are registered in :data:`KINDS` (a tag, the frozen dataclass, the insert function), so
the queue, spool, replay and dead letters are generic over the row type.

A sampled shadow request adds a ``ShadowJobEvent`` right after its served row; the writer never
splits the two across batches, so the job is committed with the row it shadows (or neither is;
unless one of them is a row the database refuses, which is isolated alone), and scorer workers
(service/scorer.py) score it from the database.
"""

from __future__ import annotations

import fcntl
import importlib
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
from typing import Any, Callable, Iterable

from sqlalchemy.exc import DBAPIError, OperationalError

from service.errors import ServiceUnavailable

log = logging.getLogger("frugal.eventlog")

REPLAY_EVERY_S = 2.0
PROBE_EVERY_S = 1.0


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
    reference_cost: float | None = None   # a shadow challenger's row: the champion's cost timed beside it


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


@dataclass(frozen=True)
class RecordKind:
    """One kind of row the log carries: its spool tag, its dataclass and where its bulk insert lives
    (``"module:function"``, taking ``(session, events)``; resolved on first use, so importing this
    module imports no store code)."""

    tag: str
    cls: type
    insert: str

    @property
    def time_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in fields(self.cls) if f.type in ("datetime", datetime))

    def inserter(self) -> Callable[[Any, list[Any]], Any]:
        module, name = self.insert.split(":")
        return getattr(importlib.import_module(module), name)


KINDS: dict[str, RecordKind] = {}
_BY_CLASS: dict[type, RecordKind] = {}


def register_kind(kind: RecordKind) -> None:
    """Add a record kind; rows of every kind in a batch are inserted in one transaction, in
    registration order."""
    KINDS[kind.tag] = kind
    _BY_CLASS[kind.cls] = kind


register_kind(RecordKind("p", PredictionEvent, "service.store.events:insert_predictions"))
register_kind(RecordKind("o", OutcomeEvent, "service.store.events:insert_outcomes"))
register_kind(RecordKind("s", ShadowJobEvent, "service.store.events:insert_shadow_jobs"))


def kind_of(event: Any) -> RecordKind:
    return _BY_CLASS[type(event)]


def to_line(event: Any) -> str:
    kind = kind_of(event)
    data = asdict(event)
    for name in kind.time_fields & data.keys():
        data[name] = data[name].isoformat()
    data["_k"] = kind.tag
    return json.dumps(data, separators=(",", ":"))


def from_line(line: str) -> Any:
    """One spool line back to its event; raises (KeyError, ValueError, TypeError) on a line that is
    torn or corrupt."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a spool line must be a JSON object")
    kind = KINDS[data.pop("_k")]
    for name in kind.time_fields & data.keys():
        data[name] = datetime.fromisoformat(data[name])
    # a field added since the line was written (a spool from an older release) takes its default
    return kind.cls(**{f.name: data[f.name] for f in fields(kind.cls) if f.name in data})


def unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be reached or is too slow (spool and retry), False
    when it refuses what the rows hold (isolate them)."""
    if isinstance(exc, (ServiceUnavailable, OperationalError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    try:  # raw driver errors (COPY runs on the DBAPI connection, outside SQLAlchemy's wrapping)
        import psycopg2
    except ImportError:  # pragma: no cover - SQLite-only install
        return False
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {orig}"[:500]


@dataclass
class EventLogStats:
    recorded: int = 0
    written: int = 0          # rows handed to the database (duplicates included)
    spooled: int = 0
    replayed: int = 0
    dead_lettered: int = 0    # rows the database refuses, set aside in spool/dead/
    corrupt_lines: int = 0    # unreadable spool lines set aside in spool/dead/
    lost: int = 0             # events neither stored nor spooled: the spool could not be written
    overflowed: int = 0       # queue full: went straight to the spool
    queued: int = 0
    spool_files: int = 0
    dead_letter_files: int = 0
    spool_writable: bool = True
    database_available: bool = True
    last_error: str | None = None


def _new_name() -> str:
    return f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Spool:
    """Append-only JSON-lines files; one new file per spilled batch, renamed into place when complete."""

    def __init__(self, directory: Path, fsync: str) -> None:
        self.directory = directory
        self.dead = directory / "dead"
        self.fsync = fsync
        self._lock = threading.Lock()
        self._probed_at = -PROBE_EVERY_S
        self._probe: str | None = None

    def write(self, events: list[Any], *, fsync: bool | None = None) -> None:
        """Write ``events`` as one new file; raises OSError if the disk will not take it (nothing
        partial is left behind)."""
        if events:
            self._write_file(self.directory, "".join(to_line(e) + "\n" for e in events),
                             self.fsync != "never" if fsync is None else fsync)

    def _write_file(self, directory: Path, text: str, sync: bool) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        name = _new_name()
        tmp = directory / f".{name}.tmp"
        try:
            with self._lock, open(tmp, "w") as handle:
                handle.write(text)
                handle.flush()
                if sync:
                    os.fsync(handle.fileno())
            path = directory / f"{name}.jsonl"
            tmp.rename(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if sync and self.fsync == "always":
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return path

    def files(self) -> list[Path]:
        try:
            return sorted(self.directory.glob("*.jsonl"))
        except OSError:
            return []

    def dead_files(self) -> list[Path]:
        try:
            return sorted(self.dead.glob("*.jsonl"))
        except OSError:
            return []

    def dead_letter(self, events: list[Any], reason: str) -> None:
        """Set rows aside with the reason (raises OSError if the disk will not take them)."""
        text = "".join(json.dumps({"reason": reason[:500], "event": json.loads(to_line(e))}) + "\n" for e in events)
        self._write_file(self.dead, text, True)

    def dead_letter_lines(self, lines: list[str], reason: str) -> None:
        """Set aside spool lines that cannot be read, verbatim."""
        text = "".join(json.dumps({"reason": reason[:500], "line": line}) + "\n" for line in lines)
        self._write_file(self.dead, text, True)

    def note_failure(self, why: str) -> None:
        """A write just failed: say so until the next probe (at most a second), even if the last probe passed."""
        self._probe, self._probed_at = why, time.monotonic()

    def writable(self) -> str | None:
        """None when a small file can be written and synced here now, else why not (checked at most
        once a second)."""
        now = time.monotonic()
        if now - self._probed_at >= PROBE_EVERY_S:
            self._probed_at = now
            probe = self.directory / f".probe-{os.getpid()}-{threading.get_ident()}"
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                with open(probe, "wb") as handle:
                    handle.write(b"\0" * 4096)
                    handle.flush()
                    os.fsync(handle.fileno())
                self._probe = None
            except OSError as exc:
                self._probe = f"{type(exc).__name__}: {exc.strerror or exc}"
            finally:
                try:
                    probe.unlink(missing_ok=True)
                except OSError:
                    pass
        return self._probe


class EventLog:
    def __init__(self, db, settings) -> None:
        self._db = db
        self._settings = settings
        self._max = settings.event_queue_size
        self._batch = settings.event_batch_size
        self._interval = settings.event_flush_interval_s
        self.spool = Spool(settings.spool_dir, settings.spool_fsync)
        self._queue: deque[Any] = deque()
        self._cond = threading.Condition()
        self._in_flight: list[Any] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._db_down_until = 0.0
        self._last_replay = 0.0
        self._stats = EventLogStats()

    # -- the request path -------------------------------------------------------------------------
    def record(self, event: Any) -> bool:
        """Queue one event; never blocks on the database and never raises.  False only if even the
        spool could not take it (the disk is gone): it is counted as lost."""
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
        except Exception as exc:  # logging never fails a prediction
            log.error("event log could not queue %d events: %s", len(events), exc)
            return self._spool(events)
        if overflow:
            with self._cond:
                self._stats.overflowed += len(events)
            return self._spool(events)
        return True

    def spool_now(self, events: list[Any]) -> bool:
        """Write ``events`` to the spool and fsync before returning (an outcome answered "queued"):
        True once they are on disk, False if the disk will not take them (the caller answers 503;
        they are not counted as lost, as nobody was told they were kept)."""
        with self._cond:
            self._stats.recorded += len(events)
        try:
            self.spool.write(events, fsync=True)
        except Exception as exc:  # noqa: BLE001 - any failure here is "not durable"
            self._spool_failed(exc)
            with self._cond:
                self._stats.recorded -= len(events)
            return False
        with self._cond:
            self._stats.spooled += len(events)
            self._stats.spool_writable = True
            self._ensure_writer()  # it replays the spool once the database answers
        return True

    # -- the spool --------------------------------------------------------------------------------
    def _spool(self, events: list[Any]) -> bool:
        """Spool events the log has accepted; if the disk will not take them they are lost and counted."""
        if not events:
            return True
        try:
            self.spool.write(events)
        except Exception as exc:  # noqa: BLE001
            self._spool_failed(exc)
            with self._cond:
                self._stats.lost += len(events)
            log.critical("LOST %d events: the spool %s cannot be written (%s)", len(events), self.spool.directory, exc)
            return False
        with self._cond:
            self._stats.spooled += len(events)
            self._stats.spool_writable = True
        return True

    def _spool_failed(self, exc: BaseException) -> None:
        self.spool.note_failure(f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}")
        with self._cond:
            self._stats.spool_writable = False
            self._stats.last_error = f"spool not writable: {type(exc).__name__}: {exc}"[:300]

    def _dead_letter(self, events: list[Any], reason: str) -> None:
        try:
            self.spool.dead_letter(events, reason)
        except Exception as exc:  # noqa: BLE001
            self._spool_failed(exc)
            with self._cond:
                self._stats.lost += len(events)
            log.critical("LOST %d events the database refuses (%s): spool/dead cannot be written (%s)", len(events), reason, exc)
            return
        with self._cond:
            self._stats.dead_lettered += len(events)
        log.error("dead-lettered %d event(s) the database refuses: %s", len(events), reason)

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
            self._in_flight = batch
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            try:
                if batch:
                    self._deliver(batch)
                if not self._closed:
                    self._maybe_replay()
            except Exception as exc:  # never let the writer die with events in hand
                log.exception("event writer error")
                with self._cond:
                    self._stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if batch and self._in_flight is batch:
                    self._spool(batch)
            finally:
                with self._cond:
                    self._in_flight = []
                    self._cond.notify_all()
            with self._cond:
                if self._closed and not self._queue:
                    return

    def _deliver(self, batch: list[Any]) -> None:
        """Write a batch to the database, or spool it if the database is down or too slow."""
        if time.monotonic() < self._db_down_until:
            self._spool(batch)
            return
        try:
            self._write(batch)
        except Exception as exc:
            if not unavailable(exc):
                raise
            self._mark_down(exc)
            log.warning("database unavailable; spooling %d events to %s", len(batch), self.spool.directory)
            self._spool(batch)
        else:
            with self._cond:
                self._stats.database_available = True

    def _mark_down(self, exc: BaseException) -> None:
        self._db_down_until = time.monotonic() + 1.0
        with self._cond:
            self._stats.database_available = False
            self._stats.last_error = f"database unavailable: {str(exc)[:200]}"

    def _insert(self, batch: list[Any]) -> None:
        """One transaction, every kind in the batch, bounded by the ingest timeouts."""
        from service.store.events import ingest_timeouts

        groups: dict[str, list[Any]] = {}
        for event in batch:
            groups.setdefault(kind_of(event).tag, []).append(event)
        with self._db.unit_of_work() as session:
            ingest_timeouts(session, statement_ms=self._settings.ingest_statement_timeout_ms,
                            lock_ms=self._settings.ingest_lock_timeout_ms)
            for tag, kind in KINDS.items():
                if tag in groups:
                    kind.inserter()(session, groups[tag])

    def _write(self, batch: list[Any]) -> None:
        """Insert; raise if the database is unavailable.  Any other failure is the rows' own: bisect
        the batch and dead-letter each row the database refuses, so every good row is stored."""
        if not batch:
            return
        try:
            self._insert(batch)
        except Exception as exc:
            if unavailable(exc):
                raise
            if len(batch) == 1:
                self._dead_letter(batch, _reason(exc))
                return
            middle = len(batch) // 2
            self._write(batch[:middle])
            self._write(batch[middle:])
            return
        with self._cond:
            self._stats.written += len(batch)

    def _maybe_replay(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (now - self._last_replay < REPLAY_EVERY_S or now < self._db_down_until):
            return
        self._last_replay = now
        for path in self.spool.files():
            if not self._replay_file(path):
                return

    def _replay_file(self, path: Path) -> bool:
        """Replay one spool file; False only when the database became unavailable (stop for now)."""
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return True  # another process replayed it
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True  # another process is replaying it
            if not path.exists():
                return True
            events, corrupt = [], []
            for raw in handle.read().split(b"\n"):
                if not raw.strip():
                    continue
                try:
                    events.append(from_line(raw.decode("utf-8")))
                except Exception:  # noqa: BLE001 - torn or corrupt: set aside, read on
                    corrupt.append(raw.decode("utf-8", errors="backslashreplace"))
            step = max(self._batch, 1000)
            try:
                for start in range(0, len(events), step):
                    self._write(events[start:start + step])
            except Exception as exc:
                if not unavailable(exc):
                    raise
                self._mark_down(exc)
                return False
            if corrupt:
                try:
                    self.spool.dead_letter_lines(corrupt, f"unreadable spool line in {path.name}")
                except Exception as exc:  # noqa: BLE001 - keep the file: its good rows are in, the rest waits
                    self._spool_failed(exc)
                    return True
                with self._cond:
                    self._stats.corrupt_lines += len(corrupt)
                log.error("set aside %d unreadable line(s) of spool file %s", len(corrupt), path.name)
            path.unlink()
            with self._cond:
                self._stats.replayed += len(events)
            return True

    def replay_dead_letters(self) -> tuple[int, int]:
        """Put every dead letter back through the writer (after the cause is fixed): rows the
        database now takes are stored, rows it still refuses go to a new dead-letter file.  Returns
        (events replayed, unreadable lines kept).  Raises ServiceUnavailable if the database is down."""
        replayed = kept = 0
        for path in self.spool.dead_files():
            events, lines = [], []
            for raw in path.read_text(errors="backslashreplace").splitlines():
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                    if "event" in record:
                        events.append(from_line(json.dumps(record["event"])))
                    else:
                        lines.append(record["line"])
                except Exception:  # noqa: BLE001
                    lines.append(raw)
            recovered = []
            for line in lines:  # a line set aside as unreadable may be readable now (a fixed tag, say)
                try:
                    recovered.append(from_line(line))
                except Exception:  # noqa: BLE001
                    kept += 1
            self._write(events + recovered)  # rows still refused are dead-lettered again, in a new file
            remaining = [line for line in lines if not _readable(line)]
            if remaining:
                self.spool.dead_letter_lines(remaining, f"still unreadable (from {path.name})")
            path.unlink()
            replayed += len(events) + len(recovered)
        return replayed, kept

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
                busy = bool(self._in_flight)
            if not busy:
                self._db_down_until = 0.0
                self._maybe_replay(force=True)
            if self.spool.files():
                time.sleep(0.1)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Drain the queue into the database within ``FRUGAL_EVENT_CLOSE_BUDGET_S``; then spool what is
        left, the writer's batch in flight included (a slow database: the insert may still commit,
        and the replay then stores nothing twice, as inserts are idempotent)."""
        budget = self._settings.event_close_budget_s if timeout is None else timeout
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(budget)
        with self._cond:
            in_flight = list(self._in_flight) if thread is not None and thread.is_alive() else []
            left = in_flight + list(self._queue)
            self._queue.clear()
        if left:
            log.warning("closing with %d events not written in %.1f s (%d in flight): spooling them", len(left), budget, len(in_flight))
            self._spool(left)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            self._stats.queued = len(self._queue) + len(self._in_flight)
        problem = self.spool.writable()
        with self._cond:
            if problem is not None:
                self._stats.spool_writable = False
                self._stats.last_error = self._stats.last_error or f"spool not writable: {problem}"
            elif not self._stats.spool_writable:
                self._stats.spool_writable = True
        self._stats.spool_files = len(self.spool.files())
        self._stats.dead_letter_files = len(self.spool.dead_files())
        return asdict(self._stats)


def _readable(line: str) -> bool:
    try:
        from_line(line)
        return True
    except Exception:  # noqa: BLE001
        return False


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
