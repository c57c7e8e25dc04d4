"""Act on an analysis, only where the experiment allows it; otherwise it stays a recommendation.

- PROMOTE + ``automation.promote``: the challenger policy serves everyone; the experiment concludes.
- REJECT (a harm bound crossed) + ``automation.rollback``: the champion serves everyone.
- FUTILE + ``automation.futile`` = ``stop`` (the champion serves, the experiment ends unpromoted) or
  ``rollback``; ``none`` leaves it a recommendation.
- ``automation.ramp``: move to the next coverage step once the current step has run for its minimum
  duration and sample and no alarm is raised.
Each action is an audit event citing the analysis that justified it.  Actions are guarded by the
state they expect, so the task runs them every time (a worker killed after storing the analysis
left its action undone; the rerun does it) and a redelivered task cannot apply one twice.  Only the
experiment's latest analysis acts: a stale redelivery never overrides a newer decision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from service import experiments
from service.errors import Conflict
from service.store import analyses as analysis_store
from service.store import experiments as experiment_store
from service.store.analyses import AnalysisRecord
from service.store.database import Database

log = logging.getLogger("frugal.actions")
ACTOR = "worker"


@dataclass(frozen=True)
class ActionTaken:
    kind: str
    detail: str


def act(db: Database, analysis: AnalysisRecord) -> list[ActionTaken]:
    record = experiments.get(db, analysis.experiment_id)
    if record.state != "running" or analysis.phase != record.current_phase:
        return []
    with db.unit_of_work() as session:
        newest = analysis_store.latest(session, record.id)
    if newest is not None and newest.id != analysis.id:
        return []
    automation = record.definition.get("automation") or {}
    taken: list[ActionTaken] = []
    why = f"analysis {analysis.id}: {analysis.decision}. {analysis.explanation}"
    try:
        if analysis.decision == "PROMOTE" and automation.get("promote"):
            experiments.transition(db, str(record.id), "promote", actor=ACTOR, reason=why, analysis_id=analysis.id,
                                   expected_state="running")
            taken.append(ActionTaken("promote", why))
        elif analysis.decision == "REJECT" and automation.get("rollback"):
            experiments.transition(db, str(record.id), "rollback", actor=ACTOR, reason=why, analysis_id=analysis.id,
                                   expected_state="running")
            taken.append(ActionTaken("rollback", why))
        elif analysis.decision == "FUTILE" and automation.get("futile", "none") in ("stop", "rollback"):
            action = automation["futile"]
            experiments.transition(db, str(record.id), action, actor=ACTOR, reason=why, analysis_id=analysis.id,
                                   expected_state="running")
            taken.append(ActionTaken(action, why))
        elif automation.get("ramp") and analysis.decision in ("CONTINUE", "PROMOTE") and _step_done(db, record, analysis):
            experiments.advance_ramp(db, str(record.id), actor=ACTOR, analysis_id=analysis.id, expected_step=record.ramp_step,
                                     reason=f"ramp step {record.ramp_step} held its guardrails for its minimum duration and sample ({why})")
            taken.append(ActionTaken("ramp", f"step {record.ramp_step + 1}"))
    except Conflict as exc:  # someone (or a redelivered task) acted first
        log.info("action skipped for experiment %s: %s", record.name, exc.detail)
    return taken


def _step_done(db: Database, record, analysis: AnalysisRecord) -> bool:
    steps = record.definition.get("ramp") or []
    if record.ramp_step + 1 >= len(steps):
        return False
    step = steps[record.ramp_step]
    components = (analysis.results or {}).get("components") or {}
    if any(c.get("status") in ("harm", "srm", "missing_outcomes") for c in components.values() if isinstance(c, dict)):
        return False
    with db.unit_of_work() as session:
        events, _ = experiment_store.events(session, record.id, limit=1000, offset=0)
    started = max([e.at for e in events if e.kind in ("start", "ramp", "new_phase", "resume")] or [record.created_at])
    if started.tzinfo is None:
        started = started.replace(tzinfo=timezone.utc)
    elapsed = (datetime.now(timezone.utc) - started).total_seconds()
    totals = ((analysis.inputs or {}).get("snapshot") or {}).get("totals") or {}
    sample = min(int((totals.get(arm) or {}).get("predictions", 0)) for arm in ("champion", "challenger")) if totals else 0
    return elapsed >= step.get("min_duration_s", 0) and sample >= step.get("min_sample", 0)
