"""Gather what a report shows into plain dataclasses: stored analyses, the audit trail and roll-ups.

Every number on a report comes from the stored analysis it names (``METRICS`` says where in its
``results``), or is derived from stored analyses by the few documented formulas in ``derived``
(docs/reports.md#money): cost per 1M predictions, what each arm cost and what the challenger saved
to date, the observed traffic span and rate, dollars a month at that rate (only once the span is at
least ``PROJECTION_MIN_SPAN``), the replicas' memory cost, days to a decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from service.store import analyses as analysis_store
from service.store import experiments as experiment_store
from service.store import rollups as rollup_store
from service.store.analyses import AnalysisRecord
from service.store.experiments import EventRecord, ExperimentRecord

ARMS = ("champion", "challenger")
DAYS_PER_MONTH = 30.0
RATE_WINDOW = timedelta(days=7)   # traffic rate: from the analyses of the trailing week
PROJECTION_MIN_SPAN = timedelta(days=1)  # a month's money is projected from at least a day of traffic
DECIDED = ("PROMOTE", "REJECT", "FUTILE")
RECENT_EVENTS = 20                # the dashboard's "recent changes"

MEANING = {
    "PROMOTE": "The cheaper challenger is shown to be good enough: quality within the margin, latency within the SLO "
               "and lower cost, each at the stated confidence. It is safe to switch.",
    "CONTINUE": "There is not yet enough evidence either way: keep the experiment running; the numbers below are "
                "valid to read at any time.",
    "REJECT": "The challenger is measurably worse than allowed on at least one guardrail: do not switch.",
    "FUTILE": "The challenger cannot be shown good enough within the planned sample: stop and keep the champion.",
    "UNHEALTHY": "The data cannot be trusted (traffic split or outcomes look wrong): fix the setup before reading the "
                 "other numbers.",
}
NOT_ANALYSED = "The experiment has not been analysed yet: there is no decision to report."

# name on the page (data-metric) -> (path in the stored analysis' results, format kind)
METRICS: dict[str, tuple[tuple[Any, ...], str]] = {
    "decision": (("decision",), "text"),
    "quality.champion": (("components", "quality", "champion_mean"), "number"),
    "quality.challenger": (("components", "quality", "challenger_mean"), "number"),
    "quality.estimate": (("components", "quality", "estimate"), "signed"),
    "quality.lower_bound": (("components", "quality", "ci", 0), "signed"),
    "quality.upper_bound": (("components", "quality", "ci", 1), "signed"),
    "quality.status": (("components", "quality", "status"), "text"),
    "quality.information_n": (("components", "quality", "information_n"), "count"),
    "quality.information_fraction": (("components", "quality", "information_fraction"), "percent"),
    **{f"latency.{arm}.{q}": (("components", "latency", "quantiles", arm, q, "value"), "ms")
       for arm in ARMS for q in ("p50", "p95", "p99")},
    "latency.slo_threshold": (("components", "latency", "slo", "threshold_ms"), "ms"),
    "latency.slo_max_share": (("components", "latency", "slo", "max_share"), "percent"),
    "latency.challenger_slow_share": (("components", "latency", "slo", "share"), "percent"),
    "latency.champion_slow_share": (("components", "latency", "champion_slow_share"), "percent"),
    "latency.status": (("components", "latency", "status"), "text"),
    "failures.failed": (("components", "failures", "failed"), "count"),
    "failures.predictions": (("components", "failures", "predictions"), "count"),
    "failures.share": (("components", "failures", "share"), "percent"),
    "failures.max_share": (("components", "failures", "max_share"), "percent"),
    "failures.status": (("components", "failures", "status"), "text"),
    "cost.savings_share": (("components", "cost", "savings_share", "estimate"), "percent"),
    "cost.savings_low": (("components", "cost", "savings_share", "ci", 0), "percent"),
    "cost.savings_high": (("components", "cost", "savings_share", "ci", 1), "percent"),
    "cost.status": (("components", "cost", "status"), "text"),
    "health.status": (("components", "health", "status"), "text"),
    "health.srm_p": (("components", "health", "srm", "p_chi2"), "p"),
    "health.srm_p_sequential": (("components", "health", "srm", "p_sequential"), "p"),
    **{f"health.coverage.{arm}": (("components", "health", "outcome_coverage", arm), "percent") for arm in ARMS},
    **{f"traffic.{arm}.{what}": (("inputs", "arms", arm, what), "count")
       for arm in ARMS for what in ("exposures", "predictions", "outcomes")},
    **{f"shadow.{what}": (("shadow", what), "count") for what in ("dropped", "expired", "failed")},
}
DERIVED_KINDS = {
    "quality.threshold": "signed", "decision.days_left": "days",
    **{f"cost.{arm}_{what}": "usd_sig" for arm in ARMS for what in ("per_1m", "per_1m_low", "per_1m_high", "to_date",
                                                                   "monthly", "memory_monthly")},
    **{f"cost.{arm}_memory_mb": "mb" for arm in ARMS}, **{f"cost.{arm}_replicas": "count" for arm in ARMS},
    "cost.savings_to_date": "usd_sig", "cost.savings_to_date_low": "usd_sig", "cost.savings_to_date_high": "usd_sig",
    "cost.savings_basis": "count", "cost.observed_span": "duration", "cost.rate_per_day": "count",
    "cost.monthly_volume": "count", "cost.monthly_savings": "usd_sig", "cost.monthly_savings_low": "usd_sig",
    "cost.monthly_savings_high": "usd_sig", "cost.direction": "text", "cost.projection_note": "text",
    "cost.measured": "text",
    "pareto.champion": "text", "pareto.challenger": "text",
}


@dataclass(frozen=True)
class ArmModel:
    """What the report needs of an arm's model beyond the analysis: its benchmark (memory, CPU per row)."""

    memory_mb: float | None
    cpu_ms_per_prediction: float | None


