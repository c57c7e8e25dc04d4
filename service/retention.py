"""Retention: delete raw event rows once they are old and folded into roll-ups.

At 1,000 predictions a second the ``predictions`` table grows by about 40 GB a day
(docs/architecture.md), while analyses and reports read only roll-ups.  So a daily task deletes
predictions older than ``FRUGAL_RETENTION_DAYS`` whose ids their experiment's roll-up has already read
(an unread row is never deleted, however old), then outcomes that old whose prediction is gone
(nothing can join them any more), in batches of ``FRUGAL_RETENTION_BATCH`` rows, one short
transaction each, so it never holds long locks or a long transaction against the event writer.

Kept whatever their age, because analyses and audits need them: roll-ups (every analysis is
recomputed from them), analyses with their input snapshots, the experiments' audit log
(``experiment_events``), reports, exposures (units per arm), models, keys.  ``FRUGAL_RETENTION_DAYS=0``
keeps everything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from service.store import retention as retention_store
from service.store.database import Database

log = logging.getLogger("frugal.retention")


@dataclass(frozen=True)
class RetentionResult:
    cutoff: datetime | None
    predictions_deleted: int
    outcomes_deleted: int
    batches: int


def run_retention(db: Database, *, days: float, batch: int, now: datetime | None = None,
                  max_batches: int = 10_000) -> RetentionResult:
    """Delete predictions and outcomes older than ``days`` that the roll-up has read."""
    if days <= 0:
        return RetentionResult(None, 0, 0, 0)
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    with db.unit_of_work() as session:
        read_upto = retention_store.prediction_watermarks(session)   # per experiment (set-based roll-ups)
    deleted = {"predictions": 0, "outcomes": 0}
    batches = 0

    def drain(name: str, delete) -> None:
        nonlocal batches
        while batches < max_batches:
            with db.unit_of_work() as session:
                n = delete(session)
            batches += 1
            deleted[name] += n
            if n < batch:
                return

    for experiment_id, upto in sorted(read_upto.items()):
        drain("predictions", lambda session, e=experiment_id, u=upto: retention_store.delete_predictions(
            session, experiment_id=e, before=cutoff, upto_id=u, limit=batch))
    drain("outcomes", lambda session: retention_store.delete_orphan_outcomes(session, before=cutoff, limit=batch))
    if deleted["predictions"] or deleted["outcomes"]:
        log.info("retention: deleted %d predictions and %d outcomes older than %s (rolled up)",
                 deleted["predictions"], deleted["outcomes"], cutoff.isoformat(timespec="seconds"))
    return RetentionResult(cutoff, deleted["predictions"], deleted["outcomes"], batches)
