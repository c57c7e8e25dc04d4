"""The API during a real database outage (a throwaway Postgres stopped with `pg_ctl stop -m immediate`):
readiness stays green and says what is degraded, an outcome answered "queued" is on disk or the answer
is 503, and a key revoked on this host stops working even though the database cannot be asked."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from service.store.database import make_engine
from tests.conftest import make_settings
from tests.routing.conftest import seed
from tests.routing.test_eventlog_faults import _unwritable

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _count(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar())
    finally:
        engine.dispose()


@pytest.fixture
def outage(throwaway_pg, demo_models, tmp_path):
    from service.app import create_app

    data_dir = tmp_path / "data"
    s = seed(throwaway_pg.url, data_dir, demo_models)
    app = create_app(make_settings(data_dir, database_url=throwaway_pg.url, auth_cache_ttl_s=0))
    yield app, s, throwaway_pg, data_dir
    app.extensions["frugal"].close()


def test_readyz_stays_green_and_degraded_while_the_database_is_down(outage):
    app, s, pg, _ = outage
    client = app.test_client()
    n = len(s.features)
    assert client.post("/v1/predict", headers=s.sdk, json={"experiment": s.experiment, "unit_id": "u", "features": [0.5] * n}).status_code == 200
    assert client.get("/readyz").json["checks"]["database"] == "ok"
    assert client.get("/v1/metrics", headers=s.admin).status_code == 200  # the admin key is verified (cached)
    pg.stop("immediate")
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json  # a load balancer keeps this replica: it still serves
    assert ready.json["status"] == "degraded" and ready.json["checks"]["database"].startswith("unreachable")
    served = client.post("/v1/predict", headers=s.sdk, json={"experiment": s.experiment, "unit_id": "u2", "features": [0.5] * n})
    assert served.status_code == 200, served.json
    metrics = client.get("/v1/metrics", headers=s.admin)
    assert metrics.status_code == 200
    assert "frugal_eventlog_database_unavailable" in metrics.get_data(as_text=True)
    pg.start()


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_a_queued_outcome_is_durable_or_the_answer_is_503(outage, how):
    app, s, pg, data_dir = outage
    client = app.test_client()
    n = len(s.features)
    rids = []
    for i in range(20):
        r = client.post("/v1/predict", headers=s.sdk, json={"experiment": s.experiment, "unit_id": f"u{i}", "features": [0.5] * n})
        rids.append(r.json["request_id"])
    assert client.get("/v1/metrics", headers=s.admin).status_code == 200  # the admin key is verified (cached)
    pg.stop("immediate")
    acknowledged = 0
    with _unwritable(data_dir / "spool", how):
        refused = client.post("/v1/outcomes", headers=s.sdk, json=[{"request_id": rid, "value": 1} for rid in rids[:10]])
        assert refused.status_code == 503, refused.json  # not "queued": nothing could keep them
        assert refused.mimetype == "application/problem+json" and refused.headers["Retry-After"]
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json["checks"]["spool"].startswith("not writable"), ready.json
        text = client.get("/v1/metrics", headers=s.admin).get_data(as_text=True)
        assert "frugal_eventlog_spool_unwritable 1" in text, text
    # the disk is back, the database is still down: "queued" is on disk before it is said
    queued = client.post("/v1/outcomes", headers=s.sdk, json=[{"request_id": rid, "value": 1} for rid in rids[10:]])
    assert queued.status_code == 200 and queued.json["queued"] == 10, queued.json
    acknowledged += queued.json["queued"]
    app.extensions["frugal"].close()  # the process goes away with the outcomes only on disk
    pg.start()
    from service.eventlog import EventLog
    from service.store.database import Database

    db = Database(pg.url)
    log = EventLog(db, make_settings(data_dir, database_url=pg.url))
    try:
        assert log.flush(60)
    finally:
        log.close()
        db.dispose()
    assert _count(pg.url, "SELECT count(*) FROM outcomes") == acknowledged == 10
    assert _count(pg.url, "SELECT count(DISTINCT request_id) FROM outcomes") == 10


def test_a_key_revoked_on_this_host_stops_working_during_an_outage(outage):
    from service.auth import revoke_key

    app, s, pg, data_dir = outage
    client = app.test_client()
    n = len(s.features)
    body = {"experiment": s.experiment, "unit_id": "u", "features": [0.5] * n}
    assert client.post("/v1/predict", headers=s.sdk, json=body).status_code == 200  # verified and cached
    assert client.post("/v1/predict", headers=s.admin, json=body).status_code == 200
    revoke_key(app.extensions["frugal"].db, s.sdk["Authorization"].split("_")[1], revoked_dir=data_dir / "revoked")
    pg.stop("immediate")
    revoked = client.post("/v1/predict", headers=s.sdk, json=body)
    assert revoked.status_code == 401 and "revoked" in revoked.json["detail"], revoked.json
    assert client.post("/v1/predict", headers=s.admin, json=body).status_code == 200, "other keys ride the outage"
    pg.start()


def test_a_key_is_not_trusted_forever_during_an_outage(throwaway_pg, demo_models, tmp_path):
    from service.app import create_app

    data_dir = tmp_path / "data"
    s = seed(throwaway_pg.url, data_dir, demo_models)
    app = create_app(make_settings(data_dir, database_url=throwaway_pg.url, auth_cache_ttl_s=0, auth_stale_max_s=0))
    try:
        client = app.test_client()
        body = {"experiment": s.experiment, "unit_id": "u", "features": s.features}
        assert client.post("/v1/predict", headers=s.sdk, json=body).status_code == 200
        throwaway_pg.stop("immediate")
        stale = client.post("/v1/predict", headers=s.sdk, json=body)
        assert stale.status_code == 503, stale.json
        throwaway_pg.start()
    finally:
        app.extensions["frugal"].close()


def test_sigterm_while_the_database_is_slow_spools_the_batch_in_flight(pg_admin_url, demo_models, tmp_path):
    """gunicorn stopped with SIGTERM while every insert waits on a lock (a slow database): each worker
    spools its in-flight batch after FRUGAL_EVENT_CLOSE_BUDGET_S and exits; once the database is fast
    again the spool is replayed: every acknowledged prediction stored once."""
    import signal
    import time

    import httpx

    from service.eventlog import EventLog
    from service.store.database import Database
    from tests.harness import servers
    from tests.harness.processes import WebServer, frugal_env

    url = servers.create_database(pg_admin_url)
    data_dir = tmp_path / "data"
    s = seed(url, data_dir, demo_models)
    web = WebServer(frugal_env(data_dir, url, FRUGAL_INGEST_LOCK_TIMEOUT_MS="60000", FRUGAL_INGEST_STATEMENT_TIMEOUT_MS="600000",
                               FRUGAL_EVENT_CLOSE_BUDGET_S="2"), tmp_path / "web.log", workers=2)
    blocker = make_engine(url)
    conn = blocker.connect()
    tx = conn.begin()
    acknowledged = 0
    try:
        conn.execute(sa.text("LOCK TABLE predictions IN EXCLUSIVE MODE"))  # every insert now waits
        with httpx.Client(base_url=web.url, timeout=30) as client:
            for i in range(60):
                r = client.post("/v1/predict", headers=s.sdk, json={"experiment": s.experiment, "unit_id": f"u{i}", "features": s.features})
                assert r.status_code == 200, r.text
                acknowledged += 1
        time.sleep(1.0)  # the writers have picked their batches up and wait on the lock
        web.signal(signal.SIGTERM)
        t0 = time.monotonic()
        web.proc.wait(120)
        stopped_in = time.monotonic() - t0
    finally:
        tx.rollback()
        conn.close()
        blocker.dispose()
        web.stop()
    spooled = sum(len(p.read_text().splitlines()) for p in (data_dir / "spool").glob("*.jsonl"))
    print(f"\nSIGTERM with inserts blocked: {acknowledged} acknowledged, {spooled} spooled at exit, stopped in {stopped_in:.1f} s")
    assert spooled > 0 or _count(url, "SELECT count(*) FROM predictions") == acknowledged, "nothing in flight was dropped"
    db = Database(url)
    log = EventLog(db, make_settings(data_dir, database_url=url))
    try:
        assert log.flush(60)
    finally:
        log.close()
        db.dispose()
    try:
        assert _count(url, "SELECT count(*) FROM predictions WHERE served") == acknowledged, (spooled, f"stopped in {stopped_in:.1f} s")
        assert _count(url, "SELECT count(DISTINCT request_id) FROM predictions WHERE served") == acknowledged
        assert stopped_in < 60, f"stopped in {stopped_in:.1f} s"  # generous: the budget is 2 s, the shadow drain 15 s
    finally:
        servers.drop_database(pg_admin_url, url)
