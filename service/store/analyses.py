"""SQL for stored analyses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import Analysis


@dataclass(frozen=True)
class AnalysisRecord:
    id: int
    experiment_id: int
    phase: int
    slot: str
    inputs_digest: str
    method: str
    parameters: dict[str, Any]
    inputs: dict[str, Any]
    results: dict[str, Any]
    decision: str
    explanation: str
    created_at: datetime


def _record(r: Analysis) -> AnalysisRecord:
    return AnalysisRecord(r.id, r.experiment_id, r.phase, r.slot, r.inputs_digest, r.method, r.parameters, r.inputs,
                          r.results, r.decision, r.explanation, r.created_at)


def by_slot(session: Session, experiment_id: int, slot: str) -> AnalysisRecord | None:
    row = session.scalar(sa.select(Analysis).where(Analysis.experiment_id == experiment_id, Analysis.slot == slot))
    return _record(row) if row else None


def insert(session: Session, **values: Any) -> AnalysisRecord:
    row = Analysis(**values)
    session.add(row)
    session.flush()
    return _record(row)


def latest(session: Session, experiment_id: int) -> AnalysisRecord | None:
    row = session.scalar(sa.select(Analysis).where(Analysis.experiment_id == experiment_id)
                         .order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(1))
    return _record(row) if row else None


def get(session: Session, analysis_id: int) -> AnalysisRecord | None:
    row = session.get(Analysis, analysis_id)
    return _record(row) if row else None


def page(session: Session, experiment_id: int, *, limit: int, offset: int) -> tuple[list[AnalysisRecord], int]:
    query = sa.select(Analysis).where(Analysis.experiment_id == experiment_id)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(limit).offset(offset))
    return [_record(r) for r in rows], total


def history(session: Session, experiment_id: int, phase: int, *, since: datetime | None = None,
            until: datetime | None = None) -> list[AnalysisRecord]:
    query = sa.select(Analysis).where(Analysis.experiment_id == experiment_id, Analysis.phase == phase)
    if since is not None:
        query = query.where(Analysis.created_at >= since)
    if until is not None:
        query = query.where(Analysis.created_at < until)
    return [_record(r) for r in session.scalars(query.order_by(Analysis.created_at, Analysis.id))]


def before(session: Session, experiment_id: int, until: datetime) -> list[AnalysisRecord]:
    """Every analysis of the experiment stored before ``until``, oldest first (a report's history)."""
    query = sa.select(Analysis).where(Analysis.experiment_id == experiment_id, Analysis.created_at < until)
    return [_record(r) for r in session.scalars(query.order_by(Analysis.created_at, Analysis.id))]
