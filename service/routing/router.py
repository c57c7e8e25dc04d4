"""The per-request router: pick the arm, run its policy, never fail because of the experiment.

- A/B: the unit's arm answers.  A challenger that errors or overruns its deadline is answered by
  the champion, and the event records why (``fallback_reason``).
- Shadow: the champion answers; the challenger scores the same rows on a bounded background
  executor, off the request path.  A full executor drops the shadow sample and counts it.
- Cascade: the cheap model answers unless its confidence is below the threshold; the event records
  which model answered (``answered_by``).
- Not running (draft, paused, stopped, promoted, rolled back): the served arm answers, no exposure.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from service.errors import FrugalError, NotFound
from service.registry import prediction_cost
from service.routing.assignment import assign
from service.routing.catalog import Catalog, CompiledExperiment, ModelSpec, PolicySpec
from service.settings import Settings

log = logging.getLogger("frugal.router")


@dataclass(frozen=True)
class Scored:
    """One row's answer from a policy."""

    prediction: Any
    confidence: float | None
    answered_by: ModelSpec
    inference_ms: float
    cost: float
    cache_hit: bool


@dataclass(frozen=True)
class Answer:
    request_id: str
    experiment: str
    arm: str
    in_experiment: bool
    model_version: str
    served_by: str
    prediction: Any
    confidence: float | None
    latency_ms: float
    fallback_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id, "experiment": self.experiment, "arm": self.arm,
            "model_version": self.model_version, "served_by": self.served_by, "prediction": self.prediction,
            "confidence": self.confidence, "latency_ms": round(self.latency_ms, 3), "in_experiment": self.in_experiment,
            "fallback_reason": self.fallback_reason,
        }


@dataclass
class RouterStats:
    predictions: int = 0
    fallbacks: int = 0
    shadow_submitted: int = 0
    shadow_completed: int = 0
    shadow_failed: int = 0
    shadow_dropped: int = 0
    events_dropped: int = 0


TRUST_AFTER = 200   # consecutive fast isolated runs before a challenger runs inline
FAST_SHARE = 0.25   # "fast": within this share of the deadline


