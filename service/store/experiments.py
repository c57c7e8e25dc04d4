"""SQL for experiments, their phases and their audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import Experiment, ExperimentEvent, ExperimentModel, ExperimentPhase


@dataclass(frozen=True)
class PhaseRecord:
    number: int
    salt: str
    weights_bp: list[int]
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class ExperimentRecord:
    id: int
    name: str
    mode: str
    state: str
    definition: dict[str, Any]
    champion_model_id: int
    challenger_model_id: int
    coverage_bp: int
    ramp_step: int
    current_phase: int
    served_arm: str
    revision: int
    created_at: datetime
    updated_at: datetime
    phase: PhaseRecord


@dataclass(frozen=True)
class EventRecord:
    id: int
    at: datetime
    kind: str
    actor: str
    reason: str
    analysis_id: int | None
    data: dict[str, Any]


def _phase(row: ExperimentPhase) -> PhaseRecord:
    return PhaseRecord(row.number, row.salt, list(row.weights_bp), row.started_at, row.ended_at)


def _record(row: Experiment, phase: ExperimentPhase) -> ExperimentRecord:
    return ExperimentRecord(row.id, row.name, row.mode, row.state, row.definition, row.champion_model_id,
                            row.challenger_model_id, row.coverage_bp, row.ramp_step, row.current_phase,
                            row.served_arm, row.revision, row.created_at, row.updated_at, _phase(phase))


def _current_phase(session: Session, experiment: Experiment) -> ExperimentPhase:
    return session.scalar(sa.select(ExperimentPhase).where(
        ExperimentPhase.experiment_id == experiment.id, ExperimentPhase.number == experiment.current_phase))


def insert(session: Session, *, values: dict[str, Any], salt: str, weights_bp: list[int], model_ids: set[int],
           now: datetime) -> ExperimentRecord:
    row = Experiment(**values, ramp_step=0, current_phase=1, served_arm="champion", revision=1, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    phase = ExperimentPhase(experiment_id=row.id, number=1, salt=salt, weights_bp=weights_bp, started_at=now)
    session.add(phase)
    session.add_all(ExperimentModel(experiment_id=row.id, model_id=m) for m in model_ids)
    session.flush()
    return _record(row, phase)


def get(session: Session, *, experiment_id: int | None = None, name: str | None = None, for_update: bool = False) -> ExperimentRecord | None:
    query = sa.select(Experiment).where(Experiment.id == experiment_id if experiment_id is not None else Experiment.name == name)
    if for_update:
        query = query.with_for_update()
    row = session.scalar(query)
    return _record(row, _current_phase(session, row)) if row else None


def page(session: Session, *, limit: int, offset: int, state: str | None = None) -> tuple[list[ExperimentRecord], int]:
    query = sa.select(Experiment)
    if state:
        query = query.where(Experiment.state == state)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(query.order_by(Experiment.id).limit(limit).offset(offset)))
    return [_record(r, _current_phase(session, r)) for r in rows], total


def all_records(session: Session) -> list[ExperimentRecord]:
    rows = list(session.scalars(sa.select(Experiment).order_by(Experiment.id)))
    phases = {
        (p.experiment_id, p.number): p
        for p in session.scalars(sa.select(ExperimentPhase).join(
            Experiment, sa.and_(Experiment.id == ExperimentPhase.experiment_id, Experiment.current_phase == ExperimentPhase.number)))
    }
    return [_record(r, phases[(r.id, r.current_phase)]) for r in rows]


def update(session: Session, experiment_id: int, *, now: datetime, model_ids: set[int] | None = None, **values: Any) -> ExperimentRecord:
    row = session.get(Experiment, experiment_id)
    for key, value in values.items():
        setattr(row, key, value)
    row.revision += 1
    row.updated_at = now
    if model_ids is not None:
        session.execute(sa.delete(ExperimentModel).where(ExperimentModel.experiment_id == experiment_id))
        session.add_all(ExperimentModel(experiment_id=experiment_id, model_id=m) for m in model_ids)
    session.flush()
    return _record(row, _current_phase(session, row))


def replace_phase_weights(session: Session, experiment_id: int, weights_bp: list[int]) -> None:
    """Draft only: phase 1 has not served traffic, so its weights may still change."""
    row = session.get(Experiment, experiment_id)
    _current_phase(session, row).weights_bp = weights_bp


def new_phase(session: Session, experiment_id: int, *, salt: str, weights_bp: list[int], now: datetime) -> ExperimentRecord:
    row = session.get(Experiment, experiment_id)
    old = _current_phase(session, row)
    old.ended_at = now
    phase = ExperimentPhase(experiment_id=experiment_id, number=row.current_phase + 1, salt=salt, weights_bp=weights_bp, started_at=now)
    session.add(phase)
    row.current_phase += 1
    row.revision += 1
    row.updated_at = now
    session.flush()
    return _record(row, phase)


def add_event(session: Session, experiment_id: int, *, kind: str, actor: str, reason: str, now: datetime,
              analysis_id: int | None = None, data: dict[str, Any] | None = None) -> EventRecord:
    row = ExperimentEvent(experiment_id=experiment_id, at=now, kind=kind, actor=actor, reason=reason,
                          analysis_id=analysis_id, data=data or {})
    session.add(row)
    session.flush()
    return EventRecord(row.id, row.at, row.kind, row.actor, row.reason, row.analysis_id, row.data)


def events(session: Session, experiment_id: int, *, limit: int, offset: int, since: datetime | None = None,
           until: datetime | None = None) -> tuple[list[EventRecord], int]:
    query = sa.select(ExperimentEvent).where(ExperimentEvent.experiment_id == experiment_id)
    if since is not None:
        query = query.where(ExperimentEvent.at >= since)
    if until is not None:
        query = query.where(ExperimentEvent.at < until)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(ExperimentEvent.at, ExperimentEvent.id).limit(limit).offset(offset))
    return [EventRecord(r.id, r.at, r.kind, r.actor, r.reason, r.analysis_id, r.data) for r in rows], total


def phases(session: Session, experiment_id: int) -> list[PhaseRecord]:
    rows = session.scalars(sa.select(ExperimentPhase).where(ExperimentPhase.experiment_id == experiment_id).order_by(ExperimentPhase.number))
    return [_phase(r) for r in rows]
