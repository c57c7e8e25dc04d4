"""The roll-up: new predictions and outcomes into per (experiment, phase, arm, hour) statistics,
computed by the database in set-based SQL (service/store/rollups.py); Python merges buckets, never rows.

Exactly-once by construction: within an experiment, a (prediction, outcome) pair is counted in the
transaction where the later of the two first falls at or below the experiment's watermarks, so a
late outcome still counts, once, in its prediction's bucket.  Each transaction covers at most
``batch_rows`` prediction ids (and as many outcome ids), locks only its experiment's watermark rows and
advances them with the buckets and the phase totals it changed.  Workers take different experiments
(``SKIP LOCKED``); nothing here takes a lock an event writer waits on.

A row whose numbers cannot be summed (NaN, an infinity, a magnitude above ``MAX_ABS``) is skipped and
counted in its bucket's ``skipped``; it never stops a roll-up.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from analysis.sketch import DEFAULT_RELATIVE_ACCURACY, MIN_VALUE, LatencySketch
from service.store import rollups as store
from service.store.database import Database
from service.store.rollups import Marks, Window

log = logging.getLogger("frugal.rollup")

MOMENTS = ("latency", "inference", "cost", "quality", "paired", "reference_cost")  # reference: see analysis/cost.py
COUNTS = ("predictions", "served", "fallbacks", "cache_hits", "outcomes", "latency_slow", "skipped")
EXPOSURE_KEYS = ("exposures", "units_in_both_arms")  # phase totals only: distinct units of the arm, units in both arms
BATCH_ROWS = 1_000_000  # prediction ids per transaction: bounds each transaction's time and its lock on one experiment
STATEMENT_TIMEOUT_S = 300.0  # a transaction's statements on a loaded host: far above the seconds a batch takes
LOCK_TIMEOUT_S = 5.0  # the roll-up's own locks (watermark rows when waiting for another worker's batch, buckets)
WAIT_TIMEOUT_S = 120.0  # how long a roll-up that must catch an experiment up waits for another worker's batch


def empty_stats() -> dict[str, Any]:
    stats: dict[str, Any] = {name: 0 for name in COUNTS}
    stats.update({name: {"n": 0, "sum": 0.0, "sum_sq": 0.0} for name in MOMENTS})
    stats["latency_sketch"] = None
    return stats


def merge_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = empty_stats()
    for name in COUNTS:
        out[name] = a.get(name, 0) + b.get(name, 0)
    for name in MOMENTS:
        x, y = a.get(name) or {}, b.get(name) or {}
        out[name] = {k: x.get(k, 0) + y.get(k, 0) for k in ("n", "sum", "sum_sq")}
    sketches = [LatencySketch.from_dict(s) for s in (a.get("latency_sketch"), b.get("latency_sketch")) if s]
    out["latency_sketch"] = (sketches[0] + sketches[1]).to_dict() if len(sketches) == 2 else (sketches[0].to_dict() if sketches else None)
    return out


def quality_value(kind: str, prediction: float | None, label: str | None, outcome: float) -> float | None:
    """The per-request quality value the experiment's metric defines (in SQL: store.quality_sql)."""
    if kind == "outcome":
        return float(outcome)
    if prediction is None:
        if kind == "accuracy" and label is not None:
            return 1.0 if label == _label(outcome) else 0.0
        return None
    if kind == "accuracy":
        return 1.0 if float(prediction) == float(outcome) else 0.0
    diff = float(prediction) - float(outcome)
    return abs(diff) if kind == "absolute_error" else diff * diff


def _label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class RollupResult:
    """What one run did: rows read, buckets touched, transactions, and what it skipped."""

    predictions: int  # prediction rows read (skipped ones included)
    late_outcomes: int  # outcome pairs whose prediction was counted in an earlier transaction
    paired: int  # shadow pairs counted
    buckets: int  # (bucket, transaction) merges
    skipped: int  # rows and pairs left out: a value out of range (see store.MAX_ABS)
    transactions: int
    experiments: int  # experiments this run advanced
    busy: int  # experiments left to another worker that was rolling them up
    upto: tuple[int, int]  # the prediction and outcome ids this run read up to

    def to_dict(self) -> dict[str, Any]:
        return {"predictions": self.predictions, "late_outcomes": self.late_outcomes, "paired": self.paired,
                "buckets": self.buckets, "skipped": self.skipped, "transactions": self.transactions,
                "experiments": self.experiments, "busy": self.busy, "upto": list(self.upto)}


