"""The per-request router: pick the arm, run its policy, never fail because of the experiment.

- A/B: the unit's arm answers.  A challenger that errors or overruns its deadline is answered by
  the champion, and the event records why (``fallback_reason``).
- Shadow: the champion answers; a sampled row also adds a shadow job to the event log, written
  with the served row, and scorer workers score the challenger from the database
  (service/scorer.py).  Nothing else happens on the web host.
- Cascade: the cheap model answers unless its confidence is below the threshold; the event records
  which model answered (``answered_by``).
- Not running (draft, paused, stopped, promoted, rolled back): the served arm answers, no exposure.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable

from service.errors import NotFound
from service.eventlog import PredictionEvent, ShadowJobEvent
from service.inference.features import matrix
from service.registry import prediction_cost
from service.routing.assignment import assign
from service.routing.catalog import Catalog, CompiledExperiment, PolicySpec
from service.routing.policy import RunModel, Scored, prediction_event, run_policy
from service.settings import Settings

log = logging.getLogger("frugal.router")


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
    cache_hit: bool = False     # answered from the prediction cache (no model ran for it)

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id, "experiment": self.experiment, "arm": self.arm,
            "model_version": self.model_version, "served_by": self.served_by, "prediction": self.prediction,
            "confidence": self.confidence, "latency_ms": round(self.latency_ms, 3), "in_experiment": self.in_experiment,
            "fallback_reason": self.fallback_reason, "cache_hit": self.cache_hit,
        }


@dataclass
class RouterStats:
    predictions: int = 0
    fallbacks: int = 0
    shadow_sampled: int = 0       # shadow jobs handed to the event log for the scorers
    events_dropped: int = 0


TRUST_AFTER = 200   # consecutive fast isolated runs before a challenger runs inline
FAST_SHARE = 0.25   # "fast": within this share of the deadline
CHALLENGER_THREADS = 2   # threads that run isolated A/B challengers under their deadline


class Router:
    """Routes rows for one experiment.  One per process (see service.routing.runtime)."""

    def __init__(self, catalog: Catalog, settings: Settings, run_model: RunModel,
                 record: Callable[[list[PredictionEvent | ShadowJobEvent]], bool]) -> None:
        self._catalog = catalog
        self._settings = settings
        self._run_model = run_model          # (spec, rows, use_cache) -> (outputs, inference_ms total, cache_hits)
        self._record = record                # one request's events (EventLog.record_many) -> accepted?
        self._challenger_pool = ThreadPoolExecutor(max_workers=CHALLENGER_THREADS, thread_name_prefix="frugal-challenger")
        self._stats = RouterStats()
        self._stats_lock = threading.Lock()
        self._trust: dict[int, int] = {}      # challenger model id -> consecutive fast isolated runs
        self._id_pid = -1

    @property
    def stats(self) -> RouterStats:
        """A snapshot of this process's counters."""
        with self._stats_lock:
            return replace(self._stats)

    def _new_request_id(self) -> str:
        """An unguessable 32-hex id: a keyed BLAKE2b of a per-process counter under a 256-bit key drawn
        from os.urandom once per process (a fork draws a new one).  Seeing any number of ids tells
        nothing about the next one, and no two ids of a process collide (the counter never repeats);
        it costs one ~1 µs hash where os.urandom per request would cost a system call."""
        if self._id_pid != os.getpid():
            self._id_key, self._id_counter, self._id_pid = os.urandom(32), itertools.count(), os.getpid()
        return hashlib.blake2b(next(self._id_counter).to_bytes(8, "little"), key=self._id_key, digest_size=16).hexdigest()

    # -- public ---------------------------------------------------------------------------------
    def predict(self, experiment: str, items: list[tuple[str, Any, str | None]], started: float | None = None) -> list[Answer]:
        """Answer ``items`` = [(unit_id, features, request_id or None)] for one experiment."""
        started = started or time.perf_counter()
        config = self._catalog.get(experiment)
        if config is None:
            raise NotFound(f"no experiment {experiment!r}")
        rows = [features for _, features, _ in items]
        # Every row against the model that answers whatever else fails (the champion, or the promoted
        # arm), before anything runs: the caller's 422 names every bad row by its place in the request,
        # whichever arm it was assigned to.  Both arms take the same features (checked when the
        # experiment is created), so a challenger that fails on a checked row is a challenger error.
        answering = config.policy(config.served_arm).primary
        matrix(answering.signature, rows)
        request_ids = [rid or self._new_request_id() for _, _, rid in items]
        arms, in_exp = self._assign(config, items, request_ids)

        answers: list[Answer | None] = [None] * len(items)
        events: list[PredictionEvent | ShadowJobEvent] = []
        groups: dict[str, list[int]] = {}
        for i, arm in enumerate(arms):
            serving = arm if config.mode == "ab" else "champion"
            groups.setdefault(serving, []).append(i)

        results: dict[int, tuple[Scored, str | None]] = {}
        if groups.get("champion"):
            idx = groups["champion"]
            for i, scored in zip(idx, self._run_policy(config.champion, [rows[i] for i in idx], config.cache_champion)):
                results[i] = (scored, None)
        if groups.get("challenger"):
            idx = groups["challenger"]
            scored_rows, reason = self._challenger_with_deadline(config, [rows[i] for i in idx])
            for i, scored in zip(idx, scored_rows):
                results[i] = (scored, reason)

        now = datetime.now(timezone.utc)
        latency_ms = (time.perf_counter() - started) * 1000.0
        sampled = 0
        for i, (unit_id, features, _) in enumerate(items):
            scored, reason = results[i]
            arm = arms[i] if config.mode == "ab" else "champion"
            policy = config.policy(arm)
            answers[i] = Answer(request_ids[i], config.name, arm, in_exp[i], policy.primary.ref, scored.answered_by.ref,
                                scored.prediction, scored.confidence, latency_ms, reason, scored.cache_hit)
            events.append(PredictionEvent(**prediction_event(
                experiment_id=config.id, phase=config.phase, request_id=request_ids[i], unit_id=unit_id, arm=arm,
                in_experiment=in_exp[i], served=True, policy=policy, scored=scored, latency_ms=latency_ms, reason=reason, now=now)))
            if config.mode == "shadow" and in_exp[i] and config.state == "running" and random.random() < config.shadow_sample:
                # right after its served row: the event log commits the two together
                events.append(ShadowJobEvent(request_ids[i], config.id, config.phase, unit_id[:256], features,
                                             max(latency_ms - scored.inference_ms, 0.0), now))
                sampled += 1
        accepted = self._safe_record(events)
        with self._stats_lock:
            self._stats.shadow_sampled += sampled if accepted else 0
            self._stats.events_dropped += 0 if accepted else len(events)
            self._stats.predictions += len(items)
            self._stats.fallbacks += sum(1 for a in answers if a.fallback_reason)
        return answers  # type: ignore[return-value]

    def close(self) -> None:
        self._challenger_pool.shutdown(wait=False, cancel_futures=True)

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
        return run_policy(self._run_model, self._settings, policy, rows, use_cache)

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
        except Exception as exc:  # the experiment must never fail the request
            self._trust[key] = 0
            reason = "challenger_error"
            log.warning("challenger %s failed: %s: %s", config.challenger.primary.ref, type(exc).__name__, exc)
        return self._charge_failed(config, self._run_policy(config.champion, rows, config.cache_champion),
                                   (time.perf_counter() - started) * 1000.0, reason), reason

    def _charge_failed(self, config: CompiledExperiment, answered: list[Scored], failed_ms: float,
                       reason: str) -> list[Scored]:
        """The champion's answers, charged the challenger's failed run as well: its measured time
        (to the error, or to the deadline) goes through the same cost function as a served run."""
        spent_ms = failed_ms if reason == "challenger_error" else min(failed_ms, config.deadline_ms)
        per_row_ms = spent_ms / max(len(answered), 1)
        extra = prediction_cost(config.challenger.primary.cost_per_1k, per_row_ms, self._settings)
        return [replace(s, inference_ms=s.inference_ms + per_row_ms, cost=s.cost + extra) for s in answered]

    # -- events ---------------------------------------------------------------------------------
    def _safe_record(self, events: list[PredictionEvent | ShadowJobEvent]) -> bool:
        try:
            return bool(self._record(events))
        except Exception:  # logging never fails a prediction
            log.exception("event log refused %d events", len(events))
            return False
