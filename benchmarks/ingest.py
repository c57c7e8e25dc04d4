"""Events per second the event-log writer sustains into Postgres, against a raw COPY of the same rows.

  python benchmarks/ingest.py [--events 200000] [--database postgresql://postgres@127.0.0.1/postgres]

Both runs use a throwaway database and the same generated prediction events:

- raw COPY: the rows as CSV, one ``COPY predictions FROM STDIN`` (the floor: no staging, no
  de-duplication, no queue);
- Frugal's writer: ``EventLog.record`` for every event from the calling thread (as the request path
  does), then ``flush`` until every row is committed (queue, batching, COPY into a staging table,
  ``INSERT .. ON CONFLICT DO NOTHING``, spool on failure).

It prints both rates and their ratio, and also the time ``record`` takes on the request path.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.analysis import SIGNATURE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres", help="an admin URL")
    args = parser.parse_args()

    from service import experiments
    from service.definition import ExperimentDefinition
    from service.eventlog import EventLog, PredictionEvent
    from service.migrate import upgrade
    from service.settings import load_settings
    from service.store import models as model_store
    from service.store.database import Database
    from tests.harness.servers import create_database, drop_database
    from service.store.events import PREDICTION_COLUMNS, _csv

    url = create_database(args.database)
    name = urlparse(url).path.lstrip("/")
    db = Database(url)
    tmp = Path(f"/tmp/{name}")
    try:
        upgrade(db.engine)
        now = datetime.now(timezone.utc)
        with db.unit_of_work() as session:
            model, other = [model_store.insert(session, name=n, version="1", task="binary", digest=f"{i:064d}",
                                               file_size=1, signature=SIGNATURE, declared_cost_per_1k=None, profile=None,
                                               derived_from_id=None, transform=None, description="", created_at=now)
                            for i, n in enumerate(("champion", "challenger"))]
        definition = ExperimentDefinition.model_validate({
            "name": "ingest", "mode": "ab", "champion": {"kind": "model", "model": model.ref},
            "challenger": {"kind": "model", "model": other.ref}, "metric": {"kind": "binary", "margin": 0.02}})
        record = experiments.transition(db, str(experiments.create(db, definition, actor="bench").id), "start",
                                        actor="bench")

        def events(prefix: str) -> list[PredictionEvent]:
            return [PredictionEvent(request_id=f"{prefix}{i}", experiment_id=record.id, phase=record.current_phase,
                                    arm="champion", unit_id=f"u{i}", model_id=model.id, served=True, in_experiment=True,
                                    answered_by_id=model.id, latency_ms=1.5, inference_ms=0.2, prediction=1.0,
                                    label="1", confidence=0.9, cost=1e-6, cache_hit=False, fallback_reason=None,
                                    source="server", created_at=now) for i in range(args.events)]

        raw_events = events("raw-")
        t = time.perf_counter()
        buffer = io.StringIO()
        for e in raw_events:
            buffer.write(",".join(_csv(getattr(e, c)) for c in PREDICTION_COLUMNS))
            buffer.write("\n")
        buffer.seek(0)
        raw = db.engine.raw_connection()
        try:
            with raw.cursor() as cursor:
                cursor.copy_expert(f"COPY predictions ({', '.join(PREDICTION_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buffer)
            raw.commit()
        finally:
            raw.close()
        raw_s = time.perf_counter() - t

        settings = load_settings({"FRUGAL_DATA_DIR": str(tmp), "FRUGAL_DATABASE_URL": url})
        log = EventLog(db, settings)
        frugal_events = events("log-")
        t = time.perf_counter()
        for e in frugal_events:
            log.record(e)
        record_s = time.perf_counter() - t
        assert log.flush(timeout=600), "the writer did not drain"
        writer_s = time.perf_counter() - t
        log.close()
        with db.engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM predictions WHERE request_id LIKE 'log-%'")).scalar()
        assert stored == args.events, (stored, args.events)

        print(f"{'path':<52} {'events/s':>12}")
        print(f"{'raw COPY of the same rows (floor)':<52} {args.events / raw_s:>12,.0f}")
        print(f"{'Frugal event log: record() + flush() until committed':<52} {args.events / writer_s:>12,.0f}")
        print(f"\nwriter / raw COPY: {raw_s / writer_s:.2f}x  ({stored:,} rows stored, none lost)")
        print(f"record() on the request path: {1e6 * record_s / args.events:.2f} µs per event")
    finally:
        db.dispose()
        drop_database(args.database, url)


if __name__ == "__main__":
    main()
