"""SQL for roll-ups: set-based aggregates of new events past each experiment's watermarks, and
upserts of bucket statistics.  The database reads the rows; Python only ever sees buckets.

Ids are the watermark.  Each experiment has its own pair of watermark rows ("predictions:<id>",
"outcomes:<id>"), so workers roll up different experiments at the same time; a worker that finds an
experiment's rows locked skips it (``FOR UPDATE SKIP LOCKED``) instead of waiting.

On Postgres, ids can become visible out of order (a transaction that took id 100 may commit after
one that took 101).  Event writers hold a *shared* advisory lock (:data:`INGEST_LOCK`) while they
insert, taken before they draw an id.  The roll-up never takes that lock: it reads ``max(id)``, then
lists the writer transactions holding the lock at that moment and waits (polling ``pg_locks``) until
those have ended.  Every id at or below the maximum is then committed or will never exist, and no
writer ever waits on the roll-up (``committed_max_ids``).

The same SQL runs on SQLite, except the hour of a timestamp (``strftime`` instead of
``date_trunc``) and the text of a float label; SQLite has one writer at a time, so it needs no barrier,
and a roll-up takes the write lock first (an ``UPDATE`` of its watermarks) so two never interleave.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.errors import ServiceUnavailable
from service.store.tables import Experiment, Exposure, Prediction, Rollup, RollupTotal, Watermark

INGEST_LOCK = 74_201_127  # pg advisory lock key: event writers hold it shared; nobody takes it exclusively
BARRIER_TIMEOUT_S = 30.0  # how long the roll-up waits for writer transactions in flight before giving up
MAX_ABS = 1e15  # larger magnitudes (and NaN, infinities) are skipped: a square of one must not overflow a sum


def hold_ingest_lock_shared(session_or_conn) -> None:
    """Writers call this inside their insert transaction, before inserting (a no-op on SQLite,
    which has one writer).  Shared holders never conflict, and the roll-up only reads who holds it."""
    if _dialect(session_or_conn) == "postgresql":
        session_or_conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": INGEST_LOCK})


def _dialect(obj) -> str:
    return obj.dialect.name if hasattr(obj, "dialect") else obj.get_bind().dialect.name


def _insert(session_or_conn):
    if _dialect(session_or_conn) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


# -- where it is safe to read up to -----------------------------------------------------------------

def committed_max_ids(engine: sa.Engine, timeout_s: float = BARRIER_TIMEOUT_S) -> tuple[int, int]:
    """The highest prediction and outcome ids below which every id is committed (or never will be).

    Postgres: read the maxima, then the writer transactions holding the ingest lock at that moment,
    and wait for exactly those to end; writers that start later draw higher ids.  Nothing is locked.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        p, o = conn.execute(sa.text("SELECT (SELECT coalesce(max(id), 0) FROM predictions), "
                                    "(SELECT coalesce(max(id), 0) FROM outcomes)")).one()
        if conn.dialect.name != "postgresql":
            return int(p), int(o)
        holders = _lock_holders(conn, None)
        deadline, pause = time.monotonic() + timeout_s, 0.002
        while holders:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"{len(holders)} event writer transaction(s) did not finish within {timeout_s:.0f} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            holders = _lock_holders(conn, holders)
    return int(p), int(o)


def _lock_holders(conn: sa.Connection, among: list[str] | None) -> list[str]:
    """Virtual transaction ids holding the ingest lock (only those in ``among``, when given)."""
    query = ("SELECT virtualtransaction FROM pg_locks WHERE locktype = 'advisory' AND granted "
             "AND classid = :hi AND objid = :lo AND objsubid = 1")
    params: dict[str, Any] = {"hi": INGEST_LOCK >> 32, "lo": INGEST_LOCK & 0xFFFFFFFF}
    if among is not None:
        query += " AND virtualtransaction = ANY(:among)"
        params["among"] = among
    return [row[0] for row in conn.execute(sa.text(query), params)]


# -- per-experiment watermarks --------------------------------------------------------------------

@dataclass(frozen=True)
class Marks:
    """How far an experiment has been rolled up: prediction and outcome ids at or below are counted."""

    predictions: int
    outcomes: int


