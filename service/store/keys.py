"""SQL for API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.store.tables import ApiKey


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _record(row: ApiKey) -> KeyRecord:
    return KeyRecord(row.id, row.name, row.prefix, row.scope, row.created_at, row.revoked_at)


def insert(session: Session, *, name: str, prefix: str, key_hash: str, scope: str, now: datetime) -> KeyRecord:
    row = ApiKey(name=name, prefix=prefix, key_hash=key_hash, scope=scope, created_at=now)
    session.add(row)
    session.flush()
    return _record(row)


def by_hash(session: Session, key_hash: str) -> KeyRecord | None:
    row = session.scalar(sa.select(ApiKey).where(ApiKey.key_hash == key_hash))
    return _record(row) if row else None


def list_all(session: Session) -> list[KeyRecord]:
    return [_record(r) for r in session.scalars(sa.select(ApiKey).order_by(ApiKey.id))]


def revoke(session: Session, *, key_id: int | None = None, prefix: str | None = None, now: datetime) -> KeyRecord | None:
    query = sa.select(ApiKey).where(ApiKey.id == key_id) if key_id is not None else sa.select(ApiKey).where(ApiKey.prefix == prefix)
    row = session.scalar(query)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = now
    return _record(row)


def by_id(session: Session, key_id: int) -> KeyRecord | None:
    row = session.get(ApiKey, key_id)
    return _record(row) if row else None
