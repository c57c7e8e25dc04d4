"""The event log loses nothing: a database outage, and SIGTERM under load."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
import sqlalchemy as sa

from tests.harness.processes import WebServer, frugal_env
from tests.routing.conftest import seed

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _count(url: str, sql: str) -> int:
    from service.store.database import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar())
    finally:
        engine.dispose()


def test_a_database_outage_loses_no_prediction_and_no_outcome(throwaway_pg, demo_models, tmp_path):
    url = throwaway_pg.url
    data_dir = tmp_path / "data"
    s = seed(url, data_dir, demo_models)
    web = WebServer(frugal_env(data_dir, url, FRUGAL_AUTH_CACHE_TTL_S="0.5", FRUGAL_RULESET_TTL_S="0.5"), tmp_path / "web.log", workers=2)
    n, statuses = 600, []
    try:
        with httpx.Client(base_url=web.url, timeout=30) as client:
            def send(i: int) -> None:
                rid = f"dur-{i}"
                r = client.post("/v1/predict", headers=s.sdk, json={"experiment": s.experiment, "unit_id": f"u{i}",
                                                                    "features": s.features, "request_id": rid})
                statuses.append(r.status_code)
                o = client.post("/v1/outcomes", headers=s.sdk, json=[{"request_id": rid, "value": i % 2}])
                statuses.append(o.status_code)

            for i in range(100):  # warm every gunicorn worker's key and experiment caches
                send(i)
            throwaway_pg.stop("immediate")  # abrupt: no clean shutdown, connections reset
            for i in range(100, 400):
                send(i)
            throwaway_pg.start()
            for i in range(400, n):
                send(i)
        assert all(code == 200 for code in statuses), sorted(set(statuses))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            predictions = _count(url, "SELECT count(*) FROM predictions")
            outcomes = _count(url, "SELECT count(*) FROM outcomes")
            if predictions >= n and outcomes >= n:
                break
            time.sleep(0.5)
        assert _count(url, "SELECT count(*) FROM predictions") == n
        assert _count(url, "SELECT count(DISTINCT request_id) FROM predictions") == n
        assert _count(url, "SELECT count(*) FROM outcomes") == n
    finally:
        web.stop()


@pytest.mark.parametrize("mode", ["ab", "shadow"])
def test_sigterm_under_load_loses_nothing(pg_admin_url, demo_models, tmp_path, mode):
    """In shadow mode the web workers' scorer processes also finish what they were sent: every
    answered request has its challenger row too."""
    from tests.harness import servers

    url = servers.create_database(pg_admin_url)
    data_dir = tmp_path / "data"
    s = seed(url, data_dir, demo_models, mode=mode, shadow_sample=1.0)
    # a queue that cannot fill in 3 s: every shadow sample is accepted, so every one must be stored
    web = WebServer(frugal_env(data_dir, url, FRUGAL_SHADOW_QUEUE_SIZE="100000"), tmp_path / "web.log", workers=2)
    sent: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=web.url, timeout=10) as client:
            i = 0
            while not stop.is_set():
                rid = f"term-{worker}-{i}"
                try:
                    r = client.post("/v1/predict", headers=s.sdk, json={"experiment": s.experiment, "unit_id": rid,
                                                                        "features": s.features, "request_id": rid})
                except httpx.HTTPError:
                    break  # the server is going away
                if r.status_code == 200:
                    sent.append(rid)
                i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(3)
        web.signal(signal.SIGTERM)
        t0 = time.monotonic()
        web.proc.wait(60)
        stopped_in = round(time.monotonic() - t0, 1)
        stop.set()
        for t in threads:
            t.join(30)
        assert len(sent) > 100
        stored = _count(url, "SELECT count(*) FROM predictions WHERE served")
        assert stored == len(sent), (stored, len(sent))
        shadow = _count(url, "SELECT count(*) FROM predictions WHERE NOT served")
        spooled = sorted(str(p.relative_to(data_dir)) for p in (data_dir / "spool").rglob("*") if p.is_file())
        assert shadow == (len(sent) if mode == "shadow" else 0), (shadow, len(sent), f"stopped in {stopped_in} s", spooled, web.log())
    finally:
        stop.set()
        web.stop()
        servers.drop_database(pg_admin_url, url)
