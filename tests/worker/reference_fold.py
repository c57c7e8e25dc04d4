"""The roll-up as it was before issue 18: every row folded in a Python loop.

Kept only as the reference the set-based SQL roll-up is checked against (tests/worker/test_rollup_reference.py):
the same events, rolled up in the same rounds by this fold and by ``service.analytics.rollup``, must give
the same buckets.  It uses its own global watermark rows ("predictions", "outcomes") and the ingest
lock barrier of the time, copied here unchanged (exposures are left to the real roll-up).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from analysis.sketch import LatencySketch
from service.store.database import Database
from service.store.tables import Experiment, Outcome, Prediction, Rollup, Watermark

INGEST_LOCK = 74_201_127


def _dialect(obj) -> str:
    return obj.dialect.name if hasattr(obj, "dialect") else obj.get_bind().dialect.name


def lock_watermarks(session: Session, now: datetime) -> dict[str, int]:
    """Lock (creating if needed) the watermark rows; a second roll-up waits here."""
    for name in ("predictions", "outcomes"):
        if session.get(Watermark, name) is None:
            session.execute(_insert_ignore(session, Watermark, {"name": name, "last_id": 0, "updated_at": now}, ["name"]))
    rows = session.execute(sa.select(Watermark.name, Watermark.last_id).with_for_update()).all()
    return {name: last_id for name, last_id in rows}


def _insert_ignore(session: Session, table, values: dict[str, Any], keys: list[str]):
    if _dialect(session) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).values(values).on_conflict_do_nothing(index_elements=keys)


def committed_max_ids(session: Session) -> tuple[int, int]:
    if _dialect(session) == "postgresql":
        # Wait for in-flight writer transactions; ids at or below the max we read are then committed.
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
    p = session.scalar(sa.select(sa.func.coalesce(sa.func.max(Prediction.id), 0)))
    o = session.scalar(sa.select(sa.func.coalesce(sa.func.max(Outcome.id), 0)))
    return int(p), int(o)


def set_watermarks(session: Session, predictions: int, outcomes: int, now: datetime) -> None:
    session.execute(sa.update(Watermark).where(Watermark.name == "predictions").values(last_id=predictions, updated_at=now))
    session.execute(sa.update(Watermark).where(Watermark.name == "outcomes").values(last_id=outcomes, updated_at=now))


_P_COLUMNS = (Prediction.id, Prediction.request_id, Prediction.unit_id, Prediction.experiment_id, Prediction.phase, Prediction.arm,
              Prediction.served, Prediction.latency_ms, Prediction.inference_ms, Prediction.cost, Prediction.cache_hit,
              Prediction.fallback_reason, Prediction.prediction, Prediction.label, Prediction.created_at,
              Prediction.reference_cost)


def new_predictions(session: Session, after: int, upto: int, outcomes_upto: int) -> list[sa.Row]:
    """In-experiment predictions with ids in (after, upto], each with its outcome (id <= outcomes_upto) if any."""
    query = (
        sa.select(*_P_COLUMNS, Outcome.value.label("outcome"), Outcome.id.label("outcome_id"))
        .outerjoin(Outcome, sa.and_(Outcome.request_id == Prediction.request_id, Outcome.id <= outcomes_upto))
        .where(Prediction.id > after, Prediction.id <= upto, Prediction.in_experiment.is_(True))
        .order_by(Prediction.id)
    )
    return list(session.execute(query))


def late_outcome_pairs(session: Session, outcomes_after: int, outcomes_upto: int, predictions_upto: int) -> list[sa.Row]:
    """Outcomes with ids in (after, upto] whose predictions were already rolled up (id <= predictions_upto)."""
    query = (
        sa.select(*_P_COLUMNS, Outcome.value.label("outcome"), Outcome.id.label("outcome_id"))
        .join(Outcome, Outcome.request_id == Prediction.request_id)
        .where(Outcome.id > outcomes_after, Outcome.id <= outcomes_upto, Prediction.id <= predictions_upto,
               Prediction.in_experiment.is_(True))
    )
    return list(session.execute(query))


def shadow_partners(session: Session, request_ids: list[str], upto: int) -> list[sa.Row]:
    """Both rows of shadow requests (ids <= upto), with outcomes: for paired statistics."""
    if not request_ids:
        return []
    rows: list[sa.Row] = []
    for start in range(0, len(request_ids), 5000):
        chunk = request_ids[start:start + 5000]
        rows.extend(session.execute(
            sa.select(*_P_COLUMNS).where(Prediction.request_id.in_(chunk), Prediction.id <= upto, Prediction.in_experiment.is_(True))))
    return rows


def experiment_settings(session: Session, ids: set[int]) -> dict[int, dict[str, Any]]:
    rows = session.execute(sa.select(Experiment.id, Experiment.mode, Experiment.definition).where(Experiment.id.in_(ids)))
    return {i: {"mode": mode, "definition": definition} for i, mode, definition in rows}


def load_buckets(session: Session, keys: set[tuple[int, int, str, datetime]]) -> dict[tuple, Rollup]:
    if not keys:
        return {}
    wanted = {(k[0], k[1], k[2], _naive(k[3])) for k in keys}
    starts = {k[3] for k in keys}
    rows = session.scalars(sa.select(Rollup).where(
        Rollup.experiment_id.in_({k[0] for k in keys}), Rollup.bucket_start.in_(starts)).with_for_update())
    found = {(r.experiment_id, r.phase, r.arm, _naive(r.bucket_start)): r for r in rows}
    return {key: row for key, row in found.items() if key in wanted}


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None) if value.tzinfo else value


def save_bucket(session: Session, existing: Rollup | None, key: tuple, stats: dict[str, Any], now: datetime) -> None:
    if existing is None:
        session.add(Rollup(experiment_id=key[0], phase=key[1], arm=key[2], bucket_start=key[3], stats=stats, updated_at=now))
    else:
        existing.stats = stats
        existing.updated_at = now



MOMENTS = ("latency", "inference", "cost", "quality", "paired", "reference_cost")  # reference_cost: revision 0008
COUNTS = ("predictions", "served", "fallbacks", "cache_hits", "outcomes", "latency_slow")


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
    """The per-request quality value the experiment's metric defines."""
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


