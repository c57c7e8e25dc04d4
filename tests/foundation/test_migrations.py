"""Alembic is the only way the schema is made: one head, and head == the models."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from service.migrate import alembic_config, head_revision, schema_is_current, upgrade
from service.store.database import make_engine
from service.store.tables import Base
from tests.harness import servers


def _diff(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_migrations_have_a_single_head():
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert heads == [head_revision()]


def test_empty_postgres_upgrades_to_head_and_matches_the_models(pg_admin_url):
    url = servers.create_database(pg_admin_url)
    try:
        engine = make_engine(url)
        assert schema_is_current(engine)[0] is False
        upgrade(engine)
        assert schema_is_current(engine)[0] is True
        assert _diff(engine) == []
        engine.dispose()
    finally:
        servers.drop_database(pg_admin_url, url)


def test_empty_sqlite_upgrades_to_head_and_matches_the_models(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    upgrade(engine)
    assert schema_is_current(engine)[0] is True
    assert _diff(engine) == []


def test_constraints_are_enforced_by_the_database(pg_url):
    engine = make_engine(pg_url)
    with engine.connect() as conn, conn.begin() as trans:
        try:
            conn.execute(sa.text("INSERT INTO api_keys (name, prefix, key_hash, scope, created_at) VALUES ('x','p','h','root', now())"))
        except sa.exc.IntegrityError as exc:
            assert "ck_api_keys_scope" in str(exc)
        else:
            raise AssertionError("a scope outside admin/sdk/read was accepted")
        trans.rollback()
    engine.dispose()
