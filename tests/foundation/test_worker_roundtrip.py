"""A task round trip through a real Celery worker process on Redis, with Postgres as its database."""

import pytest

from service.app import create_app
from service.worker.celery_app import make_celery
from tests.conftest import make_settings
from tests.harness.processes import Worker, frugal_env


@pytest.mark.worker
def test_a_task_round_trips_through_a_live_worker_process(pg_url, redis_url, data_dir, tmp_path):
    worker = Worker(frugal_env(data_dir, pg_url, redis_url), tmp_path / "worker.log")
    try:
        celery = make_celery(create_app(make_settings(data_dir, database_url=pg_url, broker_url=redis_url)))
        result = celery.send_task("frugal.ping", args=["hello"]).get(timeout=60)
        assert result["echo"] == "hello"
        assert result["database"] == "postgresql"
        assert result["pid"] != __import__("os").getpid()
        print(f"\n[frugal tests] ping round trip via Redis worker pid {result['pid']} on Postgres")
    finally:
        worker.stop()
