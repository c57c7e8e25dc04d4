"""Shadow scorers: score the challenger on what the champion answered, off the web tier.

A sampled shadow request leaves a ``shadow_jobs`` row, written by the web worker's event log in the
same transaction as the served prediction row.  A scorer (``frugal scorer``; on the embedded
default ``frugal worker`` starts one) repeats, in one transaction:

1. delete the jobs older than ``FRUGAL_SHADOW_MAX_AGE_S`` and count them per experiment and phase
   in ``shadow_drops`` (reason ``expired``): the backlog is bounded by age, never silently;
2. claim up to ``FRUGAL_SHADOW_BATCH_SIZE`` jobs, oldest first: ``DELETE ... WHERE id IN (SELECT
   ... FOR UPDATE SKIP LOCKED) RETURNING`` on Postgres, so scorers on any number of hosts never
   claim the same job (on SQLite the delete takes the database's write lock: one scorer at a time);
3. score each request's jobs as that request would have been served: one run of its rows, through
   ``run_policy`` and ``prediction_event``, the code that builds served rows, so the challenger's
   inference time (``session.run`` CPU time by ``inference_clock``, the champion's clock) and cost
   (``service.registry.prediction_cost``) are measured the same way; on a share
   (``FRUGAL_SHADOW_REFERENCE_SHARE``) of requests the champion is run and timed on the same rows,
   just before or just after (a coin decides, so neither gains from warm caches), and its cost goes on
   the challenger's rows as ``reference_cost``: a request-path run and a scorer run of one model differ
   by as much as two models do (docs/models.md#cost), so the savings share compares these two;
4. insert the challenger's prediction rows (idempotent on (request_id, model_id)) and commit.

A scorer that dies anywhere before the commit leaves its jobs in the table (the transaction rolls
back) for the next claim; one that commits has written every row.  SIGTERM stops it after the
batch in hand, which takes milliseconds: there is nothing to drain.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

from service.errors import ServiceUnavailable
from service.eventlog import PredictionEvent
from service.routing.policy import RunModel, prediction_event, run_policy
from service.runtime import Runtime
from service.store.events import insert_predictions
from service.store.shadow import DropReason, claim_jobs, count_drops
from service.store.tables import ShadowJob

log = logging.getLogger("frugal.scorer")

EXPIRE_AT_ONCE = 10_000   # expired jobs deleted per transaction
RETRY_AFTER_S = 1.0       # wait after a database outage or an unexpected error


@dataclass(frozen=True)
class BatchResult:
    claimed: int
    scored: int
    failed: int
    expired: int


@dataclass(frozen=True)
class ScorerStats:
    batches: int = 0
    scored: int = 0
    failed: int = 0
    expired: int = 0


class Scorer:
    """One scorer loop, with its own onnxruntime sessions (one per process: see ``scorer()``)."""

    def __init__(self, rt: Runtime, run_model: RunModel | None = None) -> None:
        from service.routing.runtime import catalog, model_runner

        self._rt = rt
        self._settings = rt.settings
        self._catalog = catalog(rt)
        self._run_model = run_model or model_runner(rt)   # the web workers' runner: same sessions, clock, cache
        self._stats = ScorerStats()
        self._lock = threading.Lock()
        self._coin = random.Random()

    @property
    def stats(self) -> ScorerStats:
        with self._lock:
            return self._stats

    def score_batch(self) -> BatchResult:
        """One transaction: expire, claim, score, write, delete."""
        with self._rt.db.unit_of_work() as session:
            expired = claim_jobs(session, ShadowJob.created_at < datetime.now(timezone.utc) - timedelta(
                seconds=self._settings.shadow_max_age_s), EXPIRE_AT_ONCE, (ShadowJob.experiment_id, ShadowJob.phase))
            jobs = claim_jobs(session, sa.true(), self._settings.shadow_batch_size, tuple(ShadowJob.__table__.c))
            events, failed = [], Counter()
            for request in _by_request(jobs):
                scored = self._score(request)
                if scored is None and len(request) > 1:   # one bad row fails only itself
                    scored = [event for job in request for event in (self._score([job]) or [None])]
                for job, event in zip(request, scored or [None] * len(request)):
                    if event is None:
                        failed[(job.experiment_id, job.phase)] += 1
                    else:
                        events.append(event)
            failed.update(self._insert(session, events))
            count_drops(session, Counter((e, p) for e, p in expired), DropReason.EXPIRED)
            count_drops(session, failed, DropReason.FAILED)
        result = BatchResult(len(jobs), len(jobs) - sum(failed.values()), sum(failed.values()), len(expired))
        with self._lock:
            s = self._stats
            self._stats = replace(s, batches=s.batches + 1, scored=s.scored + result.scored,
                                  failed=s.failed + result.failed, expired=s.expired + result.expired)
        return result

    @staticmethod
    def _insert(session, events: list[PredictionEvent]) -> Counter:
        """Insert the challenger rows; a row the database refuses (not an outage) is counted as failed
        instead of sending its whole batch back to the queue forever.  Returns the failures."""
        refused: Counter = Counter()
        try:
            with session.begin_nested():
                insert_predictions(session, events)
            return refused
        except DBAPIError as exc:
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise
            if len(events) == 1:
                refused[(events[0].experiment_id, events[0].phase)] += 1
                log.warning("the database refuses the shadow row of request %s: %s", events[0].request_id, exc.orig)
                return refused
        for event in events:   # find the rows it refuses, one savepoint each
            try:
                with session.begin_nested():
                    insert_predictions(session, [event])
            except DBAPIError as exc:
                if isinstance(exc, OperationalError) or exc.connection_invalidated:
                    raise
                refused[(event.experiment_id, event.phase)] += 1
                log.warning("the database refuses the shadow row of request %s: %s", event.request_id, exc.orig)
        return refused

    def run(self, stop: threading.Event) -> None:
        """Score until ``stop`` is set; an idle scorer looks again every FRUGAL_SCORER_POLL_S."""
        while not stop.is_set():
            try:
                result = self.score_batch()
            except ServiceUnavailable as exc:
                log.warning("shadow scorer: %s", exc)
                stop.wait(RETRY_AFTER_S)
                continue
            except Exception:  # a scorer outlives any one bad batch; its jobs stay queued
                log.exception("shadow scorer batch failed; its jobs stay queued")
                stop.wait(RETRY_AFTER_S)
                continue
            if result.claimed < self._settings.shadow_batch_size:
                stop.wait(self._settings.scorer_poll_s)

    def _score(self, request: list[sa.Row]) -> list[PredictionEvent] | None:
        """The challenger's rows for one request's jobs, as serving that request would have produced
        them (one run of all its sampled rows, so a row is charged its share of the run, as the
        champion's rows are); None if the run fails."""
        first = request[0]
        config = self._catalog.by_id(first.experiment_id)
        if config is None:  # created after this scorer's catalog was loaded
            self._catalog.invalidate()
            config = self._catalog.by_id(first.experiment_id)
        features = [job.features for job in request]
        reference = config is not None and self._coin.random() < self._settings.shadow_reference_share
        champion_first = reference and self._coin.random() < 0.5
        champion = self._reference(config, features) if champion_first else None
        try:
            if config is None:
                raise LookupError(f"no experiment {first.experiment_id}")
            scored = run_policy(self._run_model, self._settings, config.challenger, features, config.cache_challenger)
        except Exception as exc:  # counted per experiment in shadow_drops; never retried forever
            log.warning("shadow challenger of experiment %s failed on request %s: %s: %s", first.experiment_id,
                        first.request_id, type(exc).__name__, exc)
            return None
        if reference and not champion_first:
            champion = self._reference(config, features)
        return [replace(PredictionEvent(**prediction_event(
            experiment_id=job.experiment_id, phase=job.phase, request_id=job.request_id, unit_id=job.unit_id,
            arm="challenger", in_experiment=True, served=False, policy=config.challenger, scored=row,
            latency_ms=job.overhead_ms + row.inference_ms, reason=None, now=job.created_at)),
            reference_cost=champion[i].cost if champion else None)
            for i, (job, row) in enumerate(zip(request, scored))]

    def _reference(self, config, features: list) -> list | None:
        """The champion run on a request's rows in this scorer, for its cost only (its answers were
        served already); None if it fails, which costs the challenger's rows only their reference."""
        try:
            return run_policy(self._run_model, self._settings, config.champion, features, config.cache_champion)
        except Exception as exc:
            log.warning("shadow scorer: timing the champion of experiment %s failed: %s: %s", config.id,
                        type(exc).__name__, exc)
            return None


def _by_request(jobs: list[sa.Row]) -> list[list[sa.Row]]:
    """Claimed jobs grouped by the request that wrote them: the router stamps every row of a request
    with one time, and writes its jobs together."""
    groups: dict[tuple, list[sa.Row]] = {}
    for job in jobs:
        groups.setdefault((job.experiment_id, job.phase, job.created_at), []).append(job)
    return list(groups.values())


def scorer(rt: Runtime) -> Scorer:
    """This process's scorer (its metrics are published with the process's other counters)."""
    from service.metrics import publisher

    publisher(rt)
    return rt.lazy("scorer", lambda: Scorer(rt))
