"""Sample size and duration planning for the API (``POST /v1/plan``) and the CLI (``frugal plan``).

The numbers come from :func:`analysis.planning.plan`, per method, paired or not.  Inputs are given,
or read from an experiment: its metric, margin, alpha, power and guardrails from the definition, and
the champion's observed quality, the models' observed agreement (shadow) and the observed traffic
from its roll-ups in the current phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from analysis.planning import plan, unit_variance
from service.errors import ValidationFailed, field_error
from service.store.database import Database

Method = Literal["asymptotic_cs", "msprt", "gsd_obf", "gsd_pocock", "fixed"]
ALL_METHODS: tuple[str, ...] = ("asymptotic_cs", "msprt", "gsd_obf", "gsd_pocock", "fixed")


class PlanRequest(BaseModel):
    """What to plan for.  With ``experiment``, every field left out is read from it."""

    model_config = ConfigDict(extra="forbid")

    experiment: str | None = Field(default=None, description="id or name: read the definition and observed data")
    methods: list[Method] | None = Field(default=None, description="default: every method")
    kind: Literal["binary", "continuous"] | None = None
    paired: bool | None = Field(default=None, description="shadow mode: both models score every request")
    baseline: float | None = Field(default=None, description="champion's rate (binary) or mean (continuous)")
    sd: float | None = Field(default=None, gt=0, description="per-unit sd (of the paired difference when paired)")
    agreement: float | None = Field(default=None, gt=0, lt=1, description="paired binary: share of requests the models agree on")
    margin: float | None = Field(default=None, gt=0, description="absolute non-inferiority margin")
    true_diff: float = Field(default=0.0, description="challenger minus champion assumed for the power")
    alpha: float | None = Field(default=None, gt=0, lt=0.5)
    power: float | None = Field(default=None, ge=0.5, lt=1)
    traffic_per_day: float | None = Field(default=None, gt=0, description="requests per day (default: observed)")
    share: float | None = Field(default=None, gt=0, le=1, description="share of traffic in the experiment")
    looks: int = Field(default=5, ge=1, le=20, description="group sequential: planned looks")
    analyses: int = Field(default=50, ge=1, le=500, description="always-valid: analyses up to the horizon")
    harm_alarms: int | None = Field(default=None, ge=1, le=5)


@dataclass(frozen=True)
class MethodPlan:
    method: str
    n_per_arm: int
    expected_n_per_arm: float
    days: float | None
    expected_days: float | None


@dataclass(frozen=True)
class PlanResult:
    kind: str
    paired: bool
    baseline: float | None
    variance: float
    margin: float
    alpha: float
    power: float
    true_diff: float
    traffic_per_day: float | None
    share: float
    sources: dict[str, str]
    plans: list[MethodPlan]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "paired": self.paired, "baseline": self.baseline, "variance": self.variance,
                "margin": self.margin, "alpha": self.alpha, "power": self.power, "true_diff": self.true_diff,
                "traffic_per_day": self.traffic_per_day, "share": self.share, "sources": self.sources,
                "plans": [p.__dict__ for p in self.plans]}


@dataclass(frozen=True)
class Observed:
    definition: dict
    mode: str
    baseline: float | None
    sd: float | None
    agreement: float | None
    paired_sd: float | None
    traffic_per_day: float | None


def observe(db: Database, ref: str) -> Observed:
    """What an experiment's current phase has seen so far."""
    from service.analytics.analyze import phase_totals
    from service.experiments import resolve
    from service.store import rollups as rollup_store

    with db.unit_of_work() as session:
        record = resolve(session, ref)
        totals = phase_totals(session, record.id, record.current_phase)
        buckets = rollup_store.buckets_for(session, record.id, record.current_phase)
    champion = totals["champion"]["quality"]
    n = champion["n"]
    mean = champion["sum"] / n if n else None
    sd = math.sqrt(max(champion["sum_sq"] / n - mean * mean, 0.0) * n / (n - 1)) if n > 1 else None
    paired = totals["challenger"]["paired"]
    pn = paired["n"]
    agreement = 1 - paired["sum_sq"] / pn if pn else None
    pmean = paired["sum"] / pn if pn else 0.0
    paired_sd = math.sqrt(max(paired["sum_sq"] / pn - pmean**2, 0.0) * pn / (pn - 1)) if pn > 1 else None
    traffic = None
    if buckets:
        hours = (max(b.bucket_start for b in buckets) - min(b.bucket_start for b in buckets)).total_seconds() / 3600 + 1
        predictions = sum(totals[arm]["predictions"] for arm in ("champion",)) if record.mode == "shadow" else \
            sum(totals[arm]["predictions"] for arm in ("champion", "challenger"))
        traffic = predictions / hours * 24 if predictions else None
    return Observed(record.definition, record.mode, mean, sd, agreement if agreement and 0 < agreement < 1 else None,
                    paired_sd, traffic)


