"""SQL for rendered weekly reports (one per experiment and ISO week; the portfolio has no experiment)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import Analysis, Experiment, ExperimentEvent, Report


@dataclass(frozen=True)
class ReportRecord:
    id: int
    experiment_id: int | None
    experiment_name: str | None
    week: str
    title: str
    pdf_path: str | None
    created_at: datetime


def _record(row: Report, name: str | None) -> ReportRecord:
    return ReportRecord(row.id, row.experiment_id, name, row.week, row.title, row.pdf_path, row.created_at)


def _select():
    return sa.select(Report, Experiment.name).outerjoin(Experiment, Experiment.id == Report.experiment_id)


def upsert(session: Session, *, experiment_id: int | None, week: str, title: str, html: str, pdf_path: str | None,
           now: datetime) -> ReportRecord:
    """Insert or replace the report of (experiment, week).  The portfolio's experiment_id is NULL, which a
    unique constraint does not compare, so the row is found (and locked) first rather than ON CONFLICT."""
    who = Report.experiment_id.is_(None) if experiment_id is None else Report.experiment_id == experiment_id
    row = session.scalar(sa.select(Report).where(who, Report.week == week).with_for_update())
    if row is None:
        row = Report(experiment_id=experiment_id, week=week)
        session.add(row)
    row.title, row.html, row.pdf_path, row.created_at = title, html, pdf_path, now
    session.flush()
    name = session.scalar(sa.select(Experiment.name).where(Experiment.id == experiment_id)) if experiment_id else None
    return _record(row, name)


def get(session: Session, report_id: int) -> ReportRecord | None:
    found = session.execute(_select().where(Report.id == report_id)).first()
    return _record(*found) if found else None


def html(session: Session, report_id: int) -> str | None:
    return session.scalar(sa.select(Report.html).where(Report.id == report_id))


def set_pdf_path(session: Session, report_id: int, pdf_path: str) -> None:
    session.execute(sa.update(Report).where(Report.id == report_id).values(pdf_path=pdf_path))


def page(session: Session, *, limit: int, offset: int, experiment_id: int | None = None,
         week: str | None = None) -> tuple[list[ReportRecord], int]:
    query = _select()
    if experiment_id is not None:
        query = query.where(Report.experiment_id == experiment_id)
    if week is not None:
        query = query.where(Report.week == week)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(Report.week.desc(), Report.experiment_id.is_(None).desc(), Experiment.name)
                           .limit(limit).offset(offset))
    return [_record(r, n) for r, n in rows], total


def experiments_active_between(session: Session, start: datetime, end: datetime) -> list[int]:
    """Experiments that ran during [start, end): analysed or acted on then, or running/paused and created before
    the end (a quiet week of a running experiment still gets its report)."""
    analysed = sa.select(Analysis.experiment_id).where(Analysis.created_at >= start, Analysis.created_at < end)
    acted = sa.select(ExperimentEvent.experiment_id).where(ExperimentEvent.at >= start, ExperimentEvent.at < end,
                                                          ExperimentEvent.kind != "created")
    running = sa.select(Experiment.id).where(Experiment.state.in_(("running", "paused")), Experiment.created_at < end)
    ids = set(session.scalars(analysed)) | set(session.scalars(acted)) | set(session.scalars(running))
    return sorted(ids)

