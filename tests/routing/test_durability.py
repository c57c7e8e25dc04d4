"""Nothing is lost and nothing is stored twice: a database outage, stopping the web server under
load (SIGTERM, SIGKILL), a scorer killed mid-batch, two scorers on one queue.  Real gunicorn, real
scorer processes (``frugal scorer``), real Postgres."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
import sqlalchemy as sa

from tests.harness.processes import ScorerProcess, WebServer, frugal_env
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


@pytest.mark.parametrize("mode", ["ab", "shadow"])
def test_a_database_outage_loses_no_prediction_and_no_outcome(throwaway_pg, demo_models, tmp_path, mode):
    """In shadow mode the jobs are spooled with their served rows and replayed; a scorer running
    through the outage retries, and every request ends with exactly one challenger row."""
    url = throwaway_pg.url
    data_dir = tmp_path / "data"
    s = seed(url, data_dir, demo_models, mode=mode, shadow_sample=1.0)
    env = frugal_env(data_dir, url, FRUGAL_AUTH_CACHE_TTL_S="0.5", FRUGAL_RULESET_TTL_S="0.5")
    web = WebServer(env, tmp_path / "web.log", workers=2)
    scorer = ScorerProcess(env, tmp_path / "scorer.log") if mode == "shadow" else None
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
        rows = n * (2 if mode == "shadow" else 1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            predictions = _count(url, "SELECT count(*) FROM predictions")
            outcomes = _count(url, "SELECT count(*) FROM outcomes")
            if predictions >= rows and outcomes >= n:
                break
            time.sleep(0.5)
        assert _count(url, "SELECT count(*) FROM predictions WHERE served") == n
        assert _count(url, "SELECT count(DISTINCT request_id) FROM predictions WHERE served") == n
        assert _count(url, "SELECT count(*) FROM outcomes") == n
        if mode == "shadow":
            assert _count(url, "SELECT count(*) FROM predictions WHERE NOT served") == n
            assert _count(url, "SELECT count(DISTINCT request_id) FROM predictions WHERE NOT served") == n
            assert _count(url, "SELECT count(*) FROM shadow_jobs") == 0
    finally:
        web.stop()
        if scorer is not None:
            scorer.stop()


def _wait_until(predicate, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _load(web: WebServer, s, stop: threading.Event, sent: list[str], worker: int) -> None:
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


def _ids(url: str, where: str) -> list[str]:
    from service.store.database import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text(f"SELECT request_id FROM predictions WHERE {where}"))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("mode, sig", [("ab", signal.SIGTERM), ("shadow", signal.SIGTERM), ("shadow", signal.SIGKILL)],
                         ids=["ab-SIGTERM", "shadow-SIGTERM", "shadow-SIGKILL"])
def test_stopping_the_web_server_under_load_loses_nothing(pg_admin_url, demo_models, tmp_path, mode, sig):
    """A scorer runs beside the web server, as in production.  SIGTERM: every answered request is
    stored, and in shadow mode has exactly one challenger row.  SIGKILL: the event log's memory
    queue (at most FRUGAL_EVENT_FLUSH_INTERVAL_S of answers) dies with the process, but a shadow job
    is committed with its served row, so every stored shadow request has exactly one challenger row."""
    from tests.harness import servers

    url = servers.create_database(pg_admin_url)
    data_dir = tmp_path / "data"
    s = seed(url, data_dir, demo_models, mode=mode, shadow_sample=1.0)
    env = frugal_env(data_dir, url)
    scorer = ScorerProcess(env, tmp_path / "scorer.log")
    web = WebServer(env, tmp_path / "web.log", workers=2)
    sent: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(web, s, stop, sent, w)) for w in range(4)]
    try:
        for t in threads:
            t.start()
        # under load: enough answers, however slowly a busy host gives them
        _wait_until(lambda: len(sent) >= 200, timeout=180, what="200 answered requests")
        web.signal(sig)
        t0 = time.monotonic()
        web.proc.wait(60)
        stopped_in = round(time.monotonic() - t0, 1)
        stop.set()
        for t in threads:
            t.join(30)
        assert len(sent) >= 200
        served = _ids(url, "served")
        assert len(served) == len(set(served))
        if sig == signal.SIGTERM:
            assert sorted(served) == sorted(sent), (len(served), len(sent), f"stopped in {stopped_in} s", web.log())
        else:
            assert set(served) <= set(sent) and len(served) > 0
            print(f"SIGKILL under load: {len(sent)} answered, {len(served)} stored, "
                  f"{len(sent) - len(served)} lost with the event log's memory queue")
        if mode == "shadow":
            _wait_until(lambda: _count(url, "SELECT count(*) FROM shadow_jobs") == 0, what="the scorer to empty the queue")
            challenger = _ids(url, "NOT served")
            assert len(challenger) == len(set(challenger)), "a challenger row stored twice"
            assert sorted(challenger) == sorted(served), (len(challenger), len(served), scorer.log())
        else:
            assert _count(url, "SELECT count(*) FROM predictions WHERE NOT served") == 0
        assert _count(url, "SELECT count(*) FROM shadow_drops") == 0
    finally:
        stop.set()
        web.stop()
        scorer.stop()
        servers.drop_database(pg_admin_url, url)


def _queue_jobs(url: str, data_dir, s, n: int, check: bool = True, first: int = 0) -> None:
    """n shadow jobs of n one-row requests, written the way a web worker writes them (the event log).
    Each request has its own time: the scorer runs a request's jobs together, so jobs sharing one
    time would be a single request of n rows, scored in a few milliseconds."""
    from datetime import datetime, timedelta, timezone

    from service.eventlog import EventLog, ShadowJobEvent
    from service.routing.catalog import Catalog
    from service.runtime import Runtime
    from tests.conftest import make_settings

    rt = Runtime(make_settings(data_dir, database_url=url))
    config = Catalog(rt.db, rt.settings).get(s.experiment)
    log = EventLog(rt.db, rt.settings)
    now = datetime.now(timezone.utc)
    log.record_many([ShadowJobEvent(f"job-{i}", config.id, config.phase, f"u{i}", s.features, 1.0,
                                    now + timedelta(microseconds=i)) for i in range(first, first + n)])
    assert log.flush(timeout=120)
    log.close()
    rt.close()
    if check:
        assert _count(url, "SELECT count(*) FROM shadow_jobs") == n


def _locked_job_ids(url: str) -> set[int]:
    """Jobs a scorer holds now (claimed by an open transaction): all jobs minus those SKIP LOCKED can see."""
    from service.store.database import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            every = {r[0] for r in conn.execute(sa.text("SELECT id FROM shadow_jobs"))}
            free = {r[0] for r in conn.execute(sa.text("SELECT id FROM shadow_jobs FOR UPDATE SKIP LOCKED"))}
            conn.rollback()
            return every - free
    finally:
        engine.dispose()


def test_a_scorer_killed_mid_batch_leaves_its_jobs_to_be_scored_again(pg_admin_url, demo_models, tmp_path):
    from tests.harness import servers

    url = servers.create_database(pg_admin_url)
    data_dir = tmp_path / "data"
    s = seed(url, data_dir, demo_models, mode="shadow", shadow_sample=1.0)
    n = 3000
    _queue_jobs(url, data_dir, s, n)
    env = frugal_env(data_dir, url, FRUGAL_SHADOW_BATCH_SIZE="500")
    killed_mid_batch = 0
    try:
        for attempt in range(8):
            scorer = ScorerProcess(env, tmp_path / f"scorer-{attempt}.log")
            try:
                held: set[int] = set()
                # a batch held, or none left to hold (it finished between two looks), or the scorer gone
                _wait_until(lambda: bool(held.update(_locked_job_ids(url)) or held)
                            or _count(url, "SELECT count(*) FROM shadow_jobs") == 0 or scorer.proc.poll() is not None,
                            what="a scorer to claim a batch")
                scorer.signal(signal.SIGKILL)
                scorer.proc.wait(10)
            finally:
                scorer.stop()
            left = _count(url, "SELECT count(*) FROM shadow_jobs")
            rows = _count(url, "SELECT count(*) FROM predictions WHERE NOT served")
            assert rows + left == n, (rows, left)   # every job is either scored (and deleted) or still queued
            still_there = _count(url, f"SELECT count(*) FROM shadow_jobs WHERE id IN ({','.join(map(str, held))})") if held else 0
            if still_there == len(held) and held:
                killed_mid_batch += 1   # its claimed batch rolled back: the jobs are queued again
            if killed_mid_batch >= 2:
                break
            if left == 0:   # it finished before a kill caught it inside a batch: more work for the next one
                _queue_jobs(url, data_dir, s, 3000, check=False, first=n)
                n += 3000
        assert killed_mid_batch >= 1, "no kill landed inside a batch"
        last = ScorerProcess(env, tmp_path / "scorer-last.log")
        try:
            _wait_until(lambda: _count(url, "SELECT count(*) FROM shadow_jobs") == 0, what="the queue to empty")
        finally:
            last.stop()
        assert _count(url, "SELECT count(*) FROM predictions WHERE NOT served") == n
        assert _count(url, "SELECT count(DISTINCT request_id) FROM predictions WHERE NOT served") == n
    finally:
        servers.drop_database(pg_admin_url, url)


def test_two_scorers_on_one_queue_never_score_a_job_twice(pg_admin_url, demo_models, tmp_path):
    from tests.harness import servers

    url = servers.create_database(pg_admin_url)
    data_dir = tmp_path / "data"
    s = seed(url, data_dir, demo_models, mode="shadow", shadow_sample=1.0)
    n = 4000
    env = frugal_env(data_dir, url, FRUGAL_SHADOW_BATCH_SIZE="50")
    scorers = [ScorerProcess(env, tmp_path / f"scorer-{i}.log") for i in range(2)]
    try:
        # both polling before the first job arrives, so both take part however slowly either starts
        _wait_until(lambda: all("started" in p.log_path.read_text(errors="replace") for p in scorers), what="both scorers")
        _queue_jobs(url, data_dir, s, n, check=False)
        _wait_until(lambda: _count(url, "SELECT count(*) FROM shadow_jobs") == 0, what="the queue to empty")
    finally:
        for p in scorers:
            p.stop()
    scored = [p.scored() for p in scorers]
    assert sum(scored) == n, scored          # a job claimed by both would be counted twice
    assert min(scored) > 0, scored           # both took part
    assert _count(url, "SELECT count(*) FROM predictions WHERE NOT served") == n
    assert _count(url, "SELECT count(DISTINCT request_id) FROM predictions WHERE NOT served") == n
    servers.drop_database(pg_admin_url, url)
