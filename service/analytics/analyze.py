"""The analysis use case: read roll-ups (never raw events), call ``analysis.decide``, store the result.

One analysis per (experiment, slot): a scheduled run uses the slot of its beat tick, an on-demand
run the id of its task, so a redelivered task finds its analysis already stored and stops.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from analysis.decision import ArmData, DecisionConfig, ExperimentData, decide
from analysis.sketch import LatencySketch
from analysis.sufficient import Moments
from service.errors import NotFound
from service.store.shadow import DropReason, dropped
from service.store import analyses as analysis_store
from service.store import experiments as experiment_store
from service.store import rollups as rollup_store
from service.store.analyses import AnalysisRecord
from service.store.database import Database
from service.store.experiments import ExperimentRecord


@dataclass(frozen=True)
class ArmTotals:
    stats: dict[str, Any]

    def moments(self, name: str) -> Moments:
        m = self.stats[name]
        return Moments(int(m["n"]), float(m["sum"]), max(float(m["sum_sq"]), 0.0))


def phase_totals(session, experiment_id: int, phase: int) -> dict[str, dict[str, Any]]:
    """Sum of every bucket of this phase, per arm: read pre-merged (the roll-up keeps the phase
    totals), so a look reads two rows however long the experiment has run."""
    from service.analytics.rollup import empty_stats

    stored = rollup_store.load_totals(session, experiment_id, phase)
    totals = {}
    for arm in ("champion", "challenger"):
        total = stored.get((phase, arm), {})
        totals[arm] = {**empty_stats(), **total} if total else empty_stats()  # stored whole by the roll-up
    return totals


FAILURE_DEFAULT = DecisionConfig().failure_max_share


def decision_config(definition: dict[str, Any]) -> DecisionConfig:
    metric, design, guard = definition["metric"], definition["design"], definition.get("guardrails") or {}
    slo = guard.get("latency")
    return DecisionConfig(
        metric_kind=metric["kind"], higher_is_better=metric["higher_is_better"], margin=metric["margin"],
        margin_type=metric["margin_type"], alpha=design["alpha"], power=design["power"],
        planned_n_per_arm=design["planned_n_per_arm"], method=design["method"],
        latency_threshold_ms=slo["threshold_ms"] if slo else None, latency_max_share=slo["max_share"] if slo else None,
        cost_must_be_lower=guard.get("cost_must_be_lower", True),
        # a definition stored before the failure guardrail existed gets the default one
        failure_max_share=(guard["failures"] or {}).get("max_share") if "failures" in guard else FAILURE_DEFAULT,
    )


def _arm(totals: dict[str, Any], exposures: int) -> ArmData:
    t = ArmTotals(totals)
    sketch = LatencySketch.from_dict(totals["latency_sketch"]) if totals.get("latency_sketch") else None
    return ArmData(exposures=exposures, predictions=int(totals["predictions"]), outcomes=int(totals["quality"]["n"]),
                   quality=t.moments("quality"), latency=sketch, latency_n=int(totals["latency"]["n"]),
                   latency_slow=int(totals["latency_slow"]), cost=t.moments("cost"),
                   fallbacks=int(totals.get("fallbacks", 0)))


def experiment_data(session, record: ExperimentRecord, looks: tuple[float, ...]) -> tuple[ExperimentData, dict[str, Any]]:
    totals = phase_totals(session, record.id, record.current_phase)
    if record.mode == "ab" and all("exposures" in totals[arm] for arm in ("champion", "challenger")):
        # kept by the roll-up in the phase totals: a look never counts units
        exposures = {arm: totals[arm]["exposures"] for arm in ("champion", "challenger")}
        crossover = totals["champion"]["units_in_both_arms"]
    elif record.mode == "ab":  # totals written without unit counts (seeded by hand): count them
        units = rollup_store.exposure_counts(session, record.id, record.current_phase)
        exposures = {arm: units.get(arm, 0) for arm in ("champion", "challenger")}
        crossover = rollup_store.crossover_units(session, record.id, record.current_phase)
    else:
        exposures = {arm: int(totals[arm]["predictions"]) for arm in ("champion", "challenger")}
        crossover = 0
    weights = tuple(w / 10_000 for w in record.phase.weights_bp)
    paired = ArmTotals(totals["challenger"]).moments("paired") if record.mode == "shadow" else None
    reference = ArmTotals(totals["challenger"]).moments("reference_cost") if record.mode == "shadow" else None
    data = ExperimentData(mode=record.mode, champion=_arm(totals["champion"], exposures["champion"]),
                          challenger=_arm(totals["challenger"], exposures["challenger"]), paired_quality=paired,
                          expected_weights=weights if record.mode == "ab" else (1.0, 1.0),
                          units_in_both_arms=crossover, looks=looks, reference_cost=reference)
    snapshot = {"phase": record.current_phase, "totals": totals, "exposures": exposures, "crossover_units": crossover,
                "expected_weights": list(data.expected_weights), "looks": list(looks)}
    return data, snapshot


def information_fraction(result: dict[str, Any], planned: int) -> float | None:
    n = (result.get("inputs") or {}).get("information_n")
    return None if n is None else min(float(n) / planned, 1.0)


def _queue_webhook(session, record: ExperimentRecord, stored: AnalysisRecord, previous: list[AnalysisRecord],
                   public_url: str) -> None:
    """When the decision changed, the webhook goes in the outbox in the analysis's own transaction."""
    from service.analytics.webhooks import decision_message
    from service.store import outbox

    url = record.definition.get("webhook_url")
    before = previous[-1].decision if previous else None
    if not url or before == stored.decision:
        return
    message = decision_message({"id": record.id, "name": record.name}, stored, before, public_url)
    outbox.add(session, analysis_id=stored.id, experiment_id=record.id, url=str(url), message=message,
               now=stored.created_at)


