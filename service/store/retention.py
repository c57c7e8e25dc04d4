"""SQL for the retention job: batched deletes of old, already rolled-up event rows."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import Outcome, Prediction, Watermark

_PREFIX = "predictions:"   # service/store/rollups.py names each experiment's watermark rows this way


def prediction_watermarks(session: Session) -> dict[int, int]:
    """experiment id -> the last prediction id its roll-up has read (experiments never rolled up: absent)."""
    prefix = _PREFIX
    rows = session.execute(sa.select(Watermark.name, Watermark.last_id).where(Watermark.name.like(f"{prefix}%")))
    return {int(name[len(prefix):]): last_id for name, last_id in rows if name[len(prefix):].isdigit()}


def delete_predictions(session: Session, *, experiment_id: int, before: datetime, upto_id: int, limit: int) -> int:
    """Delete up to ``limit`` of an experiment's predictions created before ``before`` whose ids its
    roll-up has read."""
    ids = (sa.select(Prediction.id).where(Prediction.experiment_id == experiment_id, Prediction.created_at < before,
                                          Prediction.id <= upto_id)
           .order_by(Prediction.id).limit(limit).scalar_subquery())
    return session.execute(sa.delete(Prediction).where(Prediction.id.in_(ids))).rowcount or 0


def delete_orphan_outcomes(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` outcomes received before ``before`` whose prediction is gone: nothing can
    join them any more (an outcome whose prediction is still stored is kept with it)."""
    ids = (sa.select(Outcome.id).where(Outcome.received_at < before,
                                       ~sa.exists().where(Prediction.request_id == Outcome.request_id))
           .order_by(Outcome.id).limit(limit).scalar_subquery())
    return session.execute(sa.delete(Outcome).where(Outcome.id.in_(ids))).rowcount or 0
