"""Buffered, batched, retried delivery of outcomes and locally-served prediction events.

Items leave the buffer only when the service has acknowledged them (the service is idempotent on
request id, so a retry after a lost acknowledgement stores nothing twice).  The buffer is bounded:
beyond it items go to the spool file when one is configured, else they are dropped and counted.
Nothing is dropped silently: every drop is counted in :meth:`Outbox.stats` and logged.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import deque
from itertools import islice
from pathlib import Path
from typing import Any, Callable

from frugal_sdk.transport import Response, TransportError

log = logging.getLogger("frugal_sdk")

KINDS = ("outcomes", "events")
_RETRYABLE = {401, 403, 408, 425, 429}  # a revoked key may be rotated back: keep the data, retry


class Outbox:
    def __init__(self, post: Callable[[str, Any, float], Response], *, capacity: int, batch_size: int,
                 interval: float, timeout: float, spool_path: str | Path | None, max_backoff: float = 30.0) -> None:
        self._post = post
        self._capacity, self._batch, self._interval, self._timeout = capacity, batch_size, interval, timeout
        self._spool = Path(spool_path) if spool_path else None
        self._max_backoff = max_backoff
        self._queues: dict[str, deque] = {k: deque() for k in KINDS}
        self._init_sync()
        self._counts = {k: 0 for k in ("outcomes_sent", "outcomes_duplicate", "outcomes_conflict", "outcomes_queued",
                                       "events_sent", "events_duplicate", "events_rejected", "outcomes_rejected",
                                       "dropped", "spooled", "unspooled", "retries", "invalid")}
        self.last_error: str | None = None
        self._backoff = 0.0
        self._closed = False
        if self._spool is not None:
            self._unspool()

    def _init_sync(self) -> None:
        self._lock = threading.Lock()        # guards the queues and counters
        self._send_lock = threading.Lock()   # one delivery at a time (sender thread or flush)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- producer side --------------------------------------------------------------------------
    def put(self, kind: str, item: dict[str, Any]) -> None:
        with self._lock:
            queue = self._queues[kind]
            if sum(len(q) for q in self._queues.values()) >= self._capacity:
                self._overflow(kind, item)
                return
            queue.append(item)
            full = len(queue) >= self._batch
        if full:
            self._wake.set()
        self.ensure_thread()

    def _overflow(self, kind: str, item: dict[str, Any]) -> None:  # called with self._lock held
        if self._spool is not None and self._append_spool([(kind, item)]):
            self._counts["spooled"] += 1
            return
        self._counts["dropped"] += 1
        if self._counts["dropped"] in (1, 10, 100, 1000) or self._counts["dropped"] % 10000 == 0:
            log.error("frugal SDK buffer full (%d items): %d %s dropped so far; the service is unreachable (%s)",
                      self._capacity, self._counts["dropped"], kind, self.last_error)

    def ensure_thread(self) -> None:
        if self._closed or (self._thread is not None and self._thread.is_alive()):
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="frugal-sdk-outbox", daemon=True)
                self._thread.start()

    def after_fork(self) -> None:
        """In a forked child: fresh locks and no thread; the parent's buffered items are the
        parent's to deliver, so the child starts empty (nothing is delivered twice by two processes)."""
        self._init_sync()
        self._queues = {k: deque() for k in KINDS}

    # -- delivery -------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._backoff or self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._deliver_all(deadline=time.monotonic() + max(self._timeout * 4, 5.0))

    def _deliver_all(self, deadline: float) -> bool:
        """Send batches until the buffer is empty, an attempt fails, or the deadline passes."""
        with self._send_lock:
            while time.monotonic() < deadline:
                kind = next((k for k in KINDS if self._queues[k]), None)
                if kind is None:
                    if self._spool is not None and self._unspool():
                        continue
                    return True
                with self._lock:
                    batch = list(islice(self._queues[kind], self._batch))
                if not self._send(kind, batch):
                    self._backoff = min(self._max_backoff, max(0.2, self._backoff * 2)) * random.uniform(0.5, 1.0)
                    with self._lock:
                        self._counts["retries"] += 1
                    return False
                self._backoff = 0.0
                with self._lock:
                    for _ in batch:
                        self._queues[kind].popleft()
            return False

    def _send(self, kind: str, batch: list[dict[str, Any]]) -> bool:
        """True when the batch is settled (acknowledged, or refused for good and counted)."""
        body = batch if kind == "outcomes" else {"events": batch}
        try:
            response = self._post(kind, body, self._timeout)
        except TransportError as exc:
            self.last_error = str(exc)
            return False
        if response.status == 200:
            self._count_ack(kind, json.loads(response.body))
            return True
        if response.status in _RETRYABLE or response.status >= 500:
            self.last_error = f"HTTP {response.status}: {response.body[:200]!r}"
            return False
        if len(batch) > 1:  # one bad item refuses the whole batch: split to find it, keep the rest
            half = len(batch) // 2
            return self._send(kind, batch[:half]) and self._send(kind, batch[half:])
        with self._lock:
            self._counts[f"{kind}_rejected"] += 1
        log.error("frugal refused a %s item for good (HTTP %d): %r: %s", kind[:-1], response.status, batch[0],
                  response.body[:300])
        return True

    def _count_ack(self, kind: str, body: dict[str, Any]) -> None:
        with self._lock:
            if kind == "outcomes":
                self._counts["outcomes_sent"] += body.get("accepted", 0)
                self._counts["outcomes_duplicate"] += body.get("duplicates", 0)
                self._counts["outcomes_conflict"] += body.get("conflicts", 0)
                self._counts["outcomes_queued"] += body.get("queued", 0)
            else:
                self._counts["events_sent"] += body.get("accepted", 0)
                self._counts["events_duplicate"] += body.get("duplicates", 0)
                self._counts["events_rejected"] += body.get("rejected", 0)
        for r in body.get("results", []):
            if r.get("status") in ("rejected", "conflict"):
                log.error("frugal %s %s: %s %s", kind[:-1], r.get("request_id"), r["status"], r.get("detail", ""))

    def flush(self, timeout: float) -> bool:
        """Deliver everything buffered now, waiting at most ``timeout`` seconds.  True when empty."""
        deadline = time.monotonic() + timeout
        while True:
            if self._deliver_all(deadline) and not self.pending():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(remaining, max(self._backoff, 0.05)))

    def close(self, timeout: float) -> None:
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._stop.set()
        self._wake.set()
        with self._lock:
            left = [(k, item) for k in KINDS for item in self._queues[k]]
            for q in self._queues.values():
                q.clear()
            if left and self._spool is not None and self._append_spool(left):
                self._counts["spooled"] += len(left)
                log.warning("frugal service unreachable at close: %d items spooled to %s for the next start",
                            len(left), self._spool)
            elif left:
                self._counts["dropped"] += len(left)
                log.error("frugal service unreachable at close: %d items dropped (configure spool_path to keep them)",
                          len(left))

    # -- spool file (JSON lines: {"kind": ..., "item": ...}) ------------------------------------
    def _append_spool(self, items: list[tuple[str, dict[str, Any]]]) -> bool:
        try:
            self._spool.parent.mkdir(parents=True, exist_ok=True)
            with open(self._spool, "a", encoding="utf-8") as f:
                f.writelines(json.dumps({"kind": k, "item": i}) + "\n" for k, i in items)
                f.flush()
                os.fsync(f.fileno())
            return True
        except OSError as exc:
            log.error("cannot write the spool file %s: %s", self._spool, exc)
            return False

    def _unspool(self) -> bool:
        """Move spooled items back into memory (as many as fit).  True when some were loaded."""
        loading = self._spool.with_name(self._spool.name + ".loading")
        try:
            if self._spool.exists() and not loading.exists():
                os.replace(self._spool, loading)
            if not loading.exists():
                return False
            lines = loading.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            log.error("cannot read the spool file %s: %s", self._spool, exc)
            return False
        with self._lock:
            room = self._capacity - sum(len(q) for q in self._queues.values())
            records = [json.loads(line) for line in lines if line.strip()]
            for record in records[:room]:
                self._queues[record["kind"]].append(record["item"])
            rest = records[room:]
            self._counts["unspooled"] += min(room, len(records))
        if rest:
            self._append_spool([(r["kind"], r["item"]) for r in rest])
        loading.unlink(missing_ok=True)
        return bool(records[:room])

    # -- visibility -----------------------------------------------------------------------------
    def count_invalid(self) -> None:
        with self._lock:
            self._counts["invalid"] += 1

    def pending(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self._counts, "buffered": sum(len(q) for q in self._queues.values()), "last_error": self.last_error}