_HOURS: dict[tuple, datetime] = {}


def _hour(ts: datetime) -> datetime:
    """The UTC hour bucket of ``ts`` (naive), memoised: a roll-up asks for the same few hours millions of times."""
    key = (ts.year, ts.month, ts.day, ts.hour, ts.utcoffset())
    hour = _HOURS.get(key)
    if hour is None:
        naive = ts.astimezone(timezone.utc).replace(tzinfo=None) if ts.tzinfo is not None else ts
        hour = naive.replace(minute=0, second=0, microsecond=0)
        if len(_HOURS) > 100_000:
            _HOURS.clear()
        _HOURS[key] = hour
    return hour


def _add(m: dict[str, float], x: float) -> None:
    m["n"] += 1
    m["sum"] += x
    m["sum_sq"] += x * x


@dataclass(frozen=True)
class RollupResult:
    predictions: int
    late_outcomes: int
    paired: int
    buckets: int
    watermarks: tuple[int, int]


def run_reference_rollup(db: Database) -> RollupResult:
    now = datetime.now(timezone.utc)
    with db.unit_of_work() as session:
        marks = lock_watermarks(session, now)
        wp_old, wo_old = marks["predictions"], marks["outcomes"]
        wp_new, wo_new = committed_max_ids(session)
        if wp_new <= wp_old and wo_new <= wo_old:
            return RollupResult(0, 0, 0, 0, (wp_old, wo_old))
        fresh = new_predictions(session, wp_old, wp_new, wo_new) if wp_new > wp_old else []
        late = late_outcome_pairs(session, wo_old, wo_new, wp_old) if wo_new > wo_old else []
        experiments = experiment_settings(session, {r.experiment_id for r in fresh} | {r.experiment_id for r in late})

        deltas: dict[tuple, dict[str, Any]] = defaultdict(empty_stats)
        latencies: dict[tuple, list[float]] = defaultdict(list)

        def definition(exp_id: int) -> dict[str, Any]:
            return experiments[exp_id]["definition"]

        slos = {e: ((s["definition"].get("guardrails") or {}).get("latency") or {}).get("threshold_ms")
                for e, s in experiments.items()}
        for r in fresh:
            key = (r.experiment_id, r.phase, r.arm, _hour(r.created_at))
            d = deltas[key]
            d["predictions"] += 1
            d["served"] += int(r.served)
            d["fallbacks"] += int(r.fallback_reason is not None)
            d["cache_hits"] += int(r.cache_hit)
            _add(d["latency"], r.latency_ms)
            _add(d["inference"], r.inference_ms)
            _add(d["cost"], r.cost)
            if r.reference_cost is not None:
                _add(d["reference_cost"], r.reference_cost)
            latencies[key].append(r.latency_ms)
            slo = slos[r.experiment_id]
            if slo is not None and r.latency_ms > slo:
                d["latency_slow"] += 1
        for r in list(fresh) + list(late):
            if r.outcome is None:
                continue
            metric = definition(r.experiment_id)["metric"]
            value = quality_value(metric["quality"], r.prediction, r.label, r.outcome)
            if value is None:
                continue
            key = (r.experiment_id, r.phase, r.arm, _hour(r.created_at))
            deltas[key]["outcomes"] += 1
            _add(deltas[key]["quality"], value)

        paired = _paired(session, experiments, fresh, late, wp_old, wo_old, wp_new, deltas)

        for key, values in latencies.items():
            sketch = LatencySketch()
            sketch.add_many(values)
            deltas[key]["latency_sketch"] = sketch.to_dict()

        existing = load_buckets(session, set(deltas))
        for key, delta in deltas.items():
            row = existing.get((key[0], key[1], key[2], key[3]))
            save_bucket(session, row, key, merge_stats(row.stats, delta) if row else merge_stats(empty_stats(), delta), now)
        if wp_new > wp_old:
            pass  # exposures: not part of the comparison
        set_watermarks(session, max(wp_new, wp_old), max(wo_new, wo_old), now)
        return RollupResult(len(fresh), len(late), paired, len(deltas), (wp_new, wo_new))


