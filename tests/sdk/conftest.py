"""A real Frugal service (gunicorn on loopback, Postgres) for the SDK to talk to."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.harness.processes import WebServer, frugal_env

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LiveService:
    url: str
    port: int
    database_url: str
    sdk_key: str
    admin_key: str
    experiment: str
    champion: str
    challenger: str
    features: list
    env: dict
    log_dir: Path
    server: WebServer

    def restart(self, *, port: int | None = None) -> None:
        self.server.stop()  # closes the log of a killed server
        self.server = WebServer(self.env, self.log_dir / "gunicorn-restart.log", workers=1, port=port or self.port)

    def wait_rows(self, sql: str, n: int, timeout: float = 20.0, **params) -> list:
        """Rows of ``sql`` once there are at least ``n`` (the event log writes in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows(sql, **params)
            if len(rows) >= n or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)

    def rows(self, sql: str, **params) -> list:
        from service.store.database import make_engine

        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(sql), params).all()
        finally:
            engine.dispose()


@pytest.fixture
def live(fresh_pg, data_dir, demo_models, tmp_path):
    from tests.routing.conftest import seed

    seeded = seed(fresh_pg, data_dir, demo_models, mode="ab", name="ranker")
    env = frugal_env(data_dir, fresh_pg, FRUGAL_RULESET_TTL_S="0")
    server = WebServer(env, tmp_path / "gunicorn.log", workers=1)
    service = LiveService(server.url, server.port, fresh_pg, seeded.sdk["Authorization"].split(" ", 1)[1],
                          seeded.admin["Authorization"].split(" ", 1)[1],
                          seeded.experiment, seeded.champion, seeded.challenger, seeded.features, env, tmp_path, server)
    yield service
    service.server.stop()


@pytest.fixture(scope="session")
def assignment_vectors() -> dict:
    return json.loads((ROOT / "tests" / "vectors" / "assignment.json").read_text())
