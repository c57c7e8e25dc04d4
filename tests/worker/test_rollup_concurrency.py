"""Roll-ups never in ingest's way, and workers rolling up at once count every row once (Postgres).

The event writers' functions (service.store.events) insert while a roll-up runs: with a lock
timeout of their own, any wait on a lock the roll-up holds would fail an insert, and a monitor
watches pg_locks / pg_stat_activity for an ingest connection waiting on a lock.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from service.analytics.rollup import run_rollup
from service.eventlog import OutcomeEvent, PredictionEvent
from service.store.events import insert_outcomes, insert_predictions
from tests.worker.conftest import record_models, start_experiment
from tests.worker.test_redelivery import _bulk_events
from tests.worker.test_rollup import SLO_MS, _assert_equal, _from_rollups, _from_sql, _round, _setup

INGEST_APP = "frugal-ingest-under-test"


def _ingest_db(url: str):
    """A Database whose connections give up on any lock wait longer than 50 ms."""
    from service.store.database import Database

    db = Database(url)

    @sa.event.listens_for(db.engine, "connect")
    def _limits(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = '50ms'; SET application_name = '{INGEST_APP}'")
        dbapi_connection.commit()

    return db


def _prediction(k: int, experiment, model) -> PredictionEvent:
    return PredictionEvent(f"live{k}", experiment.id, experiment.current_phase, "champion", f"u{k}", model.id, True, True,
                           model.id, 8.0, 1.0, 1.0, None, 0.9, 0.001, False, None, "server", datetime.now(timezone.utc))


def test_no_ingest_waits_on_the_rollup_while_a_million_row_rollup_runs(fresh_pg):
    from service.store.database import Database

    db, ingest = Database(fresh_pg), _ingest_db(fresh_pg)
    try:
        champion, challenger = record_models(db)
        experiment = start_experiment(db, champion, challenger, name="big", mode="ab")
        _bulk_events(db, experiment, champion, challenger, 1_000_000)
        done, errors, waits = threading.Event(), [], []
        accepted = {"during": 0}

        def roll() -> None:
            try:
                accepted["result"] = run_rollup(db)  # one transaction of 1M rows: the longest a batch holds anything
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        def monitor() -> None:
            with db.engine.connect() as conn:
                while not done.is_set():
                    waits.extend(conn.execute(sa.text(
                        "SELECT a.pid, a.wait_event_type, a.wait_event, a.query FROM pg_stat_activity a "
                        "WHERE a.application_name = :app AND (a.wait_event_type = 'Lock' OR EXISTS "
                        "(SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted))"), {"app": INGEST_APP}).all())
                    conn.rollback()
                    time.sleep(0.005)

        threads = [threading.Thread(target=roll), threading.Thread(target=monitor)]
        for t in threads:
            t.start()
        k = 0
        while not done.is_set():
            with ingest.unit_of_work() as session:
                insert_predictions(session, [_prediction(k + i, experiment, champion) for i in range(20)])
            now = datetime.now(timezone.utc)
            with ingest.unit_of_work() as session:
                statuses = insert_outcomes(session, [OutcomeEvent(f"live{k + i}", 1.0, now, now) for i in range(20)])
            assert statuses == ["accepted"] * 20
            k += 20
            if not done.is_set():
                accepted["during"] += 40
        for t in threads:
            t.join(300)
        assert not errors, errors
        assert waits == [], f"ingest waited on a lock while the roll-up ran: {waits[:5]}"
        assert accepted["result"].predictions >= 1_000_000
        assert accepted["during"] >= 40, "no event was ingested while the roll-up ran"
        # what arrived during the roll-up is counted by the next one, once
        run_rollup(db)
        with db.unit_of_work() as session:
            counted = session.scalar(sa.text("SELECT sum((stats->>'predictions')::bigint) FROM rollups"))
            stored = session.scalar(sa.text("SELECT count(*) FROM predictions"))
        assert counted == stored == 1_000_000 + k
    finally:
        ingest.dispose()
        db.dispose()


def test_two_workers_rolling_up_at_once_count_every_row_once(fresh_pg):
    """Two workers (each its own engine, as two processes would be) roll up in small batches while
    events arrive; they share the experiments between them, and the buckets equal the raw rows."""
    from service.store.database import Database

    db = Database(fresh_pg)
    workers = [Database(fresh_pg) for _ in range(2)]
    try:
        rng = random.Random(23)
        setups = [_setup(db)]
        champion, challenger = setups[0][2], setups[0][3]
        extra = [start_experiment(db, champion, challenger, name=f"more{i}", mode="ab",
                                  guardrails={"latency": {"threshold_ms": SLO_MS, "max_share": 0.1}}) for i in range(2)]
        state = {"next": 0, "pending": []}
        stop, errors, results = threading.Event(), [], [[], []]

        def work(i: int) -> None:
            try:
                while not stop.is_set():
                    results[i].append(run_rollup(workers[i], batch_rows=30))
            except BaseException as exc:
                errors.append(exc)

        ab, shadow = setups[0][0], setups[0][1]
        for n in range(8):  # a backlog on every experiment, then more while both workers run
            _round(rng, db, [ab, extra[0], extra[1]][n % 3], shadow, champion, challenger, state)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for n in range(8):
            _round(rng, db, ab if n % 3 else extra[n % 2], shadow, champion, challenger, state)
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert all(any(r.transactions for r in rs) for rs in results), "both workers should have rolled something up"
        run_rollup(db)
        _assert_equal(_from_rollups(db), _from_sql(db))
    finally:
        for w in workers:
            w.dispose()
        db.dispose()


def test_a_worker_skips_an_experiment_another_worker_is_rolling_up(fresh_pg):
    """SKIP LOCKED: while one transaction holds an experiment's watermarks, another worker's run
    leaves that experiment alone (busy) and rolls up the others; waiting mode would wait."""
    from service.store import rollups as store
    from service.store.database import Database

    db = Database(fresh_pg)
    try:
        ab, shadow, champion, challenger = _setup(db)
        _round(random.Random(3), db, ab, shadow, champion, challenger, {"next": 0, "pending": []})
        with db.unit_of_work() as session:
            store.ensure_marks(session, [ab.id, shadow.id], datetime.now(timezone.utc))
        with db.unit_of_work() as session:
            assert store.claim(session, ab.id, datetime.now(timezone.utc), wait=False) is not None
            other = Database(fresh_pg)
            try:
                result = run_rollup(other)
            finally:
                other.dispose()
            assert result.busy == 1 and result.experiments == 1
        result = run_rollup(db)
        assert result.experiments == 1 and result.busy == 0
        _assert_equal(_from_rollups(db), _from_sql(db))
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_rollups_in_batches_equal_the_raw_rows(backend, sqlite_url):
    """The documented SQLite path: the same SQL, no barrier (one writer), batches of a few rows."""
    from service.store.database import Database

    db = Database(sqlite_url)
    try:
        ab, shadow, champion, challenger = _setup(db)
        state = {"next": 0, "pending": []}
        rng = random.Random(5)
        for _ in range(4):
            _round(rng, db, ab, shadow, champion, challenger, state)
            assert run_rollup(db, batch_rows=7).transactions > 1
        _assert_equal(_from_rollups(db), _from_sql(db))
    finally:
        db.dispose()
