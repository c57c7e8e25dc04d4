"""Alembic environment.  Invoked through ``frugal db upgrade`` (service/migrate.py), which passes
the database URL or an open connection; on Postgres an advisory lock serialises concurrent runs."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from service.store.database import normalize_url
from service.store.tables import Base

config = context.config
target_metadata = Base.metadata
MIGRATION_LOCK = 74_201_126  # arbitrary, fixed: pg_advisory_lock key shared by every migrator


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs batch ALTERs
        compare_type=True,
    )
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(normalize_url(config.get_main_option("sqlalchemy.url")), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
