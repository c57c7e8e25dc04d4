"""SQL for model files kept in the database (``model_artifacts``)."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import Model, ModelArtifact


def has(session: Session, digest: str) -> bool:
    return session.scalar(sa.select(sa.literal(True)).where(ModelArtifact.digest == digest)) or False


def put(session: Session, digest: str, data: bytes) -> None:
    """Store ``data`` under ``digest`` unless it is there already (content-addressed: same bytes)."""
    if not has(session, digest):
        session.add(ModelArtifact(digest=digest, size=len(data), data=data, created_at=datetime.now(timezone.utc)))
        session.flush()


def get(session: Session, digest: str) -> bytes | None:
    return session.scalar(sa.select(ModelArtifact.data).where(ModelArtifact.digest == digest))


def delete_unreferenced(session: Session, digest: str) -> None:
    """Drop the file once no model version uses it (two versions may share one file)."""
    if not session.scalar(sa.select(sa.literal(True)).where(sa.exists().where(Model.digest == digest))):
        session.execute(sa.delete(ModelArtifact).where(ModelArtifact.digest == digest))


def digests_without_artifact(session: Session) -> list[str]:
    """Digests of registered models whose file is not in the database (registered before revision 0006)."""
    rows = session.scalars(sa.select(Model.digest).distinct().where(
        ~sa.exists().where(ModelArtifact.digest == Model.digest)).order_by(Model.digest))
    return list(rows)
