"""One decision from every component: an intersection–union rule.

* **PROMOTE** only when quality is non-inferior, the latency SLO holds, the challenger's failure
  rate (errors and deadline overruns, each answered by the champion instead) is below its limit and
  the challenger is cheaper, each shown at level alpha.  The null of "safe to promote" is the *union* of the three
  component nulls, so an intersection–union test at alpha needs no split of alpha (Berger 1982).
* **REJECT** as soon as a harm bound is crossed: quality worse than the margin, the SLO violated, the
  challenger failing more often than its limit, or the challenger dearer when it must be cheaper.  The alarms share one alpha budget (Bonferroni:
  alpha / number of alarms), so the chance of any false alarm over the whole run is at most alpha.
* **FUTILE** when non-inferiority can no longer be reached within the planned horizon.
* **UNHEALTHY** on a sample-ratio mismatch or missing outcomes: the other numbers cannot be trusted.
* Otherwise **CONTINUE**.

Precedence: UNHEALTHY, REJECT, PROMOTE, FUTILE, CONTINUE.  The result records the method,
parameters and inputs, so it can be replayed exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from analysis import sequential
from analysis.cost import compare_costs, compare_shadow_costs
from analysis.health import coverage_difference_p, srm
from analysis.latency import quantile_difference, quantile_summary, slo_log_e_value, slo_test
from analysis.quality import effect, test_quality
from analysis.sketch import LatencySketch
from analysis.sufficient import Moments

__all__ = ["ArmData", "ExperimentData", "DecisionConfig", "Decision", "decide", "DECISIONS"]

DECISIONS = ("PROMOTE", "REJECT", "FUTILE", "UNHEALTHY", "CONTINUE")


@dataclass(frozen=True)
class ArmData:
    exposures: int
    predictions: int
    outcomes: int
    quality: Moments
    latency: LatencySketch | None = None
    latency_n: int = 0
    latency_slow: int = 0
    cost: Moments = field(default_factory=Moments)
    fallbacks: int = 0                      # predictions the champion answered because this arm failed or overran


@dataclass(frozen=True)
class ExperimentData:
    mode: str                               # "ab" | "shadow"
    champion: ArmData
    challenger: ArmData
    paired_quality: Moments | None = None   # shadow: challenger-minus-champion quality per request
    expected_weights: tuple[float, float] = (0.5, 0.5)
    units_in_both_arms: int = 0
    looks: tuple[float, ...] = ()           # information fractions of earlier analyses of this phase
    reference_cost: Moments | None = None   # shadow: the champion's cost timed by the scorer beside the challenger


@dataclass(frozen=True)
class DecisionConfig:
    metric_kind: str = "binary"
    higher_is_better: bool = True
    margin: float = 0.02
    margin_type: str = "absolute"
    alpha: float = 0.05
    power: float = 0.8
    planned_n_per_arm: int = 20_000
    method: str = "asymptotic_cs"
    latency_threshold_ms: float | None = None
    latency_max_share: float | None = None
    cost_must_be_lower: bool = True
    failure_max_share: float | None = 0.01  # challenger errors + deadline overruns; None: not a guardrail
    srm_alpha: float = 0.001
    min_sample: int = 200                   # information units before quality may decide anything
    min_outcome_coverage: float = 0.05
    outcome_grace: int = 500                # predictions per arm before missing outcomes count
    max_crossover_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise ValueError("alpha must be in (0, 0.5)")
        if self.margin <= 0:
            raise ValueError("the margin must be > 0")
        if self.failure_max_share is not None and not 0 < self.failure_max_share < 1:
            raise ValueError("failure_max_share must be in (0, 1)")
        if self.method not in ("asymptotic_cs", "msprt", "gsd_obf", "gsd_pocock", "fixed"):
            raise ValueError(f"unknown method {self.method!r}")


@dataclass
class Decision:
    decision: str
    explanation: str
    method: str
    parameters: dict[str, Any]
    inputs: dict[str, Any]
    components: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return _clean({"decision": self.decision, "explanation": self.explanation, "method": self.method,
                       "parameters": self.parameters, "inputs": self.inputs, "components": self.components})


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, non-finite floats to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


# -- components --------------------------------------------------------------------------------

def _quality(data: ExperimentData, cfg: DecisionConfig, alpha_harm: float) -> dict[str, Any]:
    binary = cfg.metric_kind == "binary"
    paired = data.paired_quality if data.mode == "shadow" else None
    e = effect(data.champion.quality, data.challenger.quality, paired, binary=binary,
               higher_is_better=cfg.higher_is_better, margin=cfg.margin, margin_type=cfg.margin_type,
               planned_n_per_arm=cfg.planned_n_per_arm)
    base = {"margin": cfg.margin, "margin_type": cfg.margin_type, "higher_is_better": cfg.higher_is_better,
            "paired": paired is not None, "method": cfg.method,
            "champion_mean": data.champion.quality.mean if data.champion.quality.n else None,
            "challenger_mean": data.challenger.quality.mean if data.challenger.quality.n else None,
            "n": {"champion": data.champion.quality.n, "challenger": data.challenger.quality.n,
                  "paired": paired.n if paired is not None else None}}
    if e is None or e.n < cfg.min_sample:
        n = 0 if e is None else e.n
        return {**base, "status": "insufficient", "estimate": None, "ci": [None, None], "p_value": None,
                "information_n": n,
                "explanation": f"quality: {int(n)} of the {cfg.min_sample} outcomes needed before any quality call"}
    fixed_inputs = {"binary": binary}
    if binary and not e.paired:
        better, worse = ((data.challenger.quality, data.champion.quality) if cfg.higher_is_better
                         else (data.champion.quality, data.challenger.quality))
        fixed_inputs["x_better_first"] = (int(round(better.sum)), better.n, int(round(worse.sum)), worse.n)
    t = test_quality(e, cfg.method, cfg.alpha, alpha_harm, cfg.power, data.looks, fixed_inputs)
    shown = e.to_display
    estimate, lower, upper = shown(e.estimate), shown(t.lower), shown(t.upper)
    scale = "relative" if cfg.margin_type == "relative" else "absolute"
    words = {"non_inferior": f"non-inferior: the lower bound {_fmt(lower)} is above -{cfg.margin:g}",
             "harm": f"HARM: the upper bound {_fmt(upper)} is below -{cfg.margin:g}",
             "futile": f"futile: non-inferiority within -{cfg.margin:g} cannot be shown by the planned horizon "
                       f"(upper bound {_fmt(upper)})",
             "continue": f"not yet decided: lower bound {_fmt(lower)} vs -{cfg.margin:g}"}[t.status]
    what = "paired per-request difference" if e.paired else "difference"
    return {**base, "status": t.status, "estimate": estimate, "ci": [lower, upper], "p_value": t.p_value,
            "p_harm": t.p_harm, "information_n": e.n, "information_fraction": min(e.n / e.n_star, 1.0),
            "scale": scale, "test_scale": {"estimate": e.estimate, "lower": t.lower, "upper": t.upper,
                                           "threshold": e.threshold, "variance": e.variance, "kind": e.scale},
            "detail": t.detail,
            "explanation": f"quality ({what}, challenger minus champion, {scale}) {_fmt(estimate, '+.4f')}; {words}"}


def _latency(data: ExperimentData, cfg: DecisionConfig, alpha_harm: float) -> dict[str, Any]:
    quantiles = {arm: quantile_summary(getattr(data, arm).latency) for arm in ("champion", "challenger")}
    out: dict[str, Any] = {"quantiles": quantiles}
    if quantiles["champion"].get("p95") and quantiles["challenger"].get("p95"):
        c, t = quantiles["champion"]["p95"], quantiles["challenger"]["p95"]
        est, ci = quantile_difference((c["value"], *c["ci"]), (t["value"], *t["ci"]))
        out["p95_difference"] = {"estimate": est, "ci": list(ci)}
    if cfg.latency_threshold_ms is None or cfg.latency_max_share is None:
        return {**out, "status": "not_required", "explanation": "latency: no SLO configured (reported only)"}
    ch = data.challenger
    test = slo_test(ch.latency_slow, ch.latency_n, cfg.latency_threshold_ms, cfg.latency_max_share)
    champ = data.champion
    out["slo"] = test.to_dict()
    out["champion_slow_share"] = champ.latency_slow / champ.latency_n if champ.latency_n else None
    slo = f"{_fmt(100 * cfg.latency_max_share, 'g')}% slower than {cfg.latency_threshold_ms:g} ms"
    share = f"{_fmt(100 * test.share, '.2f')}%" if test.n else "n/a"
    if test.p_violated <= alpha_harm:
        return {**out, "status": "harm", "p_value": test.p_holds,
                "explanation": f"latency: SLO VIOLATED: {share} of challenger requests are slower than "
                               f"{cfg.latency_threshold_ms:g} ms (limit {slo}; p = {_fmt(test.p_violated, '.2g')})"}
    if test.p_holds <= cfg.alpha:
        return {**out, "status": "holds", "p_value": test.p_holds,
                "explanation": f"latency: SLO holds: {share} slow (limit {slo}; always-valid p = {_fmt(test.p_holds, '.2g')})"}
    return {**out, "status": "continue", "p_value": test.p_holds,
            "explanation": f"latency: not yet shown: {share} slow against a limit of {slo} (p = {_fmt(test.p_holds, '.2g')})"}


def _failures(data: ExperimentData, cfg: DecisionConfig, alpha_harm: float) -> dict[str, Any]:
    """The challenger's failure rate: requests it errored on or overran its deadline for (the champion
    answered them).  The same always-valid beta-binomial test as the latency SLO, on the share of
    failed requests against ``failure_max_share``."""
    ch = data.challenger
    n, failed = ch.predictions, min(ch.fallbacks, ch.predictions)
    share = failed / n if n else None
    out: dict[str, Any] = {"failed": failed, "predictions": n, "share": share,
                           "champion_failed": data.champion.fallbacks, "max_share": cfg.failure_max_share}
    seen = (f"{failed} of {n} challenger requests ({_fmt(100 * share, '.2f')}%) failed or overran their deadline "
            f"and were answered by the champion") if n else "no challenger requests yet"
    if cfg.failure_max_share is None:
        return {**out, "status": "not_required", "explanation": f"failures: {seen} (not a guardrail)"}
    limit = f"limit {_fmt(100 * cfg.failure_max_share, 'g')}%"
    if not n:
        return {**out, "status": "continue", "p_value": 1.0, "explanation": f"failures: {seen}"}
    p_holds = math.exp(min(0.0, -slo_log_e_value(failed, n, cfg.failure_max_share, show_below=True)))
    p_violated = math.exp(min(0.0, -slo_log_e_value(failed, n, cfg.failure_max_share, show_below=False)))
    out.update({"p_value": p_holds, "p_harm": p_violated})
    if p_violated <= alpha_harm:
        return {**out, "status": "harm",
                "explanation": f"failures: TOO MANY: {seen} ({limit}; p = {_fmt(p_violated, '.2g')})"}
    if p_holds <= cfg.alpha:
        return {**out, "status": "holds",
                "explanation": f"failures: below the limit: {seen} ({limit}; always-valid p = {_fmt(p_holds, '.2g')})"}
    return {**out, "status": "continue",
            "explanation": f"failures: not yet shown below the limit: {seen} ({limit}; p = {_fmt(p_holds, '.2g')})"}


def _cost(data: ExperimentData, cfg: DecisionConfig, alpha_harm: float) -> dict[str, Any]:
    reference = data.reference_cost if data.mode == "shadow" and data.reference_cost is not None \
        and data.reference_cost.n else None
    cmp = compare_costs(data.champion.cost, data.challenger.cost) if reference is None else \
        compare_shadow_costs(data.champion.cost, reference, data.challenger.cost)
    if cmp is None:
        return {"status": "insufficient" if cfg.cost_must_be_lower else "not_required",
                "per_request": {}, "savings_share": {"estimate": None, "ci": [None, None]},
                "explanation": "cost: no costed predictions yet"}
    out = cmp.to_dict()
    n = (data.champion.cost.n if reference is None else reference.n) + data.challenger.cost.n
    n_star = 2 * cfg.planned_n_per_arm
    savings = f"savings {_fmt(100 * cmp.savings_share, '.1f')}% [{_fmt(100 * cmp.savings_ci[0], '.1f')}%, " \
              f"{_fmt(100 * cmp.savings_ci[1], '.1f')}%]"
    if cmp.log_ratio_var <= 0:  # deterministic costs: the comparison is exact
        p_lower = 0.0 if cmp.log_ratio < 0 else 1.0
        p_higher = 0.0 if cmp.log_ratio > 0 else 1.0
    else:
        p_lower = sequential.asymptotic_cs(-cmp.log_ratio, cmp.log_ratio_var, n, cfg.alpha, n_star, sides=1).p_value
        p_higher = sequential.asymptotic_cs(cmp.log_ratio, cmp.log_ratio_var, n, alpha_harm, n_star, sides=1).p_value
    out.update({"p_value": p_lower, "p_harm": p_higher, "projected_per_million": cmp.projected_savings(1_000_000),
                "measured": "side by side in the shadow scorer" if reference is not None else "each arm as it ran",
                "reference_n": reference.n if reference is not None else None})
    if not cfg.cost_must_be_lower:
        return {**out, "status": "not_required", "explanation": f"cost: {savings} (not a guardrail)"}
    if p_higher <= alpha_harm:
        return {**out, "status": "harm", "explanation": f"cost: the challenger is MORE expensive ({savings})"}
    if p_lower <= cfg.alpha:
        return {**out, "status": "lower", "explanation": f"cost: the challenger is cheaper ({savings})"}
    return {**out, "status": "continue", "explanation": f"cost: cheaper not yet shown ({savings})"}


def _health(data: ExperimentData, cfg: DecisionConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    problems: list[str] = []
    status = "ok"
    arms = (data.champion, data.challenger)
    coverage = {name: (a.outcomes / a.predictions if a.predictions else None)
                for name, a in zip(("champion", "challenger"), arms)}
    out["outcome_coverage"] = coverage
    if data.mode == "ab":
        total = data.champion.exposures + data.challenger.exposures
        if total > 0:
            r = srm([data.champion.exposures, data.challenger.exposures], data.expected_weights)
            out["srm"] = r.to_dict()
            if r.p_sequential < cfg.srm_alpha:
                status = "srm"
                problems.append(f"sample-ratio mismatch: {data.champion.exposures} vs {data.challenger.exposures} "
                                f"units for weights {data.expected_weights[0]:g}/{data.expected_weights[1]:g} "
                                f"(sequential p = {_fmt(r.p_sequential, '.2g')}, chi-square p = {_fmt(r.p_chi2, '.2g')})")
            share = data.units_in_both_arms / total
            out["units_in_both_arms"] = {"count": data.units_in_both_arms, "share": share}
            if share > cfg.max_crossover_share:
                status = "srm" if status == "ok" else status
                problems.append(f"{data.units_in_both_arms} units ({100 * share:.1f}%) were served by both arms")
        p_cov = coverage_difference_p([a.outcomes for a in arms], [a.predictions for a in arms])
        out["coverage_difference_p"] = p_cov
        if p_cov < cfg.srm_alpha and min(a.predictions for a in arms) >= cfg.outcome_grace:
            status = "missing_outcomes" if status == "ok" else status
            problems.append(f"outcomes arrive at different rates per arm ({_fmt(coverage['champion'], '.1%')} vs "
                            f"{_fmt(coverage['challenger'], '.1%')}, p = {_fmt(p_cov, '.2g')})")
    for name, a in zip(("champion", "challenger"), arms):
        if a.predictions >= cfg.outcome_grace and a.outcomes / a.predictions < cfg.min_outcome_coverage:
            status = "missing_outcomes" if status == "ok" else status
            problems.append(f"only {a.outcomes} of {a.predictions} {name} predictions have an outcome")
    out["status"] = status
    out["problems"] = problems
    out["explanation"] = "health: " + ("; ".join(problems) if problems else "no sample-ratio mismatch, outcomes arriving")
    return out


# -- the rule ----------------------------------------------------------------------------------

GUARDS = ("quality", "latency", "failures", "cost")
_MET = ("non_inferior", "holds", "lower", "not_required")


def decide(data: ExperimentData, config: DecisionConfig) -> Decision:
    alarms = (1 + (config.latency_threshold_ms is not None) + (config.failure_max_share is not None)
              + bool(config.cost_must_be_lower))
    alpha_harm = config.alpha / alarms
    components = {"quality": _quality(data, config, alpha_harm), "latency": _latency(data, config, alpha_harm),
                  "failures": _failures(data, config, alpha_harm), "cost": _cost(data, config, alpha_harm),
                  "health": _health(data, config)}
    status = {k: components[k]["status"] for k in components}
    cited: list[str] = []     # components whose sentence is the reason; not repeated after it
    if status["health"] != "ok":
        decision, cited = "UNHEALTHY", ["health"]
    elif "harm" in (status[k] for k in GUARDS):
        decision, cited = "REJECT", [k for k in GUARDS if status[k] == "harm"]
    elif status["quality"] == "non_inferior" and all(status[k] in _MET for k in GUARDS[1:]):
        decision = "PROMOTE"
    elif status["quality"] == "futile":
        decision, cited = "FUTILE", ["quality"]
    else:
        decision = "CONTINUE"
    if cited:
        why = "; ".join(components[k]["explanation"] for k in cited)
    elif decision == "PROMOTE":
        why = "every promotion condition holds at level " + f"{config.alpha:g}"
    else:
        why = "waiting on " + ", ".join(k for k in GUARDS if status[k] not in _MET)
    explanation = f"{decision}: {why}. " + " ".join(components[k]["explanation"] + "."
                                                   for k in (*GUARDS, "health") if k not in cited)
    q_info = components["quality"].get("information_n") or 0
    parameters = {"alpha": config.alpha, "alpha_harm": alpha_harm, "harm_alarms": alarms, "power": config.power,
                  "margin": config.margin, "margin_type": config.margin_type, "method": config.method,
                  "planned_n_per_arm": config.planned_n_per_arm, "config": asdict(config)}
    inputs = {"information_n": q_info, "mode": data.mode, "looks": list(data.looks),
              "expected_weights": list(data.expected_weights), "units_in_both_arms": data.units_in_both_arms,
              "paired_quality": data.paired_quality.to_dict() if data.paired_quality is not None else None,
              "reference_cost": data.reference_cost.to_dict() if data.reference_cost is not None else None,
              "arms": {name: {"exposures": a.exposures, "predictions": a.predictions, "outcomes": a.outcomes,
                              "quality": a.quality.to_dict(), "cost": a.cost.to_dict(), "latency_n": a.latency_n,
                              "latency_slow": a.latency_slow, "fallbacks": a.fallbacks,
                              "latency_sketch": a.latency.to_dict() if a.latency is not None else None}
                       for name, a in (("champion", data.champion), ("challenger", data.challenger))}}
    return Decision(decision, explanation, config.method, parameters, inputs, components)


def replay(inputs: dict[str, Any], config: dict[str, Any]) -> Decision:
    """Recompute a stored decision from its recorded inputs and config."""
    def arm(d: dict) -> ArmData:
        sketch = LatencySketch.from_dict(d["latency_sketch"]) if d.get("latency_sketch") else None
        return ArmData(d["exposures"], d["predictions"], d["outcomes"], Moments.from_dict(d["quality"]), sketch,
                       d["latency_n"], d["latency_slow"], Moments.from_dict(d["cost"]), int(d.get("fallbacks", 0)))

    paired = Moments.from_dict(inputs["paired_quality"]) if inputs.get("paired_quality") else None
    reference = Moments.from_dict(inputs["reference_cost"]) if inputs.get("reference_cost") else None
    data = ExperimentData(inputs["mode"], arm(inputs["arms"]["champion"]), arm(inputs["arms"]["challenger"]), paired,
                          tuple(inputs["expected_weights"]), inputs["units_in_both_arms"], tuple(inputs["looks"]),
                          reference)
    # an analysis stored before the failure guardrail existed was decided without it
    return decide(data, DecisionConfig(**{"failure_max_share": None, **config}))
