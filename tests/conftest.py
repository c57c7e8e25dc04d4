"""Shared fixtures: settings, real Postgres (migrated once per session, each test rolled back),
SQLite, Redis, and apps on either backend.  See tests/harness/servers.py for how servers are found."""

from __future__ import annotations

import os
import sys

import pytest
import sqlalchemy as sa

from tests.harness import servers

_SKIP_NOTES: set[str] = set()


def _unavailable(what: str, why: str):
    message = f"{what} unavailable ({why})"
    if servers.IN_CI:
        pytest.fail(f"{message}: CI=true requires it", pytrace=False)
    if message not in _SKIP_NOTES:
        _SKIP_NOTES.add(message)
        print(f"\n!!! [frugal tests] SKIPPING tests that need {message} - they run in CI !!!", file=sys.stderr)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_admin_url():
    try:
        url, handle = servers.postgres_server()
    except Exception as exc:
        _unavailable("PostgreSQL", str(exc))
    yield url
    if handle is not None:
        handle.destroy()


@pytest.fixture(scope="session")
def pg_url(pg_admin_url):
    """A fresh database for this test session, migrated to head through Alembic."""
    from service.migrate import upgrade
    from service.store.database import make_engine

    url = servers.create_database(pg_admin_url)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    servers.drop_database(pg_admin_url, url)


@pytest.fixture
def fresh_pg(pg_admin_url):
    """A migrated Postgres database used by this test only (for state that is global to a database:
    roll-up watermarks, processes of their own)."""
    from service.migrate import upgrade
    from service.store.database import make_engine

    url = servers.create_database(pg_admin_url)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    servers.drop_database(pg_admin_url, url)


@pytest.fixture
def fresh_pg_empty(pg_admin_url):
    """An empty Postgres database (no schema) used by this test only: what an operator starts with."""
    url = servers.create_database(pg_admin_url)
    yield url
    servers.drop_database(pg_admin_url, url)


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory):
    """The demo ONNX models (scikit-learn's bundled breast-cancer data), built once per session."""
    from service.demo.models import build_demo_models

    return build_demo_models(tmp_path_factory.mktemp("demo-models"))


@pytest.fixture(scope="session")
def redis_url():
    try:
        url, handle = servers.redis_server()
    except Exception as exc:
        _unavailable("Redis", str(exc))
    yield url
    if handle is not None:
        handle.destroy()


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path


def make_settings(data_dir, **overrides):
    from service.settings import load_settings

    from tests.harness.processes import TEST_QUEUE

    env = {"FRUGAL_DATA_DIR": str(data_dir), "FRUGAL_LOG_LEVEL": "WARNING", "FRUGAL_AUTH_CACHE_TTL_S": "0",
           "FRUGAL_TASK_QUEUE": TEST_QUEUE}
    env.update({f"FRUGAL_{k.upper()}": str(v) for k, v in overrides.items()})
    return load_settings(env)


@pytest.fixture
def sqlite_url(data_dir):
    """A migrated SQLite database (the embedded default)."""
    from service.migrate import upgrade
    from service.store.database import make_engine

    url = f"sqlite:///{data_dir / 'frugal.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["postgres", "sqlite"])
def backend_url(request):
    """Run a test on both backends: Postgres (production, CI) and SQLite (the embedded default)."""
    return request.getfixturevalue("pg_url" if request.param == "postgres" else "sqlite_url")


@pytest.fixture
def app_factory(data_dir):
    """Build apps on a given database URL; on Postgres each test runs in a rolled-back transaction."""
    from service.app import create_app

    created = []

    def build(database_url: str, *, isolate: bool = True, **overrides):
        settings = make_settings(data_dir, database_url=database_url, **overrides)
        app = create_app(settings)
        rt = app.extensions["frugal"]
        if isolate and database_url.startswith("postgresql"):
            conn = rt.db.engine.connect()
            trans = conn.begin()
            rt.db.bind_to(conn)
            created.append((rt, conn, trans))
        else:
            created.append((rt, None, None))
        return app

    yield build
    for rt, conn, trans in created:
        rt.close()  # first: background writers may still be using the connection
        if conn is not None:
            trans.rollback()
            conn.close()


@pytest.fixture
def app(app_factory, backend_url):
    return app_factory(backend_url)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_key(app):
    """Create an API key of a scope and return its Authorization header."""
    from service.auth import create_key

    def make(scope: str = "admin", name: str = "test") -> dict[str, str]:
        new = create_key(app.extensions["frugal"].db, name=name, scope=scope)
        return {"Authorization": f"Bearer {new.secret}"}

    return make


@pytest.fixture
def admin(make_key):
    return make_key("admin")


# -- what the run exercised: printed at the end of every run, so CI's log shows the real parts ------

_REAL_PARTS = {
    "postgres": {"pg_admin_url", "pg_url", "fresh_pg", "fresh_pg_empty", "throwaway_pg"},
    "redis": {"redis_url"},
}
_PASSED: dict[str, int] = {"postgres": 0, "redis": 0, "worker": 0}


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        for marker, fixtures in _REAL_PARTS.items():
            if names & fixtures or params.get("backend_url") == marker or params.get("own_db") == marker:
                item.add_marker(marker)


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        for marker in _PASSED:
            if marker in report.keywords:
                _PASSED[marker] += 1


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(
        f"real parts: {_PASSED['postgres']} passed tests used PostgreSQL, {_PASSED['redis']} used Redis, "
        f"{_PASSED['worker']} ran a live Celery worker process")