def _names(experiment_id: int) -> tuple[str, str]:
    return f"predictions:{experiment_id}", f"outcomes:{experiment_id}"


def limit_time(session: Session, statement_s: float, lock_s: float) -> None:
    """Statement and lock timeouts for this transaction (Postgres; SQLite has its busy timeout)."""
    if _dialect(session) == "postgresql":
        session.execute(sa.text(f"SET LOCAL statement_timeout = '{int(statement_s * 1000)}ms'"))
        session.execute(sa.text(f"SET LOCAL lock_timeout = '{int(lock_s * 1000)}ms'"))


def tune_for_aggregates(session: Session) -> None:
    """Planner settings for this transaction's aggregates (Postgres).  The planner cannot estimate
    how many hours a million time stamps fall in, guesses one group per row, and then sorts a million
    rows (spilling to disk) to make a thousand groups; with sorting discouraged it hashes them.  JIT
    compilation, triggered by those inflated estimates, cost more than the query itself (9.9 s of
    compiling for an 8 s aggregate of 1M rows)."""
    if _dialect(session) == "postgresql":
        session.execute(sa.text("SET LOCAL jit = off"))
        session.execute(sa.text("SET LOCAL enable_sort = off"))
        session.execute(sa.text("SET LOCAL work_mem = '64MB'"))


def ensure_marks(session: Session, experiment_ids: Iterable[int], now: datetime) -> None:
    """Create missing watermark rows (at 0), in a short transaction of their own: a worker that
    later claims them never waits on another's uncommitted insert of the same row."""
    rows = [{"name": n, "last_id": 0, "updated_at": now} for e in experiment_ids for n in _names(e)]
    if rows:
        session.execute(_insert(session)(Watermark).values(rows).on_conflict_do_nothing(index_elements=["name"]))


def claim(session: Session, experiment_id: int, now: datetime, *, wait: bool) -> Marks | None:
    """Lock the experiment's watermark rows (see :func:`ensure_marks`) for this transaction; None
    when another worker holds them and ``wait`` is false."""
    names = _names(experiment_id)
    if _dialect(session) != "postgresql":
        # take SQLite's write lock first, so a second roll-up waits here rather than failing later
        session.execute(sa.update(Watermark).where(Watermark.name.in_(names)).values(updated_at=now))
    query = sa.select(Watermark.name, Watermark.last_id).where(Watermark.name.in_(names))
    rows = dict(session.execute(query.with_for_update(skip_locked=not wait)).all())
    if len(rows) < 2:
        return None
    return Marks(int(rows[names[0]]), int(rows[names[1]]))


def set_marks(session: Session, experiment_id: int, marks: Marks, now: datetime) -> None:
    for name, value in zip(_names(experiment_id), (marks.predictions, marks.outcomes)):
        session.execute(sa.update(Watermark).where(Watermark.name == name).values(last_id=value, updated_at=now))


def experiments(session: Session) -> list[tuple[int, str, dict[str, Any]]]:
    """(id, mode, definition) of every experiment, oldest first."""
    return [(i, m, d) for i, m, d in session.execute(
        sa.select(Experiment.id, Experiment.mode, Experiment.definition).order_by(Experiment.id))]


def pending(session: Session, experiment_id: int, marks: Marks, upto: tuple[int, int]) -> bool:
    """Are there predictions of the experiment, or outcomes at all, past its watermarks?"""
    if marks.outcomes < upto[1] and marks.predictions > 0:
        return True
    return session.scalar(sa.select(sa.exists().where(
        Prediction.experiment_id == experiment_id, Prediction.id > marks.predictions, Prediction.id <= upto[0]))) or False


def batch_end(session: Session, experiment_id: int, after: int, upto: int, ids: int) -> int:
    """The end of a batch: at most ``ids`` prediction ids from the experiment's first id past
    ``after`` (so an experiment far behind the newest ids does not walk empty ranges)."""
    first = session.scalar(sa.select(sa.func.min(Prediction.id)).where(
        Prediction.experiment_id == experiment_id, Prediction.id > after, Prediction.id <= upto))
    return upto if first is None else min(upto, int(first) - 1 + ids)


# -- set-based aggregates ---------------------------------------------------------------------------