@dataclass(frozen=True)
class Prices:
    """The cost model's prices (service.settings: ``price_per_core_hour``, ``price_per_gb_hour``)."""

    per_core_hour: float
    per_gb_hour: float


def lookup(results: dict[str, Any], path: tuple[Any, ...]) -> Any:
    """The value at ``path`` in a stored analysis' results, or None where any step is missing."""
    value: Any = results
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and len(value) > step else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def served_volume(analysis: AnalysisRecord) -> int:
    """Requests answered so far: both arms' predictions in an A/B test; the champion's in shadow mode
    (each shadow request is scored twice)."""
    arms = lookup(analysis.results, ("inputs", "arms")) or {}
    mode = lookup(analysis.results, ("inputs", "mode"))
    counted = ("champion",) if mode == "shadow" else ARMS
    return sum(int((arms.get(arm) or {}).get("predictions") or 0) for arm in counted)


def _per_day(history: list[AnalysisRecord], measure) -> float | None:
    """Growth of ``measure`` per day between the first and the last analysis of the trailing window."""
    if len(history) < 2:
        return None
    last = history[-1]
    window = [a for a in history if a.phase == last.phase and a.created_at >= last.created_at - RATE_WINDOW]
    if len(window) < 2:
        return None
    days = (window[-1].created_at - window[0].created_at).total_seconds() / 86_400
    grown = measure(window[-1]) - measure(window[0])
    return grown / days if days > 0 and grown >= 0 else None


def _information(analysis: AnalysisRecord) -> float:
    return float(lookup(analysis.results, ("components", "quality", "information_n")) or 0)


def observed_span(analysis: AnalysisRecord, traffic_start: datetime | None) -> timedelta | None:
    """From the phase's first traffic to the analysis: what a rate (and a projection) rests on."""
    if traffic_start is None:
        return None
    span = _aware(analysis.created_at) - _aware(traffic_start)
    return span if span > timedelta(0) else None


def _direction(share: float | None, ci: tuple[Any, Any]) -> str | None:
    if share is None:
        return None
    low, high = ci
    if low is not None and high is not None and low <= 0 <= high:
        return "no measurable difference in cost per prediction"
    return "challenger cheaper per prediction" if share > 0 else "challenger more expensive per prediction"