@dataclass
class _Tally:
    predictions: int = 0
    late: int = 0
    paired: int = 0
    buckets: int = 0
    skipped: int = 0
    transactions: int = 0


@dataclass(frozen=True)
class _Experiment:
    id: int
    mode: str
    quality: str
    slo_ms: float | None


def run_rollup(db: Database, *, experiment_ids: list[int] | None = None, wait: bool = False,
               batch_rows: int = BATCH_ROWS, max_seconds: float | None = None) -> RollupResult:
    """Roll every experiment (or ``experiment_ids``) up to what is committed now.

    ``wait``: wait for another worker's batch on the same experiment instead of skipping it (an
    on-demand analysis wants its experiment caught up).  ``max_seconds``: stop starting batches after
    this long (the rest is left for the next run; nothing is half done).
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    started = time.monotonic()
    upto = store.committed_max_ids(db.engine)
    with db.unit_of_work() as session:
        found = [_Experiment(i, mode, definition["metric"]["quality"],
                             ((definition.get("guardrails") or {}).get("latency") or {}).get("threshold_ms"))
                 for i, mode, definition in store.experiments(session)
                 if experiment_ids is None or i in experiment_ids]
    with db.unit_of_work() as session:
        store.ensure_marks(session, [e.id for e in found], datetime.now(timezone.utc))
    random.shuffle(found)  # workers starting together spread over the experiments instead of queueing on one
    tally, advanced, busy = _Tally(), 0, 0
    for experiment in found:
        outcome = _catch_up(db, experiment, upto, tally, wait=wait, batch_rows=batch_rows,
                            deadline=None if max_seconds is None else started + max_seconds)
        advanced += outcome == "advanced"
        busy += outcome == "busy"
    if tally.skipped:
        log.warning("roll-up skipped %d rows with values out of range (counted in each bucket's 'skipped')", tally.skipped)
    return RollupResult(tally.predictions, tally.late, tally.paired, tally.buckets, tally.skipped, tally.transactions,
                        advanced, busy, upto)


def _catch_up(db: Database, experiment: _Experiment, upto: tuple[int, int], tally: _Tally, *, wait: bool,
              batch_rows: int, deadline: float | None) -> str:
    """Batches of one experiment until it reaches ``upto``: "advanced", "current", or "busy"."""
    result = "current"
    while deadline is None or time.monotonic() < deadline:
        now = datetime.now(timezone.utc)
        with db.unit_of_work() as session:
            store.limit_time(session, STATEMENT_TIMEOUT_S, WAIT_TIMEOUT_S if wait else LOCK_TIMEOUT_S)
            old = store.claim(session, experiment.id, now, wait=wait)
            if old is None:
                return "busy"
            if not store.pending(session, experiment.id, old, upto):
                return result
            store.limit_time(session, STATEMENT_TIMEOUT_S, LOCK_TIMEOUT_S)
            store.tune_for_aggregates(session)
            p_new = store.batch_end(session, experiment.id, old.predictions, upto[0], batch_rows) \
                if old.predictions < upto[0] else old.predictions
            o_new = upto[1] if old.predictions == 0 else min(upto[1], old.outcomes + batch_rows)
            window = Window(experiment.id, old, Marks(max(p_new, old.predictions), max(o_new, old.outcomes)))
            _fold(session, experiment, window, tally, now)
            store.set_marks(session, experiment.id, window.new, now)
            tally.transactions += 1
        result = "advanced"
    return result


def _fold(session, experiment: _Experiment, w: Window, tally: _Tally, now: datetime) -> None:
    """Aggregate the window in SQL, then merge the deltas into the buckets and the phase totals."""
    deltas: dict[store.BucketKey, dict[str, Any]] = defaultdict(empty_stats)
    if w.new.predictions > w.old.predictions:
        aggregates, bins = store.new_predictions(session, w, experiment.quality, experiment.slo_ms, _LOG_GAMMA, MIN_VALUE)
        for a in aggregates:
            d = deltas[(a.phase, a.arm, a.hour)]
            d.update(predictions=a.predictions, served=a.served, fallbacks=a.fallbacks, cache_hits=a.cache_hits,
                     latency_slow=a.latency_slow, outcomes=a.outcomes, skipped=a.skipped)
            d["latency"] = {"n": a.predictions, "sum": a.latency_sum, "sum_sq": a.latency_sum_sq}
            d["inference"] = {"n": a.predictions, "sum": a.inference_sum, "sum_sq": a.inference_sum_sq}
            d["cost"] = {"n": a.predictions, "sum": a.cost_sum, "sum_sq": a.cost_sum_sq}
            d["quality"] = {"n": a.outcomes, "sum": a.quality_sum, "sum_sq": a.quality_sum_sq}
            d["reference_cost"] = {"n": a.reference_n, "sum": a.reference_sum, "sum_sq": a.reference_sum_sq}
            tally.predictions += a.rows
            tally.skipped += a.skipped
        sketches: dict[store.BucketKey, LatencySketch] = defaultdict(LatencySketch)
        for b in bins:
            sketch = sketches[(b.phase, b.arm, b.hour)]
            if b.index is None:
                sketch.zero += b.count
            else:
                sketch.bins[b.index] = sketch.bins.get(b.index, 0) + b.count
        for key, sketch in sketches.items():
            deltas[key]["latency_sketch"] = sketch.to_dict()
        exposures = store.add_exposures(session, experiment.id, w.old.predictions, w.new.predictions, now)
    else:
        exposures = store.NewExposures({}, {})
    for a in store.late_outcomes(session, w, experiment.quality):
        d = deltas[(a.phase, a.arm, a.hour)]
        d["outcomes"] += a.n
        d["quality"] = _add(d["quality"], a)
        d["skipped"] += a.skipped
        tally.late += a.rows
        tally.skipped += a.skipped
    if experiment.mode == "shadow":
        for a in store.paired_differences(session, w, experiment.quality):
            d = deltas[(a.phase, a.arm, a.hour)]
            d["paired"] = _add(d["paired"], a)
            tally.paired += a.n
    if not deltas:
        return
    existing = store.load_buckets(session, experiment.id, deltas)
    store.upsert_buckets(session, experiment.id, {k: merge_stats(existing[k], d) if k in existing else merge_stats(empty_stats(), d)
                                                  for k, d in deltas.items()}, now)
    by_phase: dict[tuple[int, str], dict[str, Any]] = {}
    for (phase, arm, _), d in deltas.items():
        by_phase[(phase, arm)] = merge_stats(by_phase.get((phase, arm), empty_stats()), d)
    totals = store.load_totals(session, experiment.id)
    for phase, n in exposures.both_arms.items():  # both arms' totals keep the phase's units in both arms
        for key in ((phase, "champion"), (phase, "challenger")):
            if n and key in totals and key not in by_phase:
                by_phase[key] = empty_stats()
    merged = {}
    for key, d in by_phase.items():
        old = totals.get(key, empty_stats())
        merged[key] = merge_stats(old, d) | _exposures(session, experiment.id, key, old, exposures)
    store.upsert_totals(session, experiment.id, merged, now)
    tally.buckets += len(deltas)


def _exposures(session, experiment_id: int, key: tuple[int, str], old: dict[str, Any],
               new: store.NewExposures) -> dict[str, int]:
    """A phase total's distinct units (its arm) and units seen in both arms (its phase): what it had
    plus what this window recorded, or counted from ``exposures`` when the total has none yet."""
    phase, arm = key
    if all(k in old for k in EXPOSURE_KEYS):
        return {"exposures": old["exposures"] + new.units.get(key, 0),
                "units_in_both_arms": old["units_in_both_arms"] + new.both_arms.get(phase, 0)}
    units, both = store.exposure_totals(session, experiment_id, phase)
    return {"exposures": units.get(arm, 0), "units_in_both_arms": both}


_LOG_GAMMA = math.log((1 + DEFAULT_RELATIVE_ACCURACY) / (1 - DEFAULT_RELATIVE_ACCURACY))  # as LatencySketch._index


def _add(m: dict[str, float], a: store.QualityAggregate) -> dict[str, float]:
    return {"n": m["n"] + a.n, "sum": m["sum"] + a.total, "sum_sq": m["sum_sq"] + a.total_sq}