def _hour(dialect: str, column: str) -> str:
    if dialect == "postgresql":
        return f"date_trunc('hour', {column} AT TIME ZONE 'UTC')"
    return f"strftime('%Y-%m-%d %H:00:00', {column})"


def _label_text(dialect: str, value: str) -> str:
    """The label an outcome value stands for: '1' for 1.0 (an integer's digits), else the float's text."""
    integer = "BIGINT" if dialect == "postgresql" else "INTEGER"
    return (f"CASE WHEN {value} = floor({value}) THEN CAST(CAST({value} AS {integer}) AS TEXT) "
            f"ELSE CAST({value} AS TEXT) END")


def _in_range(expr: str) -> str:
    return f"abs({expr}) <= :max_abs"


def _row_ok(p: str, dialect: str) -> str:
    """The row's numbers can be summed.  They are >= 0 (a check constraint), so one comparison of the
    largest does (NaN is larger than every number on Postgres; SQLite stores NaN as NULL)."""
    largest = "greatest" if dialect == "postgresql" else "max"
    return f"coalesce({largest}({p}.latency_ms, {p}.inference_ms, {p}.cost) <= :max_abs, false)"


def _pair_ok(p: str, o: str) -> str:
    return f"({_in_range(f'{o}.value')} AND ({p}.prediction IS NULL OR {_in_range(f'{p}.prediction')}))"


_ONE, _ZERO = "CAST(1 AS DOUBLE PRECISION)", "CAST(0 AS DOUBLE PRECISION)"  # float8, not numeric, on Postgres


def quality_sql(dialect: str, kind: str, p: str = "p", o: str = "o") -> str:
    """The per-request quality value the metric defines (NULL when it has none, or when a value is
    out of range): the SQL twin of ``service.analytics.rollup.quality_value``."""
    if kind == "outcome":
        value = f"{o}.value"
    elif kind == "accuracy":
        value = (f"CASE WHEN {p}.prediction IS NOT NULL THEN CASE WHEN {p}.prediction = {o}.value THEN {_ONE} ELSE {_ZERO} END "
                 f"WHEN {p}.label IS NOT NULL THEN CASE WHEN {p}.label = {_label_text(dialect, f'{o}.value')} "
                 f"THEN {_ONE} ELSE {_ZERO} END END")
    elif kind == "absolute_error":
        value = f"abs({p}.prediction - {o}.value)"
    elif kind == "squared_error":
        value = f"({p}.prediction - {o}.value) * ({p}.prediction - {o}.value)"
    else:
        raise ValueError(f"unknown quality kind {kind!r}")
    return f"(CASE WHEN {_pair_ok(p, o)} THEN {value} END)"


@dataclass(frozen=True)
class Window:
    """One roll-up transaction's id ranges for one experiment."""

    experiment_id: int
    old: Marks
    new: Marks


@dataclass(frozen=True)
class PredictionAggregate:
    """New predictions of one bucket, with the quality of those whose outcome is already in."""

    phase: int
    arm: str
    hour: datetime
    rows: int
    predictions: int
    served: int
    fallbacks: int
    cache_hits: int
    latency_slow: int
    latency_sum: float
    latency_sum_sq: float
    inference_sum: float
    inference_sum_sq: float
    cost_sum: float
    cost_sum_sq: float
    outcomes: int
    quality_sum: float
    quality_sum_sq: float
    skipped: int
    reference_n: int = 0          # shadow challenger rows carrying the champion's cost timed beside them
    reference_sum: float = 0.0
    reference_sum_sq: float = 0.0


@dataclass(frozen=True)
class QualityAggregate:
    """Outcome pairs (or shadow pairs) counted in one bucket."""

    phase: int
    arm: str
    hour: datetime
    rows: int
    n: int
    total: float
    total_sq: float
    skipped: int


def _when(cond: str, value: str = "1") -> str:
    return f"CASE WHEN {cond} THEN {value} ELSE 0 END"


