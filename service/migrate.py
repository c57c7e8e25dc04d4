"""Schema migrations: ``frugal db upgrade`` and the readiness check that the schema is at head."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

def migrations_dir() -> Path:
    """The Alembic scripts: the package ``service.migrations`` in an installed wheel (setup.py ships
    the top-level ``migrations/`` folder under that name), else ``migrations/`` of this checkout (an
    editable install, whose import finder does not see the renamed folder)."""
    try:
        found = importlib.resources.files("service.migrations")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "migrations"
    return Path(str(found))


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the migrations shipped with this package."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s")
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` on ``engine``'s database."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations must have a single head, found {heads}")
    return heads[0]


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def schema_is_current(engine: sa.Engine) -> tuple[bool, str | None, str]:
    """(at head?, current revision, head revision)."""
    with engine.connect() as connection:
        current = current_revision(connection)
    head = head_revision()
    return current == head, current, head
