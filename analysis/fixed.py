"""Fixed-horizon tests: the reference methods, and the final look of a planned design.

Every function takes summaries (counts, or n / mean / variance) rather than raw rows.  Alternatives
are named as in R and statsmodels: ``"larger"`` tests H1: effect > null, ``"smaller"`` H1: effect <
null, ``"two-sided"`` both.  Proportion tests put the *treatment* (challenger) first: the effect is
``p1 - p2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
from scipy import optimize, stats

Alternative = Literal["larger", "smaller", "two-sided"]

__all__ = [
    "TestResult", "SampleSummary", "farrington_manning", "score_interval", "wald_two_proportions",
    "agresti_caffo_interval", "welch_test", "relative_welch_test", "z_test_difference", "tost",
    "mcnemar", "chi_square_gof",
]


@dataclass(frozen=True)
class TestResult:
    statistic: float
    p_value: float
    estimate: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)
    df: float | None = None
    se: float = math.nan
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SampleSummary:
    """n, mean and unbiased variance of one sample."""

    n: int
    mean: float
    var: float

    @classmethod
    def from_moments(cls, m) -> "SampleSummary":
        return cls(m.n, m.mean, m.variance)


def _p_from_z(z: float, alternative: Alternative) -> float:
    if alternative == "larger":
        return float(stats.norm.sf(z))
    if alternative == "smaller":
        return float(stats.norm.cdf(z))
    return float(2 * stats.norm.sf(abs(z)))


def _p_from_t(t: float, df: float, alternative: Alternative) -> float:
    if alternative == "larger":
        return float(stats.t.sf(t, df))
    if alternative == "smaller":
        return float(stats.t.cdf(t, df))
    return float(2 * stats.t.sf(abs(t), df))


# -- two proportions --------------------------------------------------------------------------

def _restricted_mle(x1: int, n1: int, x2: int, n2: int, delta: float) -> tuple[float, float]:
    """MLE of (p1, p2) under p1 - p2 = delta (Farrington & Manning 1990, closed-form cubic root)."""
    p1, p2 = x1 / n1, x2 / n2
    theta = n2 / n1
    a = 1 + theta
    b = -(1 + theta + p1 + theta * p2 + delta * (theta + 2))
    c = delta * delta + delta * (2 * p1 + theta + 1) + p1 + theta * p2
    d = -p1 * delta * (1 + delta)
    v = b**3 / (27 * a**3) - b * c / (6 * a * a) + d / (2 * a)
    u2 = b * b / (9 * a * a) - c / (3 * a)
    u = math.copysign(math.sqrt(max(u2, 0.0)), v) if v != 0 else math.sqrt(max(u2, 0.0))
    if u == 0:
        r1 = -b / (3 * a)
    else:
        w = (math.pi + math.acos(max(-1.0, min(1.0, v / u**3)))) / 3
        r1 = 2 * u * math.cos(w) - b / (3 * a)
    r1 = min(max(r1, 0.0), 1.0)
    r2 = min(max(r1 - delta, 0.0), 1.0)
    return r1, r2


def farrington_manning(x1: int, n1: int, x2: int, n2: int, delta: float = 0.0,
                       alternative: Alternative = "larger", *, miettinen_nurminen: bool = False) -> TestResult:
    """Score test of H0: p1 - p2 = delta (one-sided: <= or >=).

    ``miettinen_nurminen=True`` multiplies the restricted variance by N/(N-1), N = n1 + n2, which is
    the Miettinen–Nurminen (1985) score statistic.  Non-inferiority with margin m on a
    higher-is-better rate is ``delta=-m, alternative="larger"``.
    """
    if not (0 <= x1 <= n1 and 0 <= x2 <= n2 and n1 > 0 and n2 > 0):
        raise ValueError("need 0 <= x <= n and n > 0 in both arms")
    if not -1 < delta < 1:
        raise ValueError(f"delta must be in (-1, 1), got {delta}")
    r1, r2 = _restricted_mle(x1, n1, x2, n2, delta)
    var = r1 * (1 - r1) / n1 + r2 * (1 - r2) / n2
    if miettinen_nurminen:
        var *= (n1 + n2) / (n1 + n2 - 1)
    diff = x1 / n1 - x2 / n2
    if var <= 0:
        z = math.inf if diff > delta else (-math.inf if diff < delta else 0.0)
    else:
        z = (diff - delta) / math.sqrt(var)
    return TestResult(z, _p_from_z(z, alternative), diff, se=math.sqrt(max(var, 0.0)),
                      extra={"restricted_mle": (r1, r2), "delta": delta})


def score_interval(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95,
                   *, miettinen_nurminen: bool = True) -> tuple[float, float]:
    """Two-sided score interval for p1 - p2 by inverting the score test (PropCIs::diffscoreci)."""
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    diff = x1 / n1 - x2 / n2
    eps = 1e-10

    def stat(d: float) -> float:
        return farrington_manning(x1, n1, x2, n2, d, miettinen_nurminen=miettinen_nurminen).statistic

    lower = -1 + eps if stat(-1 + eps) <= z else optimize.brentq(lambda d: stat(d) - z, -1 + eps, diff, xtol=1e-12)
    upper = 1 - eps if stat(1 - eps) >= -z else optimize.brentq(lambda d: stat(d) + z, diff, 1 - eps, xtol=1e-12)
    return float(lower), float(upper)


def wald_two_proportions(x1: int, n1: int, x2: int, n2: int, delta: float = 0.0,
                         alternative: Alternative = "larger", confidence: float = 0.95) -> TestResult:
    """Unpooled Wald z test of H0: p1 - p2 = delta, with its Wald interval."""
    p1, p2 = x1 / n1, x2 / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    diff = p1 - p2
    z = (diff - delta) / se if se > 0 else (math.inf if diff > delta else -math.inf if diff < delta else 0.0)
    q = stats.norm.ppf(1 - (1 - confidence) / 2)
    return TestResult(z, _p_from_z(z, alternative), diff, (diff - q * se, diff + q * se), se=se)


def agresti_caffo_interval(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Agresti–Caffo interval: add one success and one failure to each arm, then Wald."""
    p1, p2 = (x1 + 1) / (n1 + 2), (x2 + 1) / (n2 + 2)
    se = math.sqrt(p1 * (1 - p1) / (n1 + 2) + p2 * (1 - p2) / (n2 + 2))
    q = stats.norm.ppf(1 - (1 - confidence) / 2)
    return p1 - p2 - q * se, p1 - p2 + q * se