def new_predictions(session: Session, w: Window, kind: str, slo_ms: float | None, log_gamma: float,
                    min_value: float) -> tuple[list[PredictionAggregate], list[SketchBin]]:
    """Predictions in (old, new] per bucket, joined to outcomes at or below the new outcome watermark,
    and their latency sketch's log buckets, in one pass over the rows: the first GROUP BY is per
    (bucket, log bucket); buckets are then summed from those few groups.  A log bucket is
    ceil(ln(latency) / ln(gamma)) as in analysis.sketch (NULL: the zero bucket, or a skipped row)."""
    d = _dialect(session)
    integer = "BIGINT" if d == "postgresql" else "INTEGER"
    ok = "r.ok = 1"
    sql = f"""
        WITH r AS (
            SELECT p.phase, p.arm, {_hour(d, 'p.created_at')} AS hour, {_when(_row_ok('p', d))} AS ok,
                   p.served, p.fallback_reason, p.cache_hit, p.latency_ms, p.inference_ms, p.cost,
                   CASE WHEN p.reference_cost IS NOT NULL AND p.reference_cost <= :max_abs THEN p.reference_cost END AS ref,
                   {quality_sql(d, kind)} AS q, {_when(f'o.id IS NOT NULL AND NOT {_pair_ok("p", "o")}')} AS bad
            FROM predictions p LEFT JOIN outcomes o ON o.request_id = p.request_id AND o.id <= :o_new
            WHERE p.experiment_id = :e AND p.id > :p_old AND p.id <= :p_new AND p.in_experiment),
        fine AS (
            SELECT phase, arm, hour, ok,
                   CASE WHEN ok = 1 AND latency_ms > :min_value THEN CAST(ceil(ln(latency_ms) / :log_gamma) AS {integer}) END AS bin,
                   count(*) AS n, sum({_when('served')}) AS served, sum({_when('fallback_reason IS NOT NULL')}) AS fallbacks,
                   sum({_when('cache_hit')}) AS cache_hits, sum({_when('latency_ms > :slo')}) AS slow,
                   sum({_when(ok, 'latency_ms')}) AS l1, sum({_when(ok, 'latency_ms * latency_ms')}) AS l2,
                   sum({_when(ok, 'inference_ms')}) AS i1, sum({_when(ok, 'inference_ms * inference_ms')}) AS i2,
                   sum({_when(ok, 'cost')}) AS c1, sum({_when(ok, 'cost * cost')}) AS c2,
                   sum({_when('q IS NOT NULL')}) AS qn, sum({_when('q IS NOT NULL', 'q')}) AS q1,
                   sum({_when('q IS NOT NULL', 'q * q')}) AS q2, sum(bad) AS bad,
                   sum({_when('ref IS NOT NULL')}) AS rn, sum({_when('ref IS NOT NULL', 'ref')}) AS r1,
                   sum({_when('ref IS NOT NULL', 'ref * ref')}) AS r2
            FROM r GROUP BY phase, arm, hour, ok, bin)
        SELECT phase, arm, hour, NULL, sum(n), sum({_when('ok = 1', 'n')}),
               sum({_when('ok = 1', 'served')}), sum({_when('ok = 1', 'fallbacks')}), sum({_when('ok = 1', 'cache_hits')}),
               sum({_when('ok = 1', 'slow')}), sum(l1), sum(l2), sum(i1), sum(i2), sum(c1), sum(c2),
               sum({_when('ok = 1', 'qn')}), sum({_when('ok = 1', 'q1')}), sum({_when('ok = 1', 'q2')}),
               sum({_when('ok = 0', 'n')}) + sum({_when('ok = 1', 'bad')}),
               sum({_when('ok = 1', 'rn')}), sum({_when('ok = 1', 'r1')}), sum({_when('ok = 1', 'r2')}), 0
        FROM fine GROUP BY phase, arm, hour
        UNION ALL
        SELECT phase, arm, hour, bin, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL, NULL, NULL, NULL, n
        FROM fine WHERE ok = 1"""
    params = {"e": w.experiment_id, "p_old": w.old.predictions, "p_new": w.new.predictions, "o_new": w.new.outcomes,
              "slo": slo_ms, "max_abs": MAX_ABS, "log_gamma": log_gamma, "min_value": min_value}
    buckets, bins = [], []
    for row in session.execute(sa.text(sql), params):
        phase, arm, hour, index, *numbers = row
        if numbers[0] is None:
            bins.append(SketchBin(int(phase), arm, _utc_hour(hour), None if index is None else int(index), int(numbers[-1])))
            continue
        ints, floats = numbers[:6], numbers[6:12]
        buckets.append(PredictionAggregate(
            int(phase), arm, _utc_hour(hour), *(int(x or 0) for x in ints), *(float(x or 0.0) for x in floats),
            int(numbers[12] or 0), float(numbers[13] or 0.0), float(numbers[14] or 0.0), int(numbers[15] or 0),
            int(numbers[16] or 0), float(numbers[17] or 0.0), float(numbers[18] or 0.0)))
    return buckets, bins


