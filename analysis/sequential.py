"""Always-valid (anytime) inference: valid no matter how often, or when, one looks.

Two families, both working on an estimate and the variance of that estimate at the current look:

* The **asymptotic confidence sequence** of Waudby-Smith, Arnold, Wu, Pacheco & Ramdas
  (arXiv 2103.06476), with the mixture parameter rho set from a planned sample size N*, exactly as
  GrowthBook's gbstats implements it (two-sided eq. 9, one-sided eq. 134, p-value eq. 155).
* The **mixture sequential probability ratio test** (mSPRT) of Johari, Koomen, Pekelis & Walsh
  ("Peeking at A/B tests", KDD 2017; "Always valid inference", Oper. Res. 2022) with a
  N(theta0, tau^2) mixture, and a one-sided variant with a half-normal mixture over the
  alternative only, which is what a non-inferiority question needs.

Notation: ``estimate`` is the effect (e.g. challenger minus champion), ``variance`` the variance of
that estimate (s^2 / N for a mean of N units), ``n`` the number of units it rests on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from scipy import optimize, special, stats

__all__ = [
    "cs_rho", "cs_halfwidth", "cs_halfwidth_one_sided", "cs_p_value", "cs_p_value_one_sided", "ConfidenceSequence",
    "asymptotic_cs", "msprt_lambda", "msprt_one_sided_lambda", "msprt_interval", "msprt_lower_bound",
    "msprt_p_values", "msprt_tau2", "MIN_MSPRT_RATIO",
]


# -- asymptotic confidence sequence (gbstats) -------------------------------------------------

def cs_rho(alpha: float, n_star: float, *, one_sided: bool = False) -> float:
    """Mixture parameter rho for the planned total sample ``n_star`` (gbstats ``sequential_rho``)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_star <= 0:
        raise ValueError(f"the tuning sample size must be > 0, got {n_star}")
    a = 2 * alpha if one_sided else alpha
    if a >= 1:
        raise ValueError("a one-sided sequential test needs alpha < 0.5")
    return math.sqrt((-2 * math.log(a) + math.log(-2 * math.log(a) + 1)) / n_star)


def _scale(n: float, rho: float) -> float:
    return 2 * (n * rho * rho + 1) / (n * n * rho * rho)


def cs_halfwidth(variance: float, n: float, alpha: float, rho: float) -> float:
    """Two-sided half-width; ``variance`` is that of the estimate, so s^2 = variance * n."""
    s2 = variance * n
    return math.sqrt(s2 * _scale(n, rho) * math.log(math.sqrt(n * rho * rho + 1) / alpha))


def cs_halfwidth_one_sided(variance: float, n: float, alpha: float, rho: float) -> float:
    s2 = variance * n
    return math.sqrt(s2 * _scale(n, rho) * math.log(1 + math.sqrt(n * rho * rho + 1) / (2 * alpha)))


def cs_p_value(estimate: float, variance: float, n: float, rho: float, null: float = 0.0) -> float:
    """Two-sided always-valid p-value (gbstats eq. 155): p = min(1, 1/E_N)."""
    if variance <= 0:
        return 0.0 if estimate != null else 1.0
    s2 = (estimate - null) ** 2 * n / variance  # S^2 of eq. 155
    log_e = -0.5 * math.log(n * rho * rho + 1) + rho * rho * s2 / (2 * (n * rho * rho + 1))
    return min(1.0, math.exp(-log_e)) if log_e < 700 else 0.0


def cs_p_value_one_sided(estimate: float, variance: float, n: float, rho: float, null: float = 0.0,
                         *, larger: bool = True) -> float:
    """Smallest alpha at which the one-sided CS excludes ``null`` (closed form of gbstats' bisection).

    ``larger=True`` is H1: effect > null, decided by the lower bound estimate - halfwidth.
    """
    gap = (estimate - null) if larger else (null - estimate)
    if gap <= 0:
        return 1.0
    if variance <= 0:
        return 0.0
    # gap^2 = variance * n * scale * ln(1 + sqrt(n rho^2 + 1) / (2 alpha))  =>  solve for alpha
    log_term = gap * gap / (variance * n * _scale(n, rho))
    if log_term > 700:
        return 0.0
    return min(1.0, math.sqrt(n * rho * rho + 1) / (2 * math.expm1(log_term)))


@dataclass(frozen=True)
class ConfidenceSequence:
    estimate: float
    lower: float
    upper: float
    p_value: float
    halfwidth: float
    rho: float
    n: float


def asymptotic_cs(estimate: float, variance: float, n: float, alpha: float, n_star: float,
                  *, sides: int = 2, null: float = 0.0, larger: bool = True) -> ConfidenceSequence:
    """The asymptotic CS at one look.  ``sides=1`` gives a one-sided bound ([lower, inf) when
    ``larger``) at level alpha, with rho tuned for 2 alpha as gbstats does."""
    if sides == 2:
        rho = cs_rho(alpha, n_star)
        hw = cs_halfwidth(variance, n, alpha, rho)
        return ConfidenceSequence(estimate, estimate - hw, estimate + hw, cs_p_value(estimate, variance, n, rho, null),
                                  hw, rho, n)
    rho = cs_rho(alpha, n_star, one_sided=True)
    hw = cs_halfwidth_one_sided(variance, n, alpha, rho)
    p = cs_p_value_one_sided(estimate, variance, n, rho, null, larger=larger)
    if larger:
        return ConfidenceSequence(estimate, estimate - hw, math.inf, p, hw, rho, n)
    return ConfidenceSequence(estimate, -math.inf, estimate + hw, p, hw, rho, n)