def _need(value, name: str, why: str):
    if value is None:
        raise ValidationFailed("not enough to plan with", errors=[field_error(name, why)])
    return value


def make_plan(db: Database | None, request: PlanRequest) -> PlanResult:
    sources: dict[str, str] = {}
    seen = observe(db, request.experiment) if (request.experiment and db is not None) else None
    d = seen.definition if seen else {}
    metric, design, guard = d.get("metric") or {}, d.get("design") or {}, d.get("guardrails") or {}

    def pick(name: str, given, from_experiment, default=None):
        if given is not None:
            sources[name] = "given"
            return given
        if from_experiment is not None:
            sources[name] = "experiment"
            return from_experiment
        if default is not None:
            sources[name] = "default"
        return default

    kind = pick("kind", request.kind, metric.get("kind"), "binary")
    paired = pick("paired", request.paired, (seen.mode == "shadow") if seen else None, False)
    baseline = pick("baseline", request.baseline, seen.baseline if seen else None)
    alpha = pick("alpha", request.alpha, design.get("alpha"), 0.05)
    power = pick("power", request.power, design.get("power"), 0.8)
    share = pick("share", request.share, None, 1.0)
    traffic = pick("traffic_per_day", request.traffic_per_day, seen.traffic_per_day if seen else None)
    margin = request.margin
    if margin is None and metric.get("margin") is not None:
        margin = metric["margin"] * (baseline if metric.get("margin_type") == "relative" and baseline else 1.0)
        sources["margin"] = "experiment"
    margin = _need(margin, "margin", "give the non-inferiority margin (or an experiment that has one)")
    sources.setdefault("margin", "given")
    alarms = request.harm_alarms or (1 + bool(guard.get("latency")) + bool(guard.get("cost_must_be_lower", True))
                                     + (guard.get("failures", {"max_share": 0.01}) is not None))
    if kind == "binary" and paired:
        agreement = pick("agreement", request.agreement, seen.agreement if seen else None)
        _need(agreement, "agreement", "a paired binary plan needs the share of requests both models score the same")
        variance = unit_variance("binary", baseline=baseline or 0.5, paired=True, agreement=agreement,
                                 true_diff=request.true_diff)
    elif kind == "binary":
        _need(baseline, "baseline", "a binary plan needs the champion's rate (or an experiment with outcomes)")
        if not 0 < baseline < 1:
            raise ValidationFailed("the baseline rate must be in (0, 1)", errors=[field_error("baseline", "in (0, 1)")])
        variance = unit_variance("binary", baseline=baseline, true_diff=request.true_diff)
    else:
        sd = pick("sd", request.sd, (seen.paired_sd if paired else seen.sd) if seen else None)
        _need(sd, "sd", "a continuous plan needs the per-unit sd (of the paired difference when paired)")
        variance = unit_variance("continuous", baseline=baseline or 0.0, sd=sd, paired=paired)
    if variance <= 0:
        raise ValidationFailed("the inputs give no variance to plan with", errors=[field_error("agreement", "too high")])
    if request.true_diff + margin <= 0:
        raise ValidationFailed("non-inferiority cannot be shown when the true difference is at or below -margin",
                               errors=[field_error("true_diff", f"must be above -{margin:g}")])
    plans = []
    for method in request.methods or ALL_METHODS:
        p = plan(method, margin=margin, variance=variance, alpha=alpha, power=power, true_diff=request.true_diff,
                 paired=paired, traffic_per_day=traffic, share=share, looks=request.looks, analyses=request.analyses,
                 harm_alarms=alarms)
        expected_days = None if p.days is None else p.days * p.expected_n_per_arm / p.n_per_arm
        plans.append(MethodPlan(method, p.n_per_arm, round(p.expected_n_per_arm, 1), p.days, expected_days))
    return PlanResult(kind, paired, baseline, variance, margin, alpha, power, request.true_diff, traffic, share,
                      sources, plans)
