"""Bulk inserts of prediction and outcome events, idempotent by their natural keys.

Predictions are unique by (request_id, model_id): a replayed spool file or an SDK retry inserts
nothing twice.  On Postgres a batch is COPYed into a per-connection staging table and moved with
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` (one round trip for the data); on SQLite it is one
``INSERT OR IGNORE`` executemany.  Writers hold the ingest lock (see store/rollups.py).
Shadow jobs are unique by request_id, the same way.
"""

from __future__ import annotations

import io
import json
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.rollups import hold_ingest_lock_shared
from service.store.tables import Outcome, Prediction, ShadowJob

PREDICTION_COLUMNS = ("request_id", "experiment_id", "phase", "arm", "unit_id", "model_id", "served", "in_experiment",
                      "answered_by_id", "latency_ms", "inference_ms", "prediction", "label", "confidence", "cost",
                      "cache_hit", "fallback_reason", "source", "created_at", "reference_cost")
_COLS = ", ".join(PREDICTION_COLUMNS)
_STAGING = "frugal_staging_predictions"


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def ingest_timeouts(session: Session, *, statement_ms: int, lock_ms: int) -> None:
    """Bound this ingest transaction (Postgres): it gives up after ``statement_ms`` on a slow database,
    and after ``lock_ms`` waiting for a lock analysis work holds, so the caller spools instead of waiting."""
    if _dialect(session) == "postgresql":
        session.execute(sa.text(f"SET LOCAL statement_timeout = {int(statement_ms)}"))
        session.execute(sa.text(f"SET LOCAL lock_timeout = {int(lock_ms)}"))


def prediction_rows(events: Sequence[Any]) -> list[dict[str, Any]]:
    return [{c: getattr(e, c) for c in PREDICTION_COLUMNS} for e in events]


def insert_predictions(session: Session, events: Sequence[Any], *, use_copy: bool = True) -> int:
    """Insert prediction events, skipping ones already stored; returns how many were new."""
    if not events:
        return 0
    hold_ingest_lock_shared(session)
    if _dialect(session) != "postgresql":
        from sqlalchemy.dialects.sqlite import insert

        result = session.connection().execute(insert(Prediction.__table__).on_conflict_do_nothing(),
                                              prediction_rows(events))
        return _rowcount(result, len(events))
    if not use_copy:
        from sqlalchemy.dialects.postgresql import insert

        result = session.connection().execute(
            insert(Prediction.__table__).on_conflict_do_nothing(index_elements=["request_id", "model_id"]),
            prediction_rows(events))
        return _rowcount(result, len(events))
    buffer = io.StringIO()
    for e in events:
        buffer.write(",".join(_csv(getattr(e, c)) for c in PREDICTION_COLUMNS))
        buffer.write("\n")
    buffer.seek(0)
    session.execute(sa.text(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} ON COMMIT DELETE ROWS AS "
                            f"SELECT {_COLS} FROM predictions WITH NO DATA"))
    raw = session.connection().connection.dbapi_connection
    with raw.cursor() as cursor:
        cursor.copy_expert(f"COPY {_STAGING} ({_COLS}) FROM STDIN WITH (FORMAT csv)", buffer)
    result = session.execute(sa.text(
        f"INSERT INTO predictions ({_COLS}) SELECT {_COLS} FROM {_STAGING} ON CONFLICT (request_id, model_id) DO NOTHING"))
    session.execute(sa.text(f"TRUNCATE {_STAGING}"))
    return _rowcount(result, len(events))


def _rowcount(result: Any, fallback: int) -> int:
    count = getattr(result, "rowcount", None)
    return fallback if count is None or count < 0 else int(count)


def _csv(value: Any) -> str:
    """One field of COPY's CSV format: None is an unquoted empty field (NULL), text is always quoted
    (so an empty string stays an empty string), numbers and booleans are bare."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return '"' + text.replace('"', '""') + '"'


SHADOW_JOB_COLUMNS = ("request_id", "experiment_id", "phase", "unit_id", "features", "overhead_ms", "created_at")
_JOB_STAGING = "frugal_staging_shadow_jobs"


def insert_shadow_jobs(session: Session, events: Sequence[Any]) -> int:
    """Queue shadow jobs for the scorers, skipping request ids already queued; returns how many were new.
    On Postgres COPYed through a staging table like predictions (the web workers' writer does this)."""
    if not events:
        return 0
    if _dialect(session) != "postgresql":
        from sqlalchemy.dialects.sqlite import insert

        result = session.connection().execute(insert(ShadowJob.__table__).on_conflict_do_nothing(index_elements=["request_id"]),
                                              [{c: getattr(e, c) for c in SHADOW_JOB_COLUMNS} for e in events])
        return _rowcount(result, len(events))
    buffer = io.StringIO()
    for e in events:
        buffer.write(",".join(_csv(json.dumps(e.features, separators=(",", ":")) if c == "features" else getattr(e, c))
                              for c in SHADOW_JOB_COLUMNS))
        buffer.write("\n")
    buffer.seek(0)
    cols = ", ".join(SHADOW_JOB_COLUMNS)
    session.execute(sa.text(f"CREATE TEMP TABLE IF NOT EXISTS {_JOB_STAGING} ON COMMIT DELETE ROWS AS "
                            f"SELECT {cols} FROM shadow_jobs WITH NO DATA"))
    raw = session.connection().connection.dbapi_connection
    with raw.cursor() as cursor:
        cursor.copy_expert(f"COPY {_JOB_STAGING} ({cols}) FROM STDIN WITH (FORMAT csv)", buffer)
    result = session.execute(sa.text(
        f"INSERT INTO shadow_jobs ({cols}) SELECT {cols} FROM {_JOB_STAGING} ON CONFLICT (request_id) DO NOTHING"))
    session.execute(sa.text(f"TRUNCATE {_JOB_STAGING}"))
    return _rowcount(result, len(events))


def insert_outcomes(session: Session, events: Sequence[Any]) -> list[str]:
    """Store outcomes; per event "accepted", "duplicate" (same value already stored) or "conflict"
    (a different value is stored for that request_id: the first one is kept)."""
    if not events:
        return []
    hold_ingest_lock_shared(session)
    ids = list({e.request_id for e in events})
    stored: dict[str, float] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start:start + 5000]
        stored.update(session.execute(sa.select(Outcome.request_id, Outcome.value).where(Outcome.request_id.in_(chunk))).all())
    statuses, fresh = [], {}
    for e in events:
        if e.request_id in stored:
            statuses.append("duplicate" if stored[e.request_id] == e.value else "conflict")
        elif e.request_id in fresh:
            statuses.append("duplicate" if fresh[e.request_id].value == e.value else "conflict")
        else:
            fresh[e.request_id] = e
            statuses.append("accepted")
    if fresh:
        rows = [{"request_id": e.request_id, "value": e.value, "at": e.at, "received_at": e.received_at} for e in fresh.values()]
        if _dialect(session) == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        session.execute(insert(Outcome).on_conflict_do_nothing(index_elements=["request_id"]), rows)
        # a concurrent writer may have stored some of these first: classify against what is stored now
        now: dict[str, float] = {}
        fresh_ids = list(fresh)
        for start in range(0, len(fresh_ids), 5000):
            now.update(session.execute(sa.select(Outcome.request_id, Outcome.value)
                                       .where(Outcome.request_id.in_(fresh_ids[start:start + 5000]))).all())
        for i, e in enumerate(events):
            if statuses[i] == "accepted" and now.get(e.request_id) != e.value:
                statuses[i] = "conflict"
    return statuses