# -- mSPRT (normal mixture) -------------------------------------------------------------------

MIN_MSPRT_RATIO = 1e-12


def msprt_lambda(estimate: float, variance: float, tau2: float, theta0: float = 0.0) -> float:
    """Mixture likelihood ratio with mixing N(theta0, tau2); ``variance`` = V / n.

    Lambda = sqrt(v / (v + tau2)) * exp(tau2 (est - theta0)^2 / (2 v (v + tau2))).
    """
    v = variance
    return math.sqrt(v / (v + tau2)) * math.exp(min(tau2 * (estimate - theta0) ** 2 / (2 * v * (v + tau2)), 700))


def msprt_one_sided_lambda(estimate: float, variance: float, tau2: float, theta0: float = 0.0,
                           *, larger: bool = True) -> float:
    """Half-normal mixture over the alternative side only (H1: effect > theta0 when ``larger``).

    Integrating the normal likelihood ratio against a N(0, tau2) density folded onto theta > theta0:
    Lambda+ = 2 sqrt(v/(v+tau2)) exp(x^2 tau2 / (2 v (v+tau2))) Phi(x tau / sqrt(v (v+tau2))), x = est - theta0.
    It is a nonnegative supermartingale under every effect <= theta0, so 1/Lambda+ is an always-valid
    p-value for the one-sided null.
    """
    v = variance
    x = (estimate - theta0) if larger else (theta0 - estimate)
    log_l = (math.log(2) + 0.5 * math.log(v / (v + tau2)) + x * x * tau2 / (2 * v * (v + tau2))
             + float(special.log_ndtr(x * math.sqrt(tau2) / math.sqrt(v * (v + tau2)))))
    return math.exp(min(log_l, 700))


def msprt_interval(estimate: float, variance: float, tau2: float, alpha: float) -> tuple[float, float]:
    """Two-sided always-valid interval: the thetas with Lambda(theta) < 1/alpha."""
    v = variance
    hw = math.sqrt(v * (v + tau2) / tau2 * (math.log((v + tau2) / v) - 2 * math.log(alpha)))
    return estimate - hw, estimate + hw


def msprt_lower_bound(estimate: float, variance: float, tau2: float, alpha: float, *, larger: bool = True) -> float:
    """One-sided always-valid bound: the smallest theta0 not rejected by the half-normal mSPRT
    (``larger``), or the largest (otherwise).  Lambda+ depends on the estimate and theta0 only through
    their difference, so the bound is the estimate -/+ a half-width that depends on (v, tau2, alpha)."""
    hw = _msprt_halfwidth(float(variance), float(tau2), float(alpha))
    return estimate - hw if larger else estimate + hw


@lru_cache(maxsize=4096)
def _msprt_halfwidth(variance: float, tau2: float, alpha: float) -> float:
    """h with log Lambda+(x = h) = -log alpha (Lambda+ is increasing in x, so a root search works)."""
    sd = math.sqrt(variance)

    def excess(h: float) -> float:
        return math.log(msprt_one_sided_lambda(h, variance, tau2, 0.0)) + math.log(alpha)

    if excess(0.0) >= 0:  # even theta0 = estimate is rejected: cannot happen for alpha < 1
        return 0.0
    if excess(50 * sd) < 0:
        return 50 * sd
    return float(optimize.brentq(excess, 0.0, 50 * sd, xtol=1e-15 + 1e-12 * sd))


def msprt_p_values(lambdas: Iterable[float]) -> list[float]:
    """Running always-valid p-values p_n = min(p_{n-1}, 1/Lambda_n), p_0 = 1."""
    out, p = [], 1.0
    for lam in lambdas:
        p = min(p, 1.0 / max(lam, MIN_MSPRT_RATIO))
        out.append(p)
    return out


@lru_cache(maxsize=64)
def _ratio_minimiser(alpha: float) -> float:
    """r = tau2 / v minimising the two-sided boundary sqrt((1+r)/r (ln(1+r) - 2 ln alpha))."""
    f = lambda lr: (1 + math.exp(lr)) / math.exp(lr) * (math.log1p(math.exp(lr)) - 2 * math.log(alpha))  # noqa: E731
    return math.exp(optimize.minimize_scalar(f, bounds=(-10, 10), method="bounded").x)


def msprt_tau2(unit_variance: float, planned_n: float, alpha: float) -> float:
    """tau^2 that makes the mSPRT boundary tightest when the estimate rests on ``planned_n`` units
    (variance of the estimate unit_variance / planned_n): the planned horizon sets the tuning, the
    same role N* plays for the asymptotic CS."""
    return _ratio_minimiser(alpha) * unit_variance / planned_n


def lambdas_for_looks(looks: Sequence[tuple[float, float]], tau2: float, theta0: float = 0.0) -> list[float]:
    """Lambda at each (estimate, variance) look."""
    return [msprt_lambda(e, v, tau2, theta0) for e, v in looks]