@dataclass(frozen=True)
class SketchBin:
    """How many of a bucket's new latencies fall in one log bucket (index None: the zero bucket)."""

    phase: int
    arm: str
    hour: datetime
    index: int | None
    count: int


def late_outcomes(session: Session, w: Window, kind: str) -> list[QualityAggregate]:
    """Outcomes in (old, new] whose predictions were counted in an earlier run (id <= old), per bucket."""
    if w.old.predictions == 0 or w.new.outcomes <= w.old.outcomes:
        return []
    d = _dialect(session)
    sql = f"""
        WITH r AS (
            SELECT p.phase, p.arm, {_hour(d, 'p.created_at')} AS hour, {_when(_row_ok('p', d))} AS ok,
                   {quality_sql(d, kind)} AS q, {_when(f'NOT {_pair_ok("p", "o")}')} AS bad
            FROM outcomes o JOIN predictions p ON p.request_id = o.request_id
            WHERE o.id > :o_old AND o.id <= :o_new AND p.experiment_id = :e AND p.id <= :p_old AND p.in_experiment)
        SELECT phase, arm, hour, count(*), sum({_when('ok = 1 AND q IS NOT NULL')}),
               sum({_when('ok = 1 AND q IS NOT NULL', 'q')}), sum({_when('ok = 1 AND q IS NOT NULL', 'q * q')}),
               sum({_when('ok = 1 AND bad = 1')})
        FROM r GROUP BY phase, arm, hour"""
    params = {"e": w.experiment_id, "p_old": w.old.predictions, "o_old": w.old.outcomes, "o_new": w.new.outcomes,
              "max_abs": MAX_ABS}
    return [_quality(row) for row in session.execute(sa.text(sql), params)]


def paired_differences(session: Session, w: Window, kind: str) -> list[QualityAggregate]:
    """Shadow experiments: challenger-minus-champion quality per request, in the challenger's bucket,
    for requests whose last piece (either prediction row or the outcome) falls in this window."""
    d = _dialect(session)
    qa, qb = quality_sql(d, kind, "ch", "o"), quality_sql(d, kind, "cp", "o")
    sql = f"""
        WITH touched AS (
            SELECT request_id FROM predictions
            WHERE experiment_id = :e AND id > :p_old AND id <= :p_new AND in_experiment
            UNION SELECT request_id FROM outcomes WHERE id > :o_old AND id <= :o_new),
        r AS (
            SELECT ch.phase, {_hour(d, 'ch.created_at')} AS hour, {qa} - {qb} AS diff
            FROM touched t
            JOIN predictions ch ON ch.request_id = t.request_id AND ch.experiment_id = :e AND ch.arm = 'challenger'
                 AND ch.in_experiment AND ch.id <= :p_new
            JOIN predictions cp ON cp.request_id = t.request_id AND cp.experiment_id = :e AND cp.arm = 'champion'
                 AND cp.in_experiment AND cp.id <= :p_new
            JOIN outcomes o ON o.request_id = t.request_id AND o.id <= :o_new
            WHERE NOT (ch.id <= :p_old AND cp.id <= :p_old AND o.id <= :o_old)
              AND {_row_ok('ch', d)} AND {_row_ok('cp', d)})
        SELECT phase, 'challenger', hour, count(*), count(diff), sum(diff), sum(diff * diff), 0
        FROM r WHERE diff IS NOT NULL GROUP BY phase, hour"""
    params = {"e": w.experiment_id, "p_old": w.old.predictions, "p_new": w.new.predictions,
              "o_old": w.old.outcomes, "o_new": w.new.outcomes, "max_abs": MAX_ABS}
    return [_quality(row) for row in session.execute(sa.text(sql), params)]


