"""The quality comparison: one effect on a scale where larger is better for the challenger, its
non-inferiority threshold, and the tests each design method runs on it.

Sign convention: the effect is positive when the challenger is better.  Non-inferiority is
H0: effect <= threshold against H1: effect > threshold, where the threshold is -margin (absolute
margin), log(1 - margin) (relative margin, higher is better, on the log ratio), or -log(1 + margin)
(relative margin, lower is better).  The harm alarm is the mirror image: H0: effect >= threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from scipy import stats

from analysis import fixed, gsd, sequential
from analysis.sufficient import Moments

__all__ = ["Effect", "effect", "QualityTest", "test_quality", "GSD_LOOKS"]

GSD_LOOKS = 5


@dataclass(frozen=True)
class Effect:
    estimate: float          # test scale
    variance: float          # of the estimate
    n: float                 # information: units (paired requests, or both arms' units)
    n_star: float            # planned information at the horizon
    threshold: float         # test scale
    paired: bool
    scale: str               # "absolute" | "log_ratio"
    to_display: Callable[[float], float] = field(repr=False, compare=False, default=lambda x: x)
    champion_mean: float = math.nan
    challenger_mean: float = math.nan


def _binary_var(m: Moments) -> float:
    """p(1-p) with p shrunk by half a success (so a run of all-correct answers is not certainty)."""
    p = (m.sum + 0.5) / (m.n + 1)
    return p * (1 - p)


def _var(m: Moments, binary: bool) -> float:
    return _binary_var(m) if binary else (m.variance if m.n > 1 else math.inf)


def effect(champion: Moments, challenger: Moments, paired: Moments | None, *, binary: bool, higher_is_better: bool,
           margin: float, margin_type: str, planned_n_per_arm: int) -> Effect | None:
    """The effect to test, or None when there is not yet anything to estimate."""
    s = 1.0 if higher_is_better else -1.0
    mc = champion.mean if champion.n else math.nan
    if paired is not None:
        if paired.n < 2:
            return None
        if binary:  # D in {-1, 0, 1}: sum_sq counts discordant pairs; shrink their rate by one pair
            var_unit = max((paired.sum_sq + 1) / (paired.n + 1) - paired.mean**2, 1e-12)
        else:
            var_unit = paired.variance
        if margin_type == "relative":
            if not (mc > 0):
                return None
            delta, display = margin * mc, (lambda x, mc=mc: x / mc)
        else:
            delta, display = margin, (lambda x: x)
        return Effect(s * paired.mean, var_unit / paired.n, paired.n, planned_n_per_arm, -delta, True, "absolute",
                      display, mc, mc + paired.mean)
    if champion.n < 2 or challenger.n < 2:
        return None
    vc, vt = _var(champion, binary), _var(challenger, binary)
    mt = challenger.mean
    n, n_star = champion.n + challenger.n, 2 * planned_n_per_arm
    if margin_type == "relative":
        if not (mc > 0 and mt > 0):
            return None
        est = s * math.log(mt / mc)
        var = vt / (challenger.n * mt * mt) + vc / (champion.n * mc * mc)
        threshold = math.log1p(-margin) if higher_is_better else -math.log1p(margin)
        display = (lambda x: math.expm1(x)) if higher_is_better else (lambda x: -math.expm1(-x))
        return Effect(est, var, n, n_star, threshold, False, "log_ratio", display, mc, mt)
    return Effect(s * (mt - mc), vt / challenger.n + vc / champion.n, n, n_star, -margin, False, "absolute",
                  lambda x: x, mc, mt)


@dataclass(frozen=True)
class QualityTest:
    status: str                 # non_inferior | harm | futile | continue
    lower: float                # lower bound on the effect (level alpha), test scale
    upper: float                # upper bound (level alpha_harm), test scale
    p_value: float              # non-inferiority
    p_harm: float
    detail: dict


def _final_look(e: Effect) -> bool:
    return e.n >= e.n_star


def test_quality(e: Effect, method: str, alpha: float, alpha_harm: float, power: float,
                 looks: tuple[float, ...] = (), fixed_inputs: dict | None = None) -> QualityTest:
    """Run the configured method on the effect.  Harm is always monitored with the one-sided
    asymptotic CS (continuous monitoring), whatever the efficacy design."""
    harm = sequential.asymptotic_cs(e.estimate, e.variance, e.n, alpha_harm, e.n_star, sides=1,
                                    null=e.threshold, larger=False)
    upper, p_harm = harm.upper, harm.p_value
    if method == "asymptotic_cs":
        cs = sequential.asymptotic_cs(e.estimate, e.variance, e.n, alpha, e.n_star, sides=1, null=e.threshold)
        lower, p = cs.lower, cs.p_value
        planned_hw = sequential.cs_halfwidth_one_sided(e.variance * e.n / e.n_star, e.n_star, alpha, cs.rho)
        detail = {"rho": cs.rho, "n_star": e.n_star, "halfwidth": cs.halfwidth, "halfwidth_at_horizon": planned_hw}
    elif method == "msprt":
        unit_var = e.variance * e.n
        tau2 = sequential.msprt_tau2(unit_var, e.n_star, alpha)
        lam = sequential.msprt_one_sided_lambda(e.estimate, e.variance, tau2, e.threshold)
        p = min(1.0, 1 / max(lam, sequential.MIN_MSPRT_RATIO))
        lower = sequential.msprt_lower_bound(e.estimate, e.variance, tau2, alpha)
        v_star = unit_var / e.n_star
        planned_hw = -sequential.msprt_lower_bound(0.0, v_star, tau2, alpha)
        detail = {"tau2": tau2, "lambda": lam, "n_star": e.n_star, "halfwidth_at_horizon": planned_hw}
    elif method in ("gsd_obf", "gsd_pocock"):
        return _test_gsd(e, method, alpha, power, looks, upper, p_harm)
    elif method == "fixed":
        return _test_fixed(e, alpha, upper, p_harm, fixed_inputs or {})
    else:
        raise ValueError(f"unknown method {method!r}")
    if lower > e.threshold:
        status = "non_inferior"
    elif upper < e.threshold:
        status = "harm"
    elif _final_look(e):
        status = "futile"
    elif upper < e.threshold + planned_hw:
        # even an effect at the upper bound would leave the horizon's lower bound below the threshold
        status = "futile"
    else:
        status = "continue"
    return QualityTest(status, lower, upper, p, p_harm, detail)


def _look_points(fractions: list[float], k_looks: int) -> list[float]:
    """The information fraction at which each planned look (k / K) was first reached."""
    points: list[float] = []
    for k in range(1, k_looks + 1):
        hit = next((f for f in fractions if f >= k / k_looks - 1e-12), None)
        if hit is not None:
            hit = min(hit, 1.0)
            if not points or hit > points[-1]:
                points.append(hit)
    return points


def _test_gsd(e: Effect, method: str, alpha: float, power: float, looks: tuple[float, ...], upper: float,
              p_harm: float) -> QualityTest:
    t_now = min(e.n / e.n_star, 1.0)
    before = _look_points(sorted(looks), GSD_LOOKS)
    now = _look_points(sorted(list(looks) + [t_now]), GSD_LOOKS)
    z = (e.estimate - e.threshold) / math.sqrt(e.variance)
    spending = "obf" if method == "gsd_obf" else "pocock"
    detail: dict = {"z": z, "information_fraction": t_now, "planned_looks": GSD_LOOKS, "look_fractions": now}
    if upper < e.threshold:
        return QualityTest("harm", -math.inf, upper, 1.0, p_harm, detail)
    # past the horizon every analysis is the final look again, on the overrun data
    is_look = len(now) > len(before) or t_now >= 1.0
    if not is_look:
        detail["next_look_at"] = (len(now) + 1) / GSD_LOOKS
        return QualityTest("continue", -math.inf, upper, 1.0, p_harm, detail)
    # Spending is over the planned maximum information (fractions n / n_star, interim looks as
    # observed); the futility bounds come from beta spending at the drift the plan was sized for.
    drift = gsd.drift_for_power(gsd.planned_fractions(GSD_LOOKS), alpha, spending, power)
    d = gsd.design(now, alpha, spending, sides=1, beta=1 - power, drift=drift)
    bound = d.upper[-1]
    futility = d.lower[-1] if d.lower else -math.inf
    lower = e.estimate - bound * math.sqrt(e.variance)
    detail.update({"boundary": bound, "futility_boundary": futility, "design": d.to_dict(), "look": len(now)})
    p_nominal = float(stats.norm.sf(z))
    if z >= bound:
        return QualityTest("non_inferior", lower, upper, p_nominal, p_harm, detail)
    if t_now >= 1.0 or z < futility:
        return QualityTest("futile", lower, upper, p_nominal, p_harm, detail)
    return QualityTest("continue", lower, upper, p_nominal, p_harm, detail)


def _test_fixed(e: Effect, alpha: float, upper: float, p_harm: float, inputs: dict) -> QualityTest:
    detail: dict = {"information_fraction": min(e.n / e.n_star, 1.0)}
    if upper < e.threshold:
        return QualityTest("harm", -math.inf, upper, 1.0, p_harm, detail)
    if not _final_look(e):
        detail["note"] = "a fixed-horizon test is read once, at the planned sample; looking earlier would inflate alpha"
        return QualityTest("continue", -math.inf, upper, 1.0, p_harm, detail)
    binary = inputs.get("binary") and not e.paired and e.scale == "absolute"
    if binary:
        x1, n1, x2, n2 = inputs["x_better_first"]
        r = fixed.farrington_manning(x1, n1, x2, n2, e.threshold, "larger")
        lower = fixed.score_interval(x1, n1, x2, n2, 1 - 2 * alpha, miettinen_nurminen=False)[0]
        detail["test"] = "Farrington-Manning score"
        p, stat = r.p_value, r.statistic
    else:
        stat = (e.estimate - e.threshold) / math.sqrt(e.variance)
        p = float(stats.norm.sf(stat))
        lower = e.estimate - stats.norm.isf(alpha) * math.sqrt(e.variance)
        detail["test"] = "z (Welch, large sample)" if not e.paired else "paired z"
    detail["statistic"] = stat
    status = "non_inferior" if p < alpha else "futile"
    return QualityTest(status, lower, upper, p, p_harm, detail)
