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


def plan(method: str, *, margin: float, variance: float, alpha: float = 0.05, power: float = 0.8,
         true_diff: float = 0.0, paired: bool = False, traffic_per_day: float | None = None, share: float = 1.0,
         looks: int = 5) -> Plan:
    """Sample size per arm (paired: requests) and duration for ``method``."""
    gap = true_diff + margin
    if gap <= 0:
        raise ValueError("non-inferiority cannot be shown when the true difference is at or below -margin")
    za, zb = stats.norm.isf(alpha), stats.norm.isf(1 - power)
    n_fixed = (za + zb) ** 2 * variance / gap**2
    if method == "fixed":
        n = math.ceil(n_fixed)
        return Plan(method, n, n, _days(n, paired, traffic_per_day, share))
    if method in ("gsd_obf", "gsd_pocock"):
        fractions = [k / looks for k in range(1, looks + 1)]
        d = gsd.design(fractions, alpha, "obf" if method == "gsd_obf" else "pocock", sides=1)

        def power_at(drift: float) -> float:
            up, _ = gsd.crossing_probabilities(d.upper, fractions, drift=drift)
            return float(up.sum())

        drift = optimize.brentq(lambda x: power_at(x) - power, za + zb - 1, za + zb + 3, xtol=1e-8)
        n = math.ceil(n_fixed * (drift / (za + zb)) ** 2)
        up, _ = gsd.crossing_probabilities(d.upper, fractions, drift=drift)
        stop_by = [float(u) for u in up]
        expected = sum(p * f * n for p, f in zip(stop_by, fractions)) + (1 - sum(stop_by)) * n
        return Plan(method, n, expected, _days(n, paired, traffic_per_day, share))
    if method in ("asymptotic_cs", "msprt"):
        # units of information: n_info = n (paired) or 2n (unpaired); the variance of the estimate is variance / n
        info_per_arm = 1 if paired else 2

        def shortfall(n: float) -> float:
            se = math.sqrt(variance / n)
            n_info = info_per_arm * n
            if method == "asymptotic_cs":
                rho = sequential.cs_rho(alpha, n_info, one_sided=True)
                hw = sequential.cs_halfwidth_one_sided(se * se, n_info, alpha, rho)
            else:
                tau2 = sequential.msprt_tau2(se * se * n_info, n_info, alpha)
                hw = -sequential.msprt_lower_bound(0.0, se * se, tau2, alpha)
            return stats.norm.cdf((gap - hw) / se) - power

        hi = n_fixed
        while shortfall(hi) < 0:
            hi *= 2
        n = math.ceil(optimize.brentq(shortfall, n_fixed, hi, xtol=0.5)) if shortfall(n_fixed) < 0 else math.ceil(n_fixed)
        return Plan(method, n, n, _days(n, paired, traffic_per_day, share))
    raise ValueError(f"unknown method {method!r}")
