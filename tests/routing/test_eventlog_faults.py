"""The event log under bad rows and disk faults, on real Postgres (docs/eventlog.md, "Guarantees").

Each test ends with the same ledger: rows acknowledged = rows stored + rows counted in a dead-letter
file (which `frugal events replay-dead-letters` replays) + rows counted as lost, and 0 duplicates.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.store.database import make_engine
from tests.conftest import make_settings
from tests.harness.servers import free_port
from tests.routing.conftest import seed

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def rig(fresh_pg, data_dir, demo_models):
    """A seeded database, and a factory for event logs (closed at the end) writing to it."""
    from service.store.database import Database

    s = seed(fresh_pg, data_dir, demo_models)
    db = Database(fresh_pg)
    with db.engine.connect() as conn:
        experiment_id, model_id = conn.execute(sa.text(
            "SELECT e.id, m.model_id FROM experiments e JOIN experiment_models m ON m.experiment_id = e.id "
            "ORDER BY m.model_id LIMIT 1")).one()
    logs = []

    def make(url: str | None = None, **overrides):
        from service.eventlog import EventLog

        target = db if url is None else Database(url)
        log = EventLog(target, make_settings(data_dir, database_url=url or fresh_pg, **overrides))
        logs.append(log)
        return log

    class Rig:
        url, seeded, spool = fresh_pg, s, data_dir / "spool"
        experiment, model = experiment_id, model_id

        @staticmethod
        def prediction(i: int, **changes):
            from service.eventlog import PredictionEvent

            event = PredictionEvent(
                request_id=f"r-{i}", experiment_id=experiment_id, phase=1, arm="champion", unit_id=f"u{i}", model_id=model_id,
                served=True, in_experiment=True, answered_by_id=model_id, latency_ms=1.0, inference_ms=0.5, prediction=1.0,
                label=None, confidence=0.9, cost=0.0, cache_hit=False, fallback_reason=None, source="server",
                created_at=datetime.now(timezone.utc))
            return replace(event, **changes)

        @staticmethod
        def outcome(i: int, **changes):
            from service.eventlog import OutcomeEvent

            now = datetime.now(timezone.utc)
            return replace(OutcomeEvent(f"r-{i}", float(i % 2), now, now), **changes)

        @staticmethod
        def count(sql: str) -> int:
            with db.engine.connect() as conn:
                return int(conn.execute(sa.text(sql)).scalar())

        @staticmethod
        def dead_letters() -> list[dict]:
            return [json.loads(line) for p in sorted((data_dir / "spool" / "dead").glob("*.jsonl"))
                    for line in p.read_text().splitlines()]

    Rig.make = staticmethod(make)
    yield Rig
    for log in logs:
        log.close(timeout=5)
    db.dispose()


def _poison(rig):
    """Rows Postgres refuses for what they hold, one of each kind the audit found (and a foreign key)."""
    plus20 = timezone(timedelta(hours=20))  # Python takes +20:00; timestamptz does not
    return [rig.prediction(1000, unit_id="nul\x00here"), rig.prediction(1001, created_at=datetime.now(plus20)),
            rig.prediction(1002, model_id=987654), rig.prediction(1003, label="x" * 300),
            rig.outcome(1004, request_id="nul\x00outcome")]


def test_rows_the_database_refuses_are_dead_lettered_and_every_good_row_is_stored(rig):
    log = rig.make()
    good = [rig.prediction(i) for i in range(300)] + [rig.outcome(i) for i in range(100)]
    bad = _poison(rig)
    batch = good[:150] + bad[:3] + good[150:] + bad[3:]
    log.record_many(batch)
    assert log.flush(60)
    assert rig.count("SELECT count(*) FROM predictions") == 300
    assert rig.count("SELECT count(DISTINCT request_id) FROM predictions") == 300
    assert rig.count("SELECT count(*) FROM outcomes") == 100
    letters = rig.dead_letters()
    assert sorted(d["event"]["request_id"] for d in letters) == sorted(e.request_id for e in bad)
    assert all(d["reason"] for d in letters)
    stats = log.stats()
    assert stats["dead_lettered"] == len(bad) and stats["lost"] == 0 and stats["dead_letter_files"] >= 1
    assert not list(rig.spool.glob("*.jsonl")), "nothing is left stuck in the spool"
    # the writer goes on: later events land
    log.record_many([rig.prediction(i) for i in range(300, 320)])
    assert log.flush(30)
    assert rig.count("SELECT count(*) FROM predictions") == 320


def test_a_poisoned_or_torn_spool_file_does_not_block_the_files_after_it(rig):
    from service.eventlog import Spool, to_line

    spool = Spool(rig.spool, "batch")
    spool.write([rig.prediction(i) for i in range(0, 50)] + _poison(rig)[:2])            # poison rows
    first = spool.files()[0]
    torn = rig.spool / f"{first.name[:20]}-torn.jsonl"                                     # a crash mid-line
    lines = [to_line(rig.prediction(i)) for i in range(50, 100)]
    torn.write_text("\n".join(lines) + "\n" + to_line(rig.prediction(100))[:37])
    corrupt = rig.spool / f"{first.name[:20]}-z-corrupt.jsonl"                             # a bad disk block
    corrupt.write_bytes(b"\xff\xfe garbage\n" + "\n".join(to_line(rig.outcome(i)) for i in range(0, 30)).encode() +
                        b"\n{\"_k\": \"unknown-kind\"}\n[1, 2]\n")
    spool.write([rig.prediction(i) for i in range(101, 150)])                             # a good file after them
    assert len(spool.files()) == 4
    log = rig.make()
    assert log.flush(60)
    assert spool.files() == [], "every file replayed"
    assert rig.count("SELECT count(*) FROM predictions") == 149  # 0-99, 101-149: all but the torn line
    assert rig.count("SELECT count(DISTINCT request_id) FROM predictions") == 149
    assert rig.count("SELECT count(*) FROM outcomes") == 30
    stats = log.stats()
    assert stats["corrupt_lines"] == 4 and stats["dead_lettered"] == 2, stats
    kept = rig.dead_letters()
    assert sum(1 for d in kept if "line" in d) == 4 and sum(1 for d in kept if "event" in d) == 2


def test_a_spool_written_before_reference_cost_replays_and_a_shadow_row_keeps_its_reference(rig):
    """Spool lines of the release before revision 0008 have no ``reference_cost``: they replay with it NULL;
    a shadow challenger's line that has one stores it."""
    import json

    from service.eventlog import Spool, to_line

    old = []
    for i in range(10):
        data = json.loads(to_line(rig.prediction(i)))
        del data["reference_cost"]
        old.append(json.dumps(data))
    rig.spool.mkdir(parents=True, exist_ok=True)
    (rig.spool / "0000000000000000-older-release.jsonl").write_text("\n".join(old) + "\n")
    Spool(rig.spool, "batch").write([rig.prediction(10, arm="challenger", served=False, cost=2e-9, reference_cost=3e-9)])
    log = rig.make()
    assert log.flush(60)
    engine = make_engine(rig.url)
    try:
        with engine.connect() as conn:
            rows = dict(conn.execute(sa.text("SELECT request_id, reference_cost FROM predictions")).all())
    finally:
        engine.dispose()
    assert len(rows) == 11 and log.stats()["corrupt_lines"] == 0
    assert all(rows[f"r-{i}"] is None for i in range(10)) and rows["r-10"] == 3e-9


