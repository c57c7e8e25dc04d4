"""Gather what a report shows into plain dataclasses: stored analyses, the audit trail and roll-ups.

Every number on a report comes from the stored analysis it names (``METRICS`` says where in its
``results``), or is derived from stored analyses by the few documented formulas in ``derived``:
cost per 1,000 predictions, the current traffic rate, projected monthly savings, days to a decision.
"""

from __future__ import annotations

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
DERIVED_KINDS = {"quality.threshold": "signed", "cost.champion_per_1k": "usd_small", "cost.challenger_per_1k": "usd_small",
                 "cost.monthly_volume": "count", "cost.monthly_savings": "usd", "decision.days_left": "days"}


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


def derived(history: list[AnalysisRecord]) -> dict[str, Any]:
    """Numbers computed from stored analyses (``history`` oldest first; its last one is the one reported)."""
    a = history[-1]
    r = a.results
    margin = lookup(r, ("components", "quality", "margin"))
    champion = lookup(r, ("components", "cost", "per_request", "champion", "mean"))
    challenger = lookup(r, ("components", "cost", "per_request", "challenger", "mean"))
    share = lookup(r, ("components", "cost", "savings_share", "estimate"))
    rate = _per_day(history, served_volume)
    volume = rate * DAYS_PER_MONTH if rate is not None else None
    savings = champion * share * volume if None not in (champion, share, volume) else None
    days_left: float | None = None
    if a.decision not in DECIDED:
        fraction = lookup(r, ("components", "quality", "information_fraction"))
        n = _information(a)
        horizon = n / fraction if fraction else lookup(r, ("parameters", "planned_n_per_arm"))
        info_rate = _per_day(history, _information)
        if horizon is not None and info_rate:
            days_left = max(float(horizon) - n, 0.0) / info_rate
    return {"quality.threshold": -margin if margin is not None else None,
            "cost.champion_per_1k": champion * 1000 if champion is not None else None,
            "cost.challenger_per_1k": challenger * 1000 if challenger is not None else None,
            "cost.monthly_volume": volume, "cost.monthly_savings": savings, "decision.days_left": days_left}


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


def gather(session, experiment: ExperimentRecord, *, until: datetime, since: datetime | None = None) -> ReportData:
    """Read one experiment's report data as it stood at ``until``; ``since`` bounds the audit trail."""
    history = analysis_store.before(session, experiment.id, until)
    analysis = history[-1] if history else None
    data = ReportData(experiment=experiment, since=since, until=until, analysis=analysis)
    if analysis is not None:
        same_phase = [a for a in history if a.phase == analysis.phase]
        data.metrics = {name: lookup(analysis.results, path) for name, (path, _) in METRICS.items()}
        data.metrics.update(derived(same_phase))
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