def _paired(session, experiments, fresh, late, wp_old, wo_old, wp_new, deltas) -> int:
    """Shadow experiments: challenger-minus-champion quality per request, counted once when the
    request's last piece (either prediction row or the outcome) has been rolled up."""
    shadow = {e for e, s in experiments.items() if s["mode"] == "shadow"}
    request_ids = sorted({r.request_id for r in list(fresh) + list(late) if r.experiment_id in shadow})
    if not request_ids:
        return 0
    rows = shadow_partners(session, request_ids, wp_new)
    outcomes = {r.request_id: (r.outcome, r.outcome_id) for r in list(fresh) + list(late) if r.outcome is not None}
    by_request: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in rows:
        if r.experiment_id in shadow:
            by_request[r.request_id][r.arm] = r
    count = 0
    for request_id, arms in by_request.items():
        if "champion" not in arms or "challenger" not in arms or request_id not in outcomes:
            continue
        outcome, outcome_id = outcomes[request_id]
        max_pid = max(arms["champion"].id, arms["challenger"].id)
        if max_pid <= wp_old and outcome_id <= wo_old:
            continue  # counted in an earlier run
        chall, champ = arms["challenger"], arms["champion"]
        metric = experiments[chall.experiment_id]["definition"]["metric"]
        a = quality_value(metric["quality"], chall.prediction, chall.label, outcome)
        b = quality_value(metric["quality"], champ.prediction, champ.label, outcome)
        if a is None or b is None:
            continue
        key = (chall.experiment_id, chall.phase, "challenger", _hour(chall.created_at))
        _add(deltas[key]["paired"], a - b)
        count += 1
    return count