class Router:
    """Routes rows for one experiment.  One per process (see service.routing.runtime)."""

    def __init__(self, catalog: Catalog, settings: Settings, run_model: Callable[..., tuple[list[tuple[Any, float | None]], float, list[bool]]],
                 record: Callable[[dict[str, Any]], bool]) -> None:
        self._catalog = catalog
        self._settings = settings
        self._run_model = run_model          # (spec, rows, use_cache) -> (outputs, inference_ms total, cache_hits)
        self._record = record                # event dict -> accepted?
        self._challenger_pool = ThreadPoolExecutor(max_workers=max(2, settings.shadow_workers), thread_name_prefix="frugal-challenger")
        self._shadow_pool = ThreadPoolExecutor(max_workers=settings.shadow_workers, thread_name_prefix="frugal-shadow")
        self._shadow_slots = threading.BoundedSemaphore(settings.shadow_queue_size)
        self.stats = RouterStats()
        self._stats_lock = threading.Lock()
        self._trust: dict[int, int] = {}      # challenger model id -> consecutive fast isolated runs
        self._inflight = 0                    # requests in predict() now: shadow work waits for a gap
        self._inflight_lock = threading.Lock()
        self._shadow_defer_s = settings.shadow_defer_ms / 1000.0
        self._id_pid = -1

    def _new_request_id(self) -> str:
        """A unique 32-hex id: a random per-process prefix and a counter (os.urandom per request
        costs more than the rest of assignment)."""
        if self._id_pid != os.getpid():
            self._id_prefix, self._id_counter, self._id_pid = uuid.uuid4().hex[:20], itertools.count(), os.getpid()
        return f"{self._id_prefix}{next(self._id_counter) & 0xFFFFFFFFFFFF:012x}"

    # -- public ---------------------------------------------------------------------------------
    def predict(self, experiment: str, items: list[tuple[str, Any, str | None]], started: float | None = None) -> list[Answer]:
        """Answer ``items`` = [(unit_id, features, request_id or None)] for one experiment."""
        with self._inflight_lock:
            self._inflight += 1
        try:
            return self._predict(experiment, items, started)
        finally:
            with self._inflight_lock:
                self._inflight -= 1

    def _predict(self, experiment: str, items: list[tuple[str, Any, str | None]], started: float | None) -> list[Answer]:
        started = started or time.perf_counter()
        config = self._catalog.get(experiment)
        if config is None:
            raise NotFound(f"no experiment {experiment!r}")
        request_ids = [rid or self._new_request_id() for _, _, rid in items]
        arms, in_exp = self._assign(config, items, request_ids)

        answers: list[Answer | None] = [None] * len(items)
        pending_events: list[dict[str, Any]] = []
        groups: dict[str, list[int]] = {}
        for i, arm in enumerate(arms):
            serving = arm if config.mode == "ab" else "champion"
            groups.setdefault(serving, []).append(i)

        # Champion first: it validates the features (a bad feature is the caller's 422, never a fallback).
        results: dict[int, tuple[Scored, str | None]] = {}
        if "champion" in groups:
            idx = groups["champion"]
            for i, scored in zip(idx, self._run_policy(config.champion, [items[i][1] for i in idx], config.cache_champion)):
                results[i] = (scored, None)
        if "challenger" in groups:
            idx = groups["challenger"]
            rows = [items[i][1] for i in idx]
            scored_rows, reason = self._challenger_with_deadline(config, rows)
            for i, scored in zip(idx, scored_rows):
                results[i] = (scored, reason)

        now = datetime.now(timezone.utc)
        latency_ms = (time.perf_counter() - started) * 1000.0
        shadow_rows: list[int] = []
        for i, (unit_id, features, _) in enumerate(items):
            scored, reason = results[i]
            arm = arms[i] if config.mode == "ab" else "champion"
            policy = config.policy(arm)
            answers[i] = Answer(request_ids[i], config.name, arm, in_exp[i], policy.primary.ref, scored.answered_by.ref,
                                scored.prediction, scored.confidence, latency_ms, reason)
            pending_events.append(self._event(config, request_ids[i], unit_id, arm, in_exp[i], True, policy, scored,
                                              latency_ms, reason, now))
            if config.mode == "shadow" and in_exp[i] and config.state == "running" and random.random() < config.shadow_sample:
                shadow_rows.append(i)
        for event in pending_events:
            self._accept(event)
        if shadow_rows:
            self._submit_shadow(config, [(request_ids[i], items[i][0], items[i][1]) for i in shadow_rows])
        with self._stats_lock:
            self.stats.predictions += len(items)
            self.stats.fallbacks += sum(1 for a in answers if a.fallback_reason)
        return answers  # type: ignore[return-value]

    def close(self) -> None:
        self._challenger_pool.shutdown(wait=False, cancel_futures=True)
        self._shadow_pool.shutdown(wait=True, cancel_futures=False)

    # -- assignment -----------------------------------------------------------------------------
    def _assign(self, config: CompiledExperiment, items, request_ids) -> tuple[list[str], list[bool]]:
        arms, in_exp = [], []
        running = config.state == "running"
        for (unit_id, _, _), rid in zip(items, request_ids):
            if not running:
                arms.append(config.served_arm)
                in_exp.append(False)
                continue
            unit = rid if config.unit == "request" else unit_id
            if config.mode == "shadow":
                index = assign(config.salt, unit, (10_000, 0), config.coverage_bp)
                arms.append("champion")
                in_exp.append(index is not None)
            else:
                index = assign(config.salt, unit, config.weights_bp, config.coverage_bp)
                arms.append("champion" if index in (None, 0) else "challenger")
                in_exp.append(index is not None)
        return arms, in_exp

    # -- policies -------------------------------------------------------------------------------
    def _run_policy(self, policy: PolicySpec, rows: list[Any], use_cache: bool) -> list[Scored]:
        outputs, total_ms, hits = self._run_model(policy.primary, rows, use_cache)
        per_row_ms = total_ms / max(len(rows) - sum(hits), 1)
        scored = [
            Scored(pred, conf, policy.primary, 0.0 if hit else per_row_ms,
                   0.0 if hit else self._cost(policy.primary, per_row_ms), hit)
            for (pred, conf), hit in zip(outputs, hits)
        ]
        if policy.kind == "cascade":
            unsure = [i for i, s in enumerate(scored) if s.confidence is None or s.confidence < policy.threshold]
            if unsure:
                outputs2, total2, hits2 = self._run_model(policy.fallback, [rows[i] for i in unsure], use_cache)
                ms2 = total2 / max(len(unsure) - sum(hits2), 1)
                for i, (pred, conf), hit in zip(unsure, outputs2, hits2):
                    first = scored[i]
                    extra_ms = 0.0 if hit else ms2
                    scored[i] = Scored(pred, conf, policy.fallback, first.inference_ms + extra_ms,
                                       first.cost + (0.0 if hit else self._cost(policy.fallback, ms2)), first.cache_hit and hit)
        return scored

    def _timed_policy(self, policy: PolicySpec, rows: list[Any], use_cache: bool) -> tuple[list[Scored], float]:
        started = time.perf_counter()
        return self._run_policy(policy, rows, use_cache), time.perf_counter() - started

    def _challenger_with_deadline(self, config: CompiledExperiment, rows: list[Any]) -> tuple[list[Scored], str | None]:
        """The challenger's answer, or the champion's with the reason when it fails or overruns.

        A challenger runs isolated on the executor, where the deadline cuts the wait short, until
        it has answered ``TRUST_AFTER`` times in a row within a quarter of its deadline; then it
        runs inline on the request thread (no thread handoff).  An inline error or overrun is still
        answered by the champion, and sends the challenger back to isolation at once.
        """
        key, deadline_s = config.challenger.primary.id, config.deadline_ms / 1000.0
        inline = self._trust.get(key, 0) >= TRUST_AFTER
        started = time.perf_counter()
        try:
            if inline:
                scored, run_s = self._timed_policy(config.challenger, rows, config.cache_challenger)
            else:
                future = self._challenger_pool.submit(self._timed_policy, config.challenger, rows, config.cache_challenger)
                scored, run_s = future.result(timeout=deadline_s)
            if time.perf_counter() - started > deadline_s:  # only possible inline
                self._trust[key] = 0
                reason = "challenger_timeout"
            else:  # trust is earned by the model's own run time, not by time queued for a thread
                self._trust[key] = self._trust.get(key, 0) + 1 if run_s < deadline_s * FAST_SHARE else 0
                return scored, None
        except FutureTimeout:
            future.cancel()
            self._trust[key] = 0
            reason = "challenger_timeout"
        except FrugalError as exc:
            if exc.status == 422:
                raise  # the caller's features are wrong for every model
            self._trust[key] = 0
            reason = "challenger_error"
            log.warning("challenger %s failed: %s", config.challenger.primary.ref, exc)
        except Exception as exc:  # the experiment must never fail the request
            self._trust[key] = 0
            reason = "challenger_error"
            log.warning("challenger %s failed: %s: %s", config.challenger.primary.ref, type(exc).__name__, exc)
        return self._run_policy(config.champion, rows, config.cache_champion), reason

    # -- shadow ---------------------------------------------------------------------------------
    def _submit_shadow(self, config: CompiledExperiment, rows: list[tuple[str, str, Any]]) -> None:
        if not self._shadow_slots.acquire(blocking=False):
            with self._stats_lock:
                self.stats.shadow_dropped += len(rows)
            return
        with self._stats_lock:
            self.stats.shadow_submitted += len(rows)
        try:
            self._shadow_pool.submit(self._shadow, config, rows)
        except RuntimeError:  # pool shut down
            self._shadow_slots.release()

    def _shadow(self, config: CompiledExperiment, rows: list[tuple[str, str, Any]]) -> None:
        # Background priority: Python threads share one interpreter lock, so a shadow run while a request
        # is in flight delays that request.  Wait (up to shadow_defer_ms) for a moment with none in flight.
        give_up = time.monotonic() + self._shadow_defer_s
        while self._inflight and time.monotonic() < give_up:
            time.sleep(0.0005)
        try:
            started = time.perf_counter()
            scored = self._run_policy(config.challenger, [f for _, _, f in rows], config.cache_challenger)
            elapsed_ms = (time.perf_counter() - started) * 1000.0 / len(rows)
            now = datetime.now(timezone.utc)
            for (rid, unit_id, _), s in zip(rows, scored):
                self._accept(self._event(config, rid, unit_id, "challenger", True, False, config.challenger, s,
                                         elapsed_ms, None, now))
            with self._stats_lock:
                self.stats.shadow_completed += len(rows)
        except Exception as exc:
            with self._stats_lock:
                self.stats.shadow_failed += len(rows)
            log.warning("shadow challenger %s failed: %s: %s", config.challenger.primary.ref, type(exc).__name__, exc)
        finally:
            self._shadow_slots.release()

    # -- events ---------------------------------------------------------------------------------
    def _cost(self, spec: ModelSpec, inference_ms: float) -> float:
        return prediction_cost(spec.cost_per_1k, inference_ms, self._settings)

    @staticmethod
    def _event(config, request_id, unit_id, arm, in_experiment, served, policy, scored: Scored, latency_ms, reason, now) -> dict[str, Any]:
        prediction = scored.prediction
        numeric = isinstance(prediction, (int, float)) and not isinstance(prediction, bool)
        return {
            "request_id": request_id, "experiment_id": config.id, "phase": config.phase, "arm": arm,
            "unit_id": unit_id[:256], "model_id": policy.primary.id, "served": served, "in_experiment": in_experiment,
            "answered_by_id": scored.answered_by.id, "latency_ms": latency_ms, "inference_ms": scored.inference_ms,
            "prediction": float(prediction) if numeric else None, "label": None if numeric else str(prediction)[:200],
            "confidence": scored.confidence, "cost": scored.cost, "cache_hit": scored.cache_hit,
            "fallback_reason": reason, "source": "server", "created_at": now,
        }

    def _accept(self, event: dict[str, Any]) -> None:
        try:
            accepted = self._record(event)
        except Exception:  # logging never fails a prediction
            log.exception("event log refused an event")
            accepted = False
        if not accepted:
            with self._stats_lock:
                self.stats.events_dropped += 1
