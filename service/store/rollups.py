"""SQL for roll-ups: reading new events past the watermarks, and merging bucket statistics.

Ids are the watermark: each roll-up reads predictions and outcomes with ids above the last ones it
folded in.  On Postgres, ids can become visible out of order (a transaction that took id 100 may
commit after one that took 101), so writers hold a shared advisory lock while they insert and the
roll-up takes it exclusively for an instant before reading ``max(id)``: every id at or below the
maximum it reads is committed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import Experiment, Exposure, Outcome, Prediction, Rollup, Watermark

INGEST_LOCK = 74_201_127  # pg advisory lock key shared by event writers (shared) and the roll-up (exclusive)


def hold_ingest_lock_shared(session_or_conn) -> None:
    """Writers call this inside their insert transaction (a no-op on SQLite, which has one writer)."""
    if _dialect(session_or_conn) == "postgresql":
        session_or_conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": INGEST_LOCK})


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
              Prediction.fallback_reason, Prediction.prediction, Prediction.label, Prediction.created_at)


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


def add_exposures(session: Session, after: int, upto: int, now: datetime) -> None:
    """Record each distinct (experiment, phase, unit, arm) served in (after, upto]: one INSERT ... SELECT
    in the database (a million exposures never travel to Python and back)."""
    if _dialect(session) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    served = (sa.select(Prediction.experiment_id, Prediction.phase, Prediction.unit_id, Prediction.arm,
                        sa.literal(now, Exposure.first_seen_at.type))
              .where(Prediction.id > after, Prediction.id <= upto, Prediction.in_experiment.is_(True),
                     Prediction.served.is_(True))
              .distinct())
    session.execute(insert(Exposure).from_select(
        ["experiment_id", "phase", "unit_id", "arm", "first_seen_at"], served).on_conflict_do_nothing())


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


def buckets_for(session: Session, experiment_id: int, phase: int | None = None) -> list[Rollup]:
    query = sa.select(Rollup).where(Rollup.experiment_id == experiment_id)
    if phase is not None:
        query = query.where(Rollup.phase == phase)
    return list(session.scalars(query.order_by(Rollup.bucket_start, Rollup.arm)))


def exposure_counts(session: Session, experiment_id: int, phase: int) -> dict[str, int]:
    rows = session.execute(sa.select(Exposure.arm, sa.func.count()).where(
        Exposure.experiment_id == experiment_id, Exposure.phase == phase).group_by(Exposure.arm))
    return {arm: int(n) for arm, n in rows}


def crossover_units(session: Session, experiment_id: int, phase: int) -> int:
    sub = (sa.select(Exposure.unit_id).where(Exposure.experiment_id == experiment_id, Exposure.phase == phase)
           .group_by(Exposure.unit_id).having(sa.func.count() > 1).subquery())
    return int(session.scalar(sa.select(sa.func.count()).select_from(sub)) or 0)