def _quality(row) -> QualityAggregate:
    phase, arm, hour, rows, n, total, total_sq, skipped = row
    return QualityAggregate(int(phase), arm, _utc_hour(hour), int(rows or 0), int(n or 0), float(total or 0.0),
                            float(total_sq or 0.0), int(skipped or 0))


def _utc_hour(value: datetime | str) -> datetime:
    """A bucket's hour as a naive UTC datetime (Postgres gives a timestamp, SQLite text)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


@dataclass(frozen=True)
class NewExposures:
    """What one window added to ``exposures``: new units per (phase, arm), and per phase the units
    that now have rows in both arms and did not before."""

    units: dict[tuple[int, str], int]
    both_arms: dict[int, int]


_FRESH = "frugal_fresh_exposures"


def add_exposures(session: Session, experiment_id: int, after: int, upto: int, now: datetime) -> NewExposures:
    """Record each distinct (phase, unit, arm) the experiment served in (after, upto] that is not yet
    recorded, and count them (the phase totals keep the counts, so analysis never counts units).
    The new rows go through a temporary table, so the rows are read once."""
    session.execute(sa.text(f"CREATE TEMP TABLE IF NOT EXISTS {_FRESH} "
                            "(experiment_id INTEGER, phase INTEGER, unit_id VARCHAR(256), arm VARCHAR(10))"))
    session.execute(sa.text(f"DELETE FROM {_FRESH}"))
    session.execute(sa.text(f"""
        INSERT INTO {_FRESH} (experiment_id, phase, unit_id, arm)
        SELECT DISTINCT p.experiment_id, p.phase, p.unit_id, p.arm FROM predictions p
        WHERE p.experiment_id = :e AND p.id > :after AND p.id <= :upto AND p.in_experiment AND p.served
          AND NOT EXISTS (SELECT 1 FROM exposures x WHERE x.experiment_id = p.experiment_id AND x.phase = p.phase
                          AND x.unit_id = p.unit_id AND x.arm = p.arm)"""), {"e": experiment_id, "after": after, "upto": upto})
    session.execute(sa.text(  # in key order: the index grows at its right edge
        f"INSERT INTO exposures (experiment_id, phase, unit_id, arm, first_seen_at) "
        f"SELECT experiment_id, phase, unit_id, arm, :now FROM {_FRESH} WHERE true ORDER BY unit_id, arm "
        f"ON CONFLICT DO NOTHING").bindparams(sa.bindparam("now", type_=Exposure.first_seen_at.type)), {"now": now})
    units = {(int(p), a): int(n) for p, a, n in session.execute(sa.text(
        f"SELECT phase, arm, count(*) FROM {_FRESH} GROUP BY phase, arm"))}
    both = {int(p): int(n) for p, n in session.execute(sa.text(f"""
        SELECT f.phase, count(DISTINCT f.unit_id) FROM {_FRESH} f
        JOIN exposures x ON x.experiment_id = f.experiment_id AND x.phase = f.phase AND x.unit_id = f.unit_id AND x.arm <> f.arm
        GROUP BY f.phase"""))}
    session.execute(sa.text(f"DELETE FROM {_FRESH}"))
    return NewExposures(units, both)


# -- buckets and phase totals -----------------------------------------------------------------------

BucketKey = tuple[int, str, datetime]  # (phase, arm, naive UTC hour)


def _stored_hour(session: Session, hour: datetime) -> datetime:
    return hour.replace(tzinfo=timezone.utc) if _dialect(session) == "postgresql" else hour


def load_buckets(session: Session, experiment_id: int, keys: Iterable[BucketKey]) -> dict[BucketKey, dict[str, Any]]:
    """Stored statistics of the experiment's buckets among ``keys``."""
    keys = set(keys)
    if not keys:
        return {}
    hours = [k[2] for k in keys]
    rows = session.execute(sa.select(Rollup.phase, Rollup.arm, Rollup.bucket_start, Rollup.stats).where(
        Rollup.experiment_id == experiment_id,
        Rollup.bucket_start.between(_stored_hour(session, min(hours)), _stored_hour(session, max(hours)))))
    found = {(phase, arm, _utc_hour(start)): stats for phase, arm, start, stats in rows}
    return {k: v for k, v in found.items() if k in keys}