def derived(history: list[AnalysisRecord], *, traffic_start: datetime | None = None,
            models: dict[str, ArmModel] | None = None, prices: Prices | None = None) -> dict[str, Any]:
    """Numbers computed from stored analyses (``history`` oldest first; its last one is the one reported),
    the phase's first traffic (``traffic_start``), the arms' benchmarks and the prices (docs/reports.md#money)."""
    from service.registry import HOURS_PER_MONTH

    a = history[-1]
    r = a.results
    margin = lookup(r, ("components", "quality", "margin"))
    mean = {arm: lookup(r, ("components", "cost", "per_request", arm, "mean")) for arm in ARMS}
    mean_ci = {arm: lookup(r, ("components", "cost", "per_request", arm, "ci")) or [None, None] for arm in ARMS}
    share = lookup(r, ("components", "cost", "savings_share", "estimate"))
    share_ci = tuple(lookup(r, ("components", "cost", "savings_share", "ci")) or (None, None))
    predictions = {arm: int(lookup(r, ("inputs", "arms", arm, "predictions")) or 0) for arm in ARMS}
    shadow = lookup(r, ("inputs", "mode")) == "shadow"
    out: dict[str, Any] = {"quality.threshold": -margin if margin is not None else None,
                           "cost.direction": _direction(share, share_ci),
                           # shadow: both models timed in the scorer, or (rows before revision 0008) each where it ran
                           "cost.measured": lookup(r, ("components", "cost", "measured"))}

    def scaled(x: Any, k: float) -> float | None:
        return float(x) * k if x is not None and math.isfinite(float(x)) else None

    for arm in ARMS:
        out[f"cost.{arm}_per_1m"] = scaled(mean[arm], 1e6)
        out[f"cost.{arm}_per_1m_low"] = scaled(max(mean_ci[arm][0], 0.0) if mean_ci[arm][0] is not None else None, 1e6)
        out[f"cost.{arm}_per_1m_high"] = scaled(mean_ci[arm][1], 1e6)
        out[f"cost.{arm}_to_date"] = scaled(mean[arm], predictions[arm])
    # Savings to date: on the requests the challenger answered (A/B), or would have answered (shadow: every
    # request the champion served, each scored by both), champion cost x savings share, with its interval.
    basis = served_volume(a) if shadow else predictions["challenger"]
    out["cost.savings_basis"] = basis
    base = mean["champion"] * basis if mean["champion"] is not None else None
    out["cost.savings_to_date"] = scaled(share, base) if base is not None else None
    out["cost.savings_to_date_low"] = scaled(share_ci[0], base) if base is not None else None
    out["cost.savings_to_date_high"] = scaled(share_ci[1], base) if base is not None else None

    span = observed_span(a, traffic_start)
    volume = served_volume(a)
    out["cost.observed_span"] = span.total_seconds() if span else None
    per_s = volume / span.total_seconds() if span else None
    out["cost.rate_per_day"] = per_s * 86_400 if per_s is not None else None
    projected = span is not None and span >= PROJECTION_MIN_SPAN
    monthly_volume = per_s * 86_400 * DAYS_PER_MONTH if projected and per_s is not None else None
    out["cost.monthly_volume"] = monthly_volume
    # an arm's monthly compute if it served all the traffic
    for arm in ARMS:
        out[f"cost.{arm}_monthly"] = scaled(mean[arm], monthly_volume) if monthly_volume is not None else None
    champion_month = out["cost.champion_monthly"]
    out["cost.monthly_savings"] = scaled(share, champion_month) if champion_month is not None else None
    out["cost.monthly_savings_low"] = scaled(share_ci[0], champion_month) if champion_month is not None else None
    out["cost.monthly_savings_high"] = scaled(share_ci[1], champion_month) if champion_month is not None else None
    if span is None:
        out["cost.projection_note"] = "no projection: no traffic observed yet"
    elif not projected:
        out["cost.projection_note"] = (f"no monthly projection yet: it needs {PROJECTION_MIN_SPAN.days} day of traffic "
                                       f"and {_duration_words(span)} has been observed")
    else:
        out["cost.projection_note"] = f"projected from the {_duration_words(span)} of traffic observed"
    for arm in ARMS:
        model = (models or {}).get(arm)
        memory_mb = model.memory_mb if model else None
        out[f"cost.{arm}_memory_mb"] = memory_mb
        out[f"cost.{arm}_replicas"] = out[f"cost.{arm}_memory_monthly"] = None
        if memory_mb is not None and prices is not None and per_s is not None:
            cpu_ms = model.cpu_ms_per_prediction
            if cpu_ms is None:  # not benchmarked: the CPU time its rows were charged for
                cpu_ms = (mean[arm] or 0.0) / prices.per_core_hour * 3_600_000 if prices.per_core_hour else 0.0
            replicas = max(1, math.ceil(per_s * cpu_ms / 1000.0))
            out[f"cost.{arm}_replicas"] = replicas
            out[f"cost.{arm}_memory_monthly"] = replicas * memory_mb / 1024.0 * HOURS_PER_MONTH * prices.per_gb_hour

    out.update(_pareto(r, out))
    days_left: float | None = None
    if a.decision not in DECIDED:
        fraction = lookup(r, ("components", "quality", "information_fraction"))
        n = _information(a)
        horizon = n / fraction if fraction else lookup(r, ("parameters", "planned_n_per_arm"))
        info_rate = _per_day(history, _information)
        if horizon is not None and info_rate:
            days_left = max(float(horizon) - n, 0.0) / info_rate
    out["decision.days_left"] = days_left
    return out


def _pareto(r: dict[str, Any], money: dict[str, Any]) -> dict[str, str | None]:
    """Per arm: on the quality / cost frontier, or which arm beats it on both."""
    higher = lookup(r, ("components", "quality", "higher_is_better"))
    sign = -1.0 if higher is False else 1.0
    q = {arm: lookup(r, ("components", "quality", f"{arm}_mean")) for arm in ARMS}
    c = {arm: money.get(f"cost.{arm}_per_1m") for arm in ARMS}
    if None in q.values() or None in c.values():
        return {f"pareto.{arm}": None for arm in ARMS}
    out = {}
    for arm, other in (("champion", "challenger"), ("challenger", "champion")):
        beaten = (sign * q[other] >= sign * q[arm] and c[other] <= c[arm]
                  and (sign * q[other] > sign * q[arm] or c[other] < c[arm]))
        out[f"pareto.{arm}"] = f"beaten by the {other} (better and cheaper)" if beaten else "on the frontier"
    return out