# -- means ------------------------------------------------------------------------------------

def _welch_df(v1: float, n1: int, v2: float, n2: int) -> float:
    a, b = v1 / n1, v2 / n2
    denom = a * a / (n1 - 1) + b * b / (n2 - 1)
    return (a + b) ** 2 / denom if denom > 0 else math.inf


def welch_test(x: SampleSummary, y: SampleSummary, mu0: float = 0.0, alternative: Alternative = "two-sided",
               *, var_equal: bool = False, confidence: float = 0.95) -> TestResult:
    """t test of H0: mean(x) - mean(y) = mu0 (Welch–Satterthwaite df, or pooled with ``var_equal``).

    The interval is for mean(x) - mean(y), two-sided at ``confidence`` (as R's t.test reports it).
    """
    diff = x.mean - y.mean
    if var_equal:
        df = x.n + y.n - 2
        pooled = ((x.n - 1) * x.var + (y.n - 1) * y.var) / df
        se = math.sqrt(pooled * (1 / x.n + 1 / y.n))
    else:
        df = _welch_df(x.var, x.n, y.var, y.n)
        se = math.sqrt(x.var / x.n + y.var / y.n)
    t = (diff - mu0) / se
    q = stats.t.ppf(1 - (1 - confidence) / 2, df)
    return TestResult(t, _p_from_t(t, df, alternative), diff, (diff - q * se, diff + q * se), df=df, se=se)


