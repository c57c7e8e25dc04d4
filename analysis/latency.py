"""Latency: a sequential test of a tail-latency SLO, and quantiles with intervals from sketches.

The SLO "at most a share pi of requests is slower than X ms" is a statement about a Bernoulli rate
p = P(latency > X).  Each request is one Bernoulli draw, so the number of slow requests among n is
an exact sufficient statistic, and the test needs no normal approximation:

* To **show the SLO holds** (H0: p >= pi) the e-process is the likelihood ratio of the data under
  p' against pi, mixed over a Beta(a, b) prior truncated to p' < pi.  For every p >= pi it is a
  nonnegative supermartingale, so rejecting when it reaches 1/alpha is valid under continuous
  monitoring (Ville's inequality).  With s slow requests out of n:

      E_n = [B_pi(a + s, b + n - s) / B_pi(a, b)] / [pi^s (1 - pi)^(n - s)]

  where B_x is the incomplete beta function.  The **violation alarm** (H0: p <= pi) is the mirror
  image with the prior on p' > pi.
* Quantiles (p50/p95/p99) per arm come from the merged sketch with distribution-free intervals;
  the challenger-minus-champion difference uses the two intervals' normal approximations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special, stats

from analysis.sketch import LatencySketch

__all__ = ["SLOTest", "slo_e_value", "slo_log_e_value", "slo_test", "quantile_difference", "quantile_summary"]

PRIOR_CONCENTRATION = 20.0


def _prior(pi: float) -> tuple[float, float]:
    return max(pi * PRIOR_CONCENTRATION, 0.5), max((1 - pi) * PRIOR_CONCENTRATION, 0.5)


def _log_partial_beta(a: float, b: float, x: float, upper: bool) -> float:
    """log of the incomplete beta integral over [0, x] (or [x, 1] when ``upper``)."""
    tail = stats.beta.logsf(x, a, b) if upper else stats.beta.logcdf(x, a, b)
    return float(tail + special.betaln(a, b))


def slo_e_value(slow: int, n: int, pi: float, *, show_below: bool = True) -> float:
    """Beta–binomial mixture e-value against H0: p >= pi (``show_below``) or H0: p <= pi."""
    return math.exp(min(slo_log_e_value(slow, n, pi, show_below=show_below), 700.0))


def slo_log_e_value(slow: int, n: int, pi: float, *, show_below: bool = True) -> float:
    if not 0 < pi < 1:
        raise ValueError(f"the SLO share must be in (0, 1), got {pi}")
    if not 0 <= slow <= n:
        raise ValueError("need 0 <= slow <= n")
    if n == 0:
        return 0.0
    a, b = _prior(pi)
    upper = not show_below
    return (_log_partial_beta(a + slow, b + n - slow, pi, upper) - _log_partial_beta(a, b, pi, upper)
            - slow * math.log(pi) - (n - slow) * math.log1p(-pi))


@dataclass(frozen=True)
class SLOTest:
    n: int
    slow: int
    share: float
    share_ci: tuple[float, float]
    threshold_ms: float
    max_share: float
    p_holds: float      # always-valid p-value for H0: share >= max_share
    p_violated: float   # always-valid p-value for H0: share <= max_share

    def to_dict(self) -> dict:
        return {"n": self.n, "slow": self.slow, "share": self.share, "share_ci": list(self.share_ci),
                "threshold_ms": self.threshold_ms, "max_share": self.max_share,
                "p_holds": self.p_holds, "p_violated": self.p_violated}


def slo_test(slow: int, n: int, threshold_ms: float, max_share: float, confidence: float = 0.95) -> SLOTest:
    share = slow / n if n else math.nan
    if n:
        a = 1 - confidence  # Clopper–Pearson interval, for display
        lo = 0.0 if slow == 0 else float(stats.beta.ppf(a / 2, slow, n - slow + 1))
        hi = 1.0 if slow == n else float(stats.beta.ppf(1 - a / 2, slow + 1, n - slow))
    else:
        lo = hi = math.nan
    return SLOTest(n, slow, share, (lo, hi), threshold_ms, max_share,
                   math.exp(min(0.0, -slo_log_e_value(slow, n, max_share, show_below=True))),
                   math.exp(min(0.0, -slo_log_e_value(slow, n, max_share, show_below=False))))


def quantile_summary(sketch: LatencySketch | None, confidence: float = 0.95) -> dict:
    if sketch is None or sketch.count == 0:
        return {}
    out = {}
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        est = sketch.quantile_interval(q, confidence)
        out[name] = {"value": est.value, "ci": [est.lower, est.upper]}
    return out


def quantile_difference(control: tuple[float, float, float], treatment: tuple[float, float, float],
                        confidence: float = 0.95, *, relative: bool = False) -> tuple[float, tuple[float, float]]:
    """Difference (or relative difference) of two independent quantile estimates given as
    (estimate, lower, upper) at ``confidence``: each interval is read as estimate +- z se, and the
    difference's se combines them (the delta method for the relative version)."""
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    qc, lc, uc = control
    qt, lt, ut = treatment
    se_c, se_t = (uc - lc) / (2 * z), (ut - lt) / (2 * z)
    if relative:
        est = qt / qc - 1
        se = math.sqrt(se_t**2 / qc**2 + qt**2 * se_c**2 / qc**4)
    else:
        est = qt - qc
        se = math.sqrt(se_t**2 + se_c**2)
    return est, (est - z * se, est + z * se)
