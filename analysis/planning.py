"""Planning: how many units (and how many days) a non-inferiority experiment needs.

All sizes are for H0: effect <= -margin against a true effect ``true_diff`` (0 = the challenger is
exactly as good), one-sided level alpha, with the stated power.

* **Fixed horizon** (the textbook formula): n = (z_{1-alpha} + z_{1-beta})^2 V / (true_diff + margin)^2,
  where V is the variance of one unit's contribution to the estimate (per arm: var_c + var_t;
  paired: the variance of the per-request difference).
* **Group sequential** (Lan–DeMets spending, K looks): the maximum sample is the fixed one times the
  inflation factor (drift needed for the power with the design's boundaries / fixed drift)^2, found
  with the same recursive integration as the boundaries; the expected sample under the alternative
  follows from the stopping probabilities.
* **Always-valid** (asymptotic CS, mSPRT): the sample at which a single look would show
  non-inferiority with the stated power, i.e. P(lower bound > -margin) = power.  Continuous
  monitoring stops earlier in most runs, so this is the horizon to plan for (and to set N* from).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize, stats

from analysis import gsd, sequential

__all__ = ["Plan", "unit_variance", "plan"]


def unit_variance(kind: str, *, baseline: float, sd: float | None = None, paired: bool = False,
                  agreement: float | None = None, true_diff: float = 0.0) -> float:
    """Variance of one unit's contribution: var_c + var_t (unpaired) or Var(D) (paired)."""
    if paired:
        if kind == "binary":
            if agreement is None:
                raise ValueError("a paired binary plan needs the models' agreement rate")
            return (1 - agreement) - true_diff**2
        if sd is None:
            raise ValueError("a continuous plan needs the sd (of the paired difference when paired)")
        return sd * sd
    if kind == "binary":
        pt = baseline + true_diff
        return baseline * (1 - baseline) + pt * (1 - pt)
    if sd is None:
        raise ValueError("a continuous plan needs the per-unit sd")
    return 2 * sd * sd


@dataclass(frozen=True)
class Plan:
    method: str
    n_per_arm: int                 # paired: requests
    expected_n_per_arm: float      # under the alternative (equal to n for fixed / always-valid)
    days: float | None

    def to_dict(self) -> dict:
        return {"method": self.method, "n_per_arm": self.n_per_arm, "expected_n_per_arm": self.expected_n_per_arm,
                "days": self.days}


def _days(n_per_arm: float, paired: bool, traffic_per_day: float | None, share: float) -> float | None:
    if not traffic_per_day:
        return None
    units = n_per_arm if paired else 2 * n_per_arm
    return units / (traffic_per_day * share)


def monitored_power(method: str, n_per_arm: float, *, margin: float, variance: float, alpha: float,
                    alpha_harm: float, true_diff: float = 0.0, info_per_arm: int = 2, analyses: int = 50,
                    min_sample: int = 200) -> float:
    """P(PROMOTE on quality) for an always-valid method analysed ``analyses`` times up to a horizon of
    ``n_per_arm``, with the decision's own rules (:func:`analysis.quality.test_quality`): show
    non-inferiority when the lower bound clears the threshold; stop as futile when the harm bound's
    upper end is below threshold + the horizon's half-width, or at the horizon.  Each rule is a
    boundary on the z statistic that depends only on the look's sample, so the crossing
    probabilities come from the same recursive integration as the group sequential designs."""
    n_star = info_per_arm * n_per_arm
    fractions = [k / analyses for k in range(1, analyses + 1)]
    fractions = [t for t in fractions if info_per_arm * n_per_arm * t >= min_sample] or [1.0]
    rho_harm = sequential.cs_rho(alpha_harm, n_star, one_sided=True)
    if method == "asymptotic_cs":
        rho = sequential.cs_rho(alpha, n_star, one_sided=True)

        def halfwidth(var: float, n_info: float) -> float:
            return sequential.cs_halfwidth_one_sided(var, n_info, alpha, rho)
    else:
        # as the decision tunes it: the per-information-unit variance (variance of the estimate x its n)
        tau2 = sequential.msprt_tau2(variance * info_per_arm, n_star, alpha)

        def halfwidth(var: float, n_info: float) -> float:
            return -sequential.msprt_lower_bound(0.0, var, tau2, alpha)
    planned_hw = halfwidth(variance / n_per_arm, n_star)
    upper, lower = [], []
    for t in fractions:
        n = n_per_arm * t
        se = math.sqrt(variance / n)
        upper.append(halfwidth(se * se, info_per_arm * n) / se)
        harm_hw = sequential.cs_halfwidth_one_sided(se * se, info_per_arm * n, alpha_harm, rho_harm)
        lower.append(min((planned_hw - harm_hw) / se, upper[-1]))
    lower[-1] = upper[-1]  # the horizon: non-inferior now or futile
    drift = (true_diff + margin) * math.sqrt(n_per_arm / variance)
    up, _ = gsd.crossing_probabilities(upper, fractions, lower, drift=drift, grid=201)
    return float(up.sum())