def relative_welch_test(treatment: SampleSummary, control: SampleSummary, null: float = 0.0,
                        alternative: Alternative = "two-sided", confidence: float = 0.95) -> TestResult:
    """Relative lift mean(t)/mean(c) - 1 with the delta-method variance and Welch df (gbstats' TTest)."""
    mc, mt = control.mean, treatment.mean
    est = mt / mc - 1
    var = treatment.var / (treatment.n * mc * mc) + control.var * mt * mt / (control.n * mc**4)
    se = math.sqrt(var)
    df = _welch_df(treatment.var, treatment.n, control.var, control.n)
    t = (est - null) / se
    if alternative == "two-sided":
        q = stats.t.ppf(1 - (1 - confidence) / 2, df)
        ci = (est - q * se, est + q * se)
    else:
        q = stats.t.ppf(confidence, df)
        ci = (est - q * se, math.inf) if alternative == "larger" else (-math.inf, est + q * se)
    return TestResult(t, _p_from_t(t, df, alternative), est, ci, df=df, se=se)


def z_test_difference(x: SampleSummary, y: SampleSummary, mu0: float = 0.0, alternative: Alternative = "two-sided",
                      confidence: float = 0.95) -> TestResult:
    """Unpooled z test of H0: mean(x) - mean(y) = mu0 (large-sample)."""
    diff = x.mean - y.mean
    se = math.sqrt(x.var / x.n + y.var / y.n)
    z = (diff - mu0) / se
    if alternative == "two-sided":
        q = stats.norm.ppf(1 - (1 - confidence) / 2)
        ci = (diff - q * se, diff + q * se)
    else:
        q = stats.norm.ppf(confidence)
        ci = (diff - q * se, math.inf) if alternative == "larger" else (-math.inf, diff + q * se)
    return TestResult(z, _p_from_z(z, alternative), diff, ci, se=se)


def tost(x: SampleSummary, y: SampleSummary, low: float, upp: float, alpha: float = 0.05,
         *, var_equal: bool = False) -> TestResult:
    """Two one-sided tests of equivalence: H0 mean(x) - mean(y) <= low or >= upp.

    The p-value is the larger of the two one-sided p-values; the interval is the (1 - 2 alpha)
    interval, which lies inside (low, upp) exactly when equivalence is shown at level alpha.
    """
    lower = welch_test(x, y, low, "larger", var_equal=var_equal, confidence=1 - 2 * alpha)
    upper = welch_test(x, y, upp, "smaller", var_equal=var_equal)
    p = max(lower.p_value, upper.p_value)
    return TestResult(min(lower.statistic, -upper.statistic), p, lower.estimate, lower.ci, df=lower.df, se=lower.se,
                      extra={"p_lower": lower.p_value, "p_upper": upper.p_value, "equivalent": p < alpha})


# -- paired binary, goodness of fit -----------------------------------------------------------

def mcnemar(b: int, c: int, *, exact: bool = True, correction: bool = True) -> TestResult:
    """McNemar's test on the discordant counts b and c of a paired 2x2 table.

    Exact: two-sided binomial test of b ~ Bin(b + c, 1/2), statistic min(b, c).  Otherwise the
    chi-square statistic with (or without) continuity correction, 1 df.
    """
    n = b + c
    if exact:
        p = 1.0 if n == 0 else min(1.0, 2 * float(stats.binom.cdf(min(b, c), n, 0.5)))
        return TestResult(float(min(b, c)), p, extra={"discordant": n})
    if n == 0:
        return TestResult(0.0, 1.0)
    chi2 = (max(abs(b - c) - 1, 0) if correction else abs(b - c)) ** 2 / n
    return TestResult(chi2, float(stats.chi2.sf(chi2, 1)), df=1)


def chi_square_gof(observed: Sequence[float], expected_proportions: Sequence[float]) -> TestResult:
    """Pearson chi-square goodness of fit against proportions (normalised to sum to one)."""
    obs = np.asarray(observed, dtype=float)
    props = np.asarray(expected_proportions, dtype=float)
    if obs.shape != props.shape or obs.size < 2:
        raise ValueError("observed and expected_proportions need the same length >= 2")
    if np.any(props <= 0):
        raise ValueError("expected proportions must be > 0")
    expected = obs.sum() * props / props.sum()
    if obs.sum() == 0:
        return TestResult(0.0, 1.0, df=obs.size - 1)
    chi2 = float(((obs - expected) ** 2 / expected).sum())
    return TestResult(chi2, float(stats.chi2.sf(chi2, obs.size - 1)), df=obs.size - 1)
