"""SQL for the model registry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import Experiment, ExperimentModel, Model, Prediction


@dataclass(frozen=True)
class ModelRecord:
    id: int
    name: str
    version: str
    task: str
    digest: str
    file_size: int
    signature: dict[str, Any]
    declared_cost_per_1k: float | None
    profile: dict[str, Any] | None
    derived_from_id: int | None
    transform: str | None
    description: str
    created_at: datetime
    lineage: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


def _record(row: Model) -> ModelRecord:
    return ModelRecord(row.id, row.name, row.version, row.task, row.digest, row.file_size, row.signature,
                       row.declared_cost_per_1k, row.profile, row.derived_from_id, row.transform, row.description,
                       row.created_at, row.lineage)


def insert(session: Session, **values: Any) -> ModelRecord:
    row = Model(**values)
    session.add(row)
    session.flush()
    return _record(row)


def get(session: Session, model_id: int) -> ModelRecord | None:
    row = session.get(Model, model_id)
    return _record(row) if row else None


def by_ref(session: Session, name: str, version: str) -> ModelRecord | None:
    row = session.scalar(sa.select(Model).where(Model.name == name, Model.version == version))
    return _record(row) if row else None


def latest_by_name(session: Session, name: str) -> ModelRecord | None:
    row = session.scalar(sa.select(Model).where(Model.name == name).order_by(Model.id.desc()).limit(1))
    return _record(row) if row else None


def by_ids(session: Session, ids: list[int]) -> dict[int, ModelRecord]:
    return {row.id: _record(row) for row in session.scalars(sa.select(Model).where(Model.id.in_(ids)))}


def page(session: Session, *, limit: int, offset: int, name: str | None = None) -> tuple[list[ModelRecord], int]:
    query = sa.select(Model)
    if name:
        query = query.where(Model.name == name)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Model.id).limit(limit).offset(offset))
    return [_record(r) for r in rows], total


def set_profile(session: Session, model_id: int, profile: dict[str, Any]) -> None:
    session.execute(sa.update(Model).where(Model.id == model_id).values(profile=profile))


def users(session: Session, model_id: int) -> list[tuple[str, str]]:
    """(experiment name, state) of every experiment whose policies use this model."""
    rows = session.execute(
        sa.select(Experiment.name, Experiment.state)
        .join(ExperimentModel, ExperimentModel.experiment_id == Experiment.id)
        .where(ExperimentModel.model_id == model_id)
    )
    return [(name, state) for name, state in rows]


def has_predictions(session: Session, model_id: int) -> bool:
    return session.scalar(sa.select(sa.literal(True)).where(sa.exists().where(Prediction.model_id == model_id))) or False


def delete(session: Session, model_id: int) -> None:
    session.execute(sa.delete(Model).where(Model.id == model_id))


def set_lineage(session: Session, model_id: int, lineage: dict[str, Any]) -> None:
    session.execute(sa.update(Model).where(Model.id == model_id).values(lineage=lineage))
