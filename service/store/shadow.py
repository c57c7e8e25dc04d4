"""Shadow jobs and drops (service/scorer.py): claiming jobs, counting and reading drops, the backlog."""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import ShadowDrop, ShadowJob


class DropReason(StrEnum):
    EXPIRED = "expired"   # waited longer than FRUGAL_SHADOW_MAX_AGE_S
    FAILED = "failed"     # the challenger raised on the job's features


def claim_jobs(session: Session, where, limit: int, columns: tuple) -> list[sa.Row]:
    """Delete (inside the open transaction) up to ``limit`` jobs no other scorer holds, oldest first."""
    free = (sa.select(ShadowJob.id).where(where).order_by(ShadowJob.id).limit(limit)
            .with_for_update(skip_locked=True))
    return list(session.execute(sa.delete(ShadowJob).where(ShadowJob.id.in_(free)).returning(*columns)).all())


def count_drops(session: Session, counts: Counter, reason: DropReason) -> None:
    if not counts:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(ShadowDrop).values([{"experiment_id": e, "phase": p, "reason": str(reason), "count": n}
                                           for (e, p), n in sorted(counts.items())])
    session.execute(statement.on_conflict_do_update(index_elements=["experiment_id", "phase", "reason"],
                                                    set_={"count": ShadowDrop.count + statement.excluded["count"]}))


def dropped(session: Session, experiment_id: int, phase: int | None = None) -> dict[DropReason, int]:
    """Shadow samples of an experiment (one phase, or all) that got no challenger row, by reason."""
    query = (sa.select(ShadowDrop.reason, sa.func.sum(ShadowDrop.count)).where(ShadowDrop.experiment_id == experiment_id)
             .group_by(ShadowDrop.reason))
    if phase is not None:
        query = query.where(ShadowDrop.phase == phase)
    return {DropReason(reason): int(n) for reason, n in session.execute(query).all()}


def backlog(session: Session) -> int:
    """Shadow jobs waiting for a scorer."""
    return int(session.execute(sa.select(sa.func.count()).select_from(ShadowJob)).scalar_one())