def test_replay_dead_letters_stores_rows_once_the_cause_is_fixed(rig, demo_models):
    """The documented command: `frugal events replay-dead-letters` (here its function, then the CLI)."""
    from service import registry
    from service.runtime import Runtime

    rt = Runtime(make_settings(rig.spool.parent, database_url=rig.url))
    with rt.db.engine.connect() as conn:
        next_id = int(conn.execute(sa.text("SELECT max(id) FROM models")).scalar()) + 1
    log = rig.make()
    orphans = [rig.prediction(2000 + i, model_id=next_id, answered_by_id=next_id) for i in range(5)]
    log.record_many(orphans + [rig.prediction(i) for i in range(20)])
    assert log.flush(30)
    assert rig.count("SELECT count(*) FROM predictions") == 20 and len(rig.dead_letters()) == 5
    # the cause: a model that did not exist yet.  Register it, then replay.
    model = next(iter(demo_models.values()))
    record = registry.register(rt.db, rt.settings, model.path.read_bytes(), name=model.name, version="fixed", task=model.task)
    assert record.id == next_id
    rt.close()
    result = subprocess.run([".venv/bin/frugal" if Path(".venv/bin/frugal").exists() else "frugal", "events", "replay-dead-letters"],
                            env={**os.environ, "FRUGAL_DATA_DIR": str(rig.spool.parent), "FRUGAL_DATABASE_URL": rig.url},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "replayed 5" in result.stdout, result.stdout
    assert rig.count("SELECT count(*) FROM predictions") == 25
    assert rig.dead_letters() == []


@contextmanager
def _unwritable(path: Path, how: str):
    """A spool directory on a disk that is full, or read-only (a small tmpfs; root can mount one)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        if how == "read-only":
            path.chmod(0o500)
            try:
                yield
            finally:
                path.chmod(0o700)
            return
        pytest.fail("a full disk needs root to mount a small tmpfs (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)], check=True)
    try:
        if how == "full":
            fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_an_unwritable_spool_during_an_outage_counts_every_lost_event(rig, how):
    from service.eventlog import OutcomeEvent

    down = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing"  # a database that is not there
    log = rig.make(down)
    with _unwritable(rig.spool, how):
        for i in range(0, 200, 20):
            assert log.record_many([rig.prediction(j) for j in range(i, i + 20)]) is True  # accepted (queued)
        deadline = time.monotonic() + 60
        while log.stats()["lost"] < 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = log.stats()
        assert stats["lost"] == 200 and stats["spooled"] == 0, stats
        assert stats["spool_writable"] is False and stats["database_available"] is False
        now = datetime.now(timezone.utc)
        assert log.spool_now([OutcomeEvent("q-1", 1.0, now, now)]) is False  # "queued" would be a lie: 503
    # the disk is back: the probe says so, and "queued" is durable again
    assert log.stats()["spool_writable"] is True or (time.sleep(1.1) or log.stats()["spool_writable"] is True)
    assert log.spool_now([OutcomeEvent("q-2", 1.0, now, now)]) is True
    assert len(list(rig.spool.glob("*.jsonl"))) == 1
    assert log.stats()["recorded"] == 201  # 200 predictions (lost, counted) + q-2 (spooled)


def test_close_spools_the_batch_in_flight_when_the_database_is_too_slow(rig):
    """SIGTERM while an insert waits on a slow database: close() spools the in-flight batch after its
    budget instead of dropping it; a later replay stores each row once even if the slow insert commits."""
    log = rig.make(ingest_lock_timeout_ms=60_000, ingest_statement_timeout_ms=600_000, event_batch_size=1000)
    blocker = make_engine(rig.url)
    conn = blocker.connect()
    tx = conn.begin()
    conn.execute(sa.text("LOCK TABLE predictions IN EXCLUSIVE MODE"))  # writes wait; the database is "slow"
    try:
        log.record_many([rig.prediction(i) for i in range(26)])
        deadline = time.monotonic() + 30
        while not log._in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log._in_flight, "the writer picked the batch up"
        started = time.monotonic()
        log.close(timeout=1.0)
        assert time.monotonic() - started < 20  # returned after its budget, not after the database
        spooled = [line for p in rig.spool.glob("*.jsonl") for line in p.read_text().splitlines()]
        assert len(spooled) == 26
    finally:
        tx.rollback()  # the slow insert now commits (or not): either way the replay stores each row once
        conn.close()
        blocker.dispose()
    replayer = rig.make()
    replayer.record_many([rig.prediction(100)])
    assert replayer.flush(60)
    assert rig.count("SELECT count(*) FROM predictions") == 27
    assert rig.count("SELECT count(DISTINCT request_id) FROM predictions") == 27


def test_ingest_does_not_wait_for_a_lock_analysis_work_holds(rig):
    """A roll-up (or any analysis) holding locks ingest needs: the writer gives up after the lock
    timeout and spools, and replays when the lock is gone."""
    log = rig.make(ingest_lock_timeout_ms=100)
    engine = make_engine(rig.url)
    conn = engine.connect()
    tx = conn.begin()
    conn.execute(sa.text("LOCK TABLE predictions IN EXCLUSIVE MODE"))
    try:
        log.record_many([rig.prediction(i) for i in range(40)])
        deadline = time.monotonic() + 30
        while log.stats()["spooled"] < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.stats()["spooled"] == 40, log.stats()
    finally:
        tx.rollback()
        conn.close()
        engine.dispose()
    assert log.flush(60)
    assert rig.count("SELECT count(*) FROM predictions") == 40


def test_the_writer_keeps_a_second_record_kind_generic(rig):
    """A record kind registered beside predictions and outcomes rides through queue, spool, replay and
    dead letters without any change to the writer (the shape issue 13's shadow jobs use)."""
    from dataclasses import dataclass

    from service import eventlog

    @dataclass(frozen=True, slots=True)
    class Marker:
        request_id: str
        at: datetime

    stored: list[str] = []
    kind = eventlog.RecordKind("t-marker", Marker, f"{__name__}:_insert_markers")
    _MARKERS.clear()
    eventlog.register_kind(kind)
    try:
        log = rig.make()
        now = datetime.now(timezone.utc)
        log.spool.write([Marker("m-1", now), rig.prediction(1)])
        log.record_many([Marker("m-2", now), Marker("bad\x00", now), rig.prediction(2)])
        assert log.flush(30)
        stored = sorted(_MARKERS)
        assert stored == ["m-1", "m-2"]
        assert [d["event"]["request_id"] for d in rig.dead_letters()] == ["bad\x00"]
        assert rig.count("SELECT count(*) FROM predictions") == 2
    finally:
        eventlog.KINDS.pop(kind.tag, None)
        eventlog._BY_CLASS.pop(Marker, None)


_MARKERS: list[str] = []


def _insert_markers(session, events) -> None:
    for e in events:
        session.execute(sa.text("SELECT :v"), {"v": e.request_id})  # Postgres refuses a NUL here
    _MARKERS.extend(e.request_id for e in events)