def _duration_words(span: timedelta) -> str:
    from service.reports.format import fmt

    return fmt(span.total_seconds(), "duration")


@dataclass(frozen=True)
class HistoryPoint:
    at: datetime
    estimate: float | None
    lower: float | None
    upper: float | None


@dataclass(frozen=True)
class Bucket:
    start: datetime
    arm: str
    predictions: int
    cost: float


@dataclass
class ReportData:
    """Everything one experiment's report (or its dashboard page) shows, as plain values."""

    experiment: ExperimentRecord
    since: datetime | None                   # the week's bounds (UTC); None on the dashboard ("as of now")
    until: datetime
    analysis: AnalysisRecord | None
    metrics: dict[str, Any] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    history: list[HistoryPoint] = field(default_factory=list)
    buckets: list[Bucket] = field(default_factory=list)
    sketches: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)

    @property
    def decision(self) -> str | None:
        return self.analysis.decision if self.analysis else None

    @property
    def meaning(self) -> str:
        return MEANING.get(self.decision or "", NOT_ANALYSED)

    @property
    def time_to_decision(self) -> str:
        """In words, honestly: decided, a number of days at the current traffic, or unknown."""
        if self.analysis is None:
            return "unknown: not analysed yet"
        if self.decision in DECIDED:
            return "decided"
        if self.metrics.get("decision.days_left") is None:
            return "unknown: too few analyses to measure the current traffic rate"
        return ""  # the template shows the number (data-metric decision.days_left)


def _arm_models(session, experiment: ExperimentRecord) -> dict[str, ArmModel]:
    from service.store import models as model_store

    out = {}
    for arm, model_id in (("champion", experiment.champion_model_id), ("challenger", experiment.challenger_model_id)):
        record = model_store.get(session, model_id) if model_id else None
        profile = (record.profile if record else None) or {}
        out[arm] = ArmModel(profile.get("memory_mb"), profile.get("cpu_ms_per_prediction"))
    return out


def gather(session, experiment: ExperimentRecord, *, until: datetime, since: datetime | None = None,
           prices: Prices | None = None) -> ReportData:
    """Read one experiment's report data as it stood at ``until``; ``since`` bounds the audit trail;
    ``prices`` (the settings') price the replicas' memory."""
    history = analysis_store.before(session, experiment.id, until)
    analysis = history[-1] if history else None
    data = ReportData(experiment=experiment, since=since, until=until, analysis=analysis)
    if analysis is not None:
        same_phase = [a for a in history if a.phase == analysis.phase]
        data.metrics = {name: lookup(analysis.results, path) for name, (path, _) in METRICS.items()}
        first = rollup_store.buckets_for(session, experiment.id, analysis.phase)[:1]
        traffic_start = None
        if first:
            started = experiment.phase.started_at if experiment.current_phase == analysis.phase else None
            traffic_start = max(_aware(first[0].bucket_start), _aware(started)) if started else _aware(first[0].bucket_start)
        data.metrics.update(derived(same_phase, traffic_start=traffic_start, models=_arm_models(session, experiment),
                                    prices=prices))
        data.kinds = {name: kind for name, (_, kind) in METRICS.items()} | DERIVED_KINDS
        data.history = [HistoryPoint(_aware(a.created_at), lookup(a.results, ("components", "quality", "estimate")),
                                     lookup(a.results, ("components", "quality", "ci", 0)),
                                     lookup(a.results, ("components", "quality", "ci", 1))) for a in same_phase]
        data.sketches = {arm: lookup(analysis.results, ("inputs", "arms", arm, "latency_sketch")) or {} for arm in ARMS}
    data.buckets = [Bucket(_aware(b.bucket_start), b.arm, int(b.stats.get("predictions") or 0),
                           float((b.stats.get("cost") or {}).get("sum") or 0.0))
                    for b in rollup_store.buckets_for(session, experiment.id)
                    if _aware(b.bucket_start) < until]
    if since is not None:  # the week's audit trail
        data.events, _ = experiment_store.events(session, experiment.id, limit=500, offset=0, since=since, until=until)
    else:  # the dashboard: the latest changes
        _, total = experiment_store.events(session, experiment.id, limit=0, offset=0, until=until)
        data.events, _ = experiment_store.events(session, experiment.id, limit=RECENT_EVENTS,
                                                 offset=max(total - RECENT_EVENTS, 0), until=until)
    return data


def _aware(moment: datetime) -> datetime:
    """SQLite gives timestamps back naive; they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

