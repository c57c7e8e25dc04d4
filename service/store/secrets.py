"""SQL for deployment-wide secrets (``instance_secrets``)."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import InstanceSecret


def get_or_create(session: Session, name: str, make: str) -> str:
    """The deployment's secret ``name``; ``make`` becomes it if none exists yet.  Two replicas starting
    at once both try to insert; the primary key keeps the first and both read it back."""
    found = session.scalar(sa.select(InstanceSecret.value).where(InstanceSecret.name == name))
    if found is not None:
        return found
    table = InstanceSecret.__table__
    values = {"name": name, "value": make, "created_at": datetime.now(timezone.utc)}
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    session.execute(insert(table).values(**values).on_conflict_do_nothing(index_elements=["name"]))
    return session.scalar(sa.select(InstanceSecret.value).where(InstanceSecret.name == name))