def analyze(db: Database, experiment_ref: str | int, slot: str, *,
            public_url: str = "http://127.0.0.1:8000") -> tuple[AnalysisRecord, bool]:
    """Analyse the experiment's current phase for ``slot``; returns (analysis, created now?)."""
    now = datetime.now(timezone.utc)
    with db.unit_of_work() as session:
        record = experiment_store.get(session, experiment_id=int(experiment_ref)) if str(experiment_ref).isdigit() \
            else experiment_store.get(session, name=str(experiment_ref))
        if record is None:
            raise NotFound(f"no experiment {experiment_ref!r}")
        existing = analysis_store.by_slot(session, record.id, slot)
        if existing is not None:
            return existing, False
        previous = analysis_store.history(session, record.id, record.current_phase)
        looks = tuple(p.parameters.get("information_fraction") for p in previous if p.parameters.get("information_fraction") is not None)
        config = decision_config(record.definition)
        data, snapshot = experiment_data(session, record, looks)
        drops = dropped(session, record.id, record.current_phase) if record.mode == "shadow" else {}
        if drops.get(DropReason.FAILED):
            # a shadow challenger that failed on a sampled request is a failure for the guardrail too
            failed = drops[DropReason.FAILED]
            challenger = replace(data.challenger, predictions=data.challenger.predictions + failed,
                                 fallbacks=data.challenger.fallbacks + failed)
            data = replace(data, challenger=challenger)
        decision = decide(data, config)
        result = decision.to_dict()
        if record.mode == "shadow":
            result = _with_shadow_drops(result, drops)
        fraction = ((result.get("components") or {}).get("quality") or {}).get("information_fraction") or 0.0
        parameters = {**result.get("parameters", {}), "information_fraction": fraction}
        inputs = {"snapshot": snapshot, "decision_inputs": result.get("inputs", {})}
        digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
        stored = analysis_store.insert(
            session, experiment_id=record.id, phase=record.current_phase, slot=slot, inputs_digest=digest,
            method=result.get("method", config.method), parameters=_jsonable(parameters), inputs=_jsonable(inputs),
            results=_jsonable(result), decision=result["decision"], explanation=result.get("explanation", ""), created_at=now)
        _queue_webhook(session, record, stored, previous, public_url)
        return stored, True


def _with_shadow_drops(result: dict[str, Any], drops: dict[DropReason, int]) -> dict[str, Any]:
    """Shadow samples of this phase the challenger never scored (service/scorer.py), stated with the decision."""
    expired, failed = drops.get(DropReason.EXPIRED, 0), drops.get(DropReason.FAILED, 0)
    result = {**result, "shadow": {"dropped": expired + failed, "expired": expired, "failed": failed}}
    if expired + failed:
        result["explanation"] = (f"{result.get('explanation', '')} {expired + failed:,} shadow samples dropped, not scored "
                                 f"by the challenger ({expired:,} waited longer than the backlog bound, {failed:,} "
                                 "challenger failures).").strip()
    return result


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, float):
        return None
    return str(value)


def latest(db: Database, experiment_ref: str) -> AnalysisRecord:
    from service.experiments import resolve

    with db.unit_of_work() as session:
        record = resolve(session, experiment_ref)
        found = analysis_store.latest(session, record.id)
    if found is None:
        raise NotFound(f"experiment {record.name} has not been analysed yet: POST /v1/experiments/{record.id}/analyze")
    return found


def page(db: Database, experiment_ref: str, *, limit: int, offset: int) -> tuple[list[AnalysisRecord], int]:
    from service.experiments import resolve

    with db.unit_of_work() as session:
        record = resolve(session, experiment_ref)
        return analysis_store.page(session, record.id, limit=limit, offset=offset)
