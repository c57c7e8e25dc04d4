"""SQL for the retention job: batched deletes of old, already rolled-up event rows."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import Outcome, Prediction, Watermark


def watermark(session: Session, name: str) -> int:
    """How far the roll-up has read ``name`` (0 before the first roll-up)."""
    return session.scalar(sa.select(Watermark.last_id).where(Watermark.name == name)) or 0


def delete_predictions(session: Session, *, before: datetime, upto_id: int, limit: int) -> int:
    """Delete up to ``limit`` predictions created before ``before`` with ids the roll-up has read."""
    ids = (sa.select(Prediction.id).where(Prediction.created_at < before, Prediction.id <= upto_id)
           .order_by(Prediction.id).limit(limit).scalar_subquery())
    return session.execute(sa.delete(Prediction).where(Prediction.id.in_(ids))).rowcount or 0


def delete_outcomes(session: Session, *, before: datetime, upto_id: int, limit: int) -> int:
    """Delete up to ``limit`` outcomes received before ``before`` with ids the roll-up has read."""
    ids = (sa.select(Outcome.id).where(Outcome.received_at < before, Outcome.id <= upto_id)
           .order_by(Outcome.id).limit(limit).scalar_subquery())
    return session.execute(sa.delete(Outcome).where(Outcome.id.in_(ids))).rowcount or 0