def upsert_buckets(session: Session, experiment_id: int, buckets: dict[BucketKey, dict[str, Any]], now: datetime) -> None:
    if not buckets:
        return
    insert = _insert(session)(Rollup)
    statement = insert.on_conflict_do_update(
        index_elements=["experiment_id", "phase", "arm", "bucket_start"],
        set_={"stats": insert.excluded.stats, "updated_at": insert.excluded.updated_at})
    session.execute(statement, [{"experiment_id": experiment_id, "phase": k[0], "arm": k[1],
                                 "bucket_start": _stored_hour(session, k[2]), "stats": stats, "updated_at": now}
                                for k, stats in buckets.items()])


def load_totals(session: Session, experiment_id: int, phase: int | None = None) -> dict[tuple[int, str], dict[str, Any]]:
    """Phase totals, per (phase, arm): every bucket of the phase merged."""
    query = sa.select(RollupTotal.phase, RollupTotal.arm, RollupTotal.stats).where(RollupTotal.experiment_id == experiment_id)
    if phase is not None:
        query = query.where(RollupTotal.phase == phase)
    return {(p, a): stats for p, a, stats in session.execute(query)}


def upsert_totals(session: Session, experiment_id: int, totals: dict[tuple[int, str], dict[str, Any]], now: datetime) -> None:
    if not totals:
        return
    insert = _insert(session)(RollupTotal)
    statement = insert.on_conflict_do_update(
        index_elements=["experiment_id", "phase", "arm"],
        set_={"stats": insert.excluded.stats, "updated_at": insert.excluded.updated_at})
    session.execute(statement, [{"experiment_id": experiment_id, "phase": k[0], "arm": k[1], "stats": stats,
                                 "updated_at": now} for k, stats in totals.items()])


def save_bucket(session: Session, existing: Rollup | None, key: tuple, stats: dict[str, Any], now: datetime) -> None:
    """Write one bucket's full statistics and recompute its phase total from the phase's buckets
    (seeding and repair; the roll-up itself merges deltas with :func:`upsert_buckets`)."""
    from service.analytics.rollup import empty_stats, merge_stats

    experiment_id, phase, arm, start = key
    upsert_buckets(session, experiment_id, {(phase, arm, _utc_hour(start)): stats}, now)
    total = empty_stats()
    for row in session.scalars(sa.select(Rollup.stats).where(
            Rollup.experiment_id == experiment_id, Rollup.phase == phase, Rollup.arm == arm)):
        total = merge_stats(total, row)
    upsert_totals(session, experiment_id, {(phase, arm): total}, now)


def exposure_totals(session: Session, experiment_id: int, phase: int) -> tuple[dict[str, int], int]:
    """Units per arm and units in both arms of a phase, counted from ``exposures`` (to start a phase
    total; after that the roll-up adds what each window recorded)."""
    return exposure_counts(session, experiment_id, phase), crossover_units(session, experiment_id, phase)


def buckets_for(session: Session, experiment_id: int, phase: int | None = None) -> list[Rollup]:
    query = sa.select(Rollup).where(Rollup.experiment_id == experiment_id)
    if phase is not None:
        query = query.where(Rollup.phase == phase)
    return list(session.scalars(query.order_by(Rollup.bucket_start, Rollup.arm)))


def exposure_counts(session: Session, experiment_id: int, phase: int) -> dict[str, int]:
    rows = session.execute(sa.select(Exposure.arm, sa.func.count()).where(
        Exposure.experiment_id == experiment_id, Exposure.phase == phase).group_by(Exposure.arm))
    return {arm: int(n) for arm, n in rows}


def crossover_units(session: Session, experiment_id: int, phase: int) -> int:
    sub = (sa.select(Exposure.unit_id).where(Exposure.experiment_id == experiment_id, Exposure.phase == phase)
           .group_by(Exposure.unit_id).having(sa.func.count() > 1).subquery())
    return int(session.scalar(sa.select(sa.func.count()).select_from(sub)) or 0)