def plan(method: str, *, margin: float, variance: float, alpha: float = 0.05, power: float = 0.8,
         true_diff: float = 0.0, paired: bool = False, traffic_per_day: float | None = None, share: float = 1.0,
         looks: int = 5, analyses: int = 50, harm_alarms: int = 1, min_sample: int = 200) -> Plan:
    """Sample size per arm (paired: requests) and duration for ``method``.

    ``looks`` is a group sequential design's planned number of looks.  The always-valid methods are
    planned for the way they are used: analysed ``analyses`` times (evenly) up to the horizon and
    stopped by the decision's futility rule, so the power is that of the monitored experiment.
    ``harm_alarms`` is how many harm alarms share alpha (quality, plus each configured guardrail).
    """
    gap = true_diff + margin
    if gap <= 0:
        raise ValueError("non-inferiority cannot be shown when the true difference is at or below -margin")
    za, zb = stats.norm.isf(alpha), stats.norm.isf(1 - power)
    n_fixed = (za + zb) ** 2 * variance / gap**2
    if method == "fixed":
        n = math.ceil(n_fixed)
        return Plan(method, n, n, _days(n, paired, traffic_per_day, share))
    if method in ("gsd_obf", "gsd_pocock"):
        # the decision stops for futility at the design's non-binding bounds, so the plan counts those
        # stops: the drift is the one at which P(efficacy before futility) = power
        fractions = gsd.planned_fractions(looks)
        spending = "obf" if method == "gsd_obf" else "pocock"
        drift = gsd.drift_for_power(fractions, alpha, spending, power)
        d = gsd.design(fractions, alpha, spending, sides=1, beta=1 - power, drift=drift)
        n = math.ceil(n_fixed * (drift / (za + zb)) ** 2)
        up, down = gsd.crossing_probabilities(d.upper, fractions, d.lower, drift=drift)
        stops = [float(u + v) for u, v in zip(up, down)]
        expected = sum(p * f * n for p, f in zip(stops, fractions)) + (1 - sum(stops)) * n
        return Plan(method, n, expected, _days(n, paired, traffic_per_day, share))
    if method in ("asymptotic_cs", "msprt"):
        info_per_arm = 1 if paired else 2
        alpha_harm = alpha / harm_alarms

        def power_at(n: float) -> float:
            return monitored_power(method, n, margin=margin, variance=variance, alpha=alpha, alpha_harm=alpha_harm,
                                   true_diff=true_diff, info_per_arm=info_per_arm, analyses=analyses,
                                   min_sample=min_sample)

        lo, hi = 0.3 * n_fixed, n_fixed
        while power_at(hi) < power:
            lo, hi = hi, hi * 2
        while power_at(lo) > power and lo > 10:
            lo /= 2
        n = math.ceil(optimize.brentq(lambda x: power_at(x) - power, lo, hi, xtol=0.5))
        return Plan(method, n, n, _days(n, paired, traffic_per_day, share))
    raise ValueError(f"unknown method {method!r}")
