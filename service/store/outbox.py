"""SQL for the webhook outbox (rows written with their analysis, delivered by a task)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import WebhookOutbox


@dataclass(frozen=True)
class OutboxRecord:
    id: int
    analysis_id: int
    experiment_id: int
    url: str
    message: dict[str, Any]
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def _record(r: WebhookOutbox) -> OutboxRecord:
    return OutboxRecord(r.id, r.analysis_id, r.experiment_id, r.url, r.message, r.attempts, r.last_error,
                        r.created_at, r.delivered_at)


def add(session: Session, *, analysis_id: int, experiment_id: int, url: str, message: dict[str, Any],
        now: datetime) -> OutboxRecord:
    row = WebhookOutbox(analysis_id=analysis_id, experiment_id=experiment_id, url=url, message=message, attempts=0,
                        created_at=now)
    session.add(row)
    session.flush()
    return _record(row)


def for_analysis(session: Session, analysis_id: int, *, for_update: bool = False) -> OutboxRecord | None:
    query = sa.select(WebhookOutbox).where(WebhookOutbox.analysis_id == analysis_id)
    row = session.scalar(query.with_for_update() if for_update else query)
    return _record(row) if row else None


def pending(session: Session, *, limit: int = 100) -> list[OutboxRecord]:
    rows = session.scalars(sa.select(WebhookOutbox).where(WebhookOutbox.delivered_at.is_(None))
                           .order_by(WebhookOutbox.id).limit(limit))
    return [_record(r) for r in rows]


def attempted(session: Session, outbox_id: int, *, error: str | None, now: datetime) -> None:
    values: dict[str, Any] = {"attempts": WebhookOutbox.attempts + 1, "last_error": error}
    if error is None:
        values["delivered_at"] = now
    session.execute(sa.update(WebhookOutbox).where(WebhookOutbox.id == outbox_id).values(**values))
