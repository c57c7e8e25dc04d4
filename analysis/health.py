"""Health checks that decide whether the other numbers can be trusted.

* **Sample-ratio mismatch**, two ways: Pearson's chi-square against the configured weights (the
  peers' check, valid at one look), and the sequential Dirichlet–multinomial Bayes factor of
  Lindon & Malek (2022), valid under continuous monitoring.  The second needs only the running
  totals: for exchangeable assignments the mixture likelihood of the whole sequence depends on the
  counts alone, BF = [B(c p0 + x) / B(c p0)] / prod p0_i^x_i with B the multivariate beta function.
* **Outcome coverage**: the share of predictions whose outcome has arrived, per arm, and whether it
  differs between arms (outcomes that go missing more often in one arm bias every quality number).
* **Units in both arms**: sticky assignment should make this zero within a phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import special

from analysis.fixed import chi_square_gof

__all__ = ["SRMResult", "srm", "dirichlet_multinomial_bf", "coverage_difference_p"]

SRM_CONCENTRATION = 10_000.0


def dirichlet_multinomial_bf(observed: Sequence[int], weights: Sequence[float],
                             concentration: float = SRM_CONCENTRATION) -> float:
    x = np.asarray(observed, dtype=float)
    p0 = np.asarray(weights, dtype=float)
    p0 = p0 / p0.sum()
    alpha0 = concentration * p0

    def log_mbeta(a: np.ndarray) -> float:
        return float(special.gammaln(a).sum() - special.gammaln(a.sum()))

    log_bf = log_mbeta(alpha0 + x) - log_mbeta(alpha0) - float((x * np.log(p0)).sum())
    return math.exp(min(log_bf, 700.0))


@dataclass(frozen=True)
class SRMResult:
    observed: tuple[int, ...]
    expected_weights: tuple[float, ...]
    chi2: float
    p_chi2: float
    bayes_factor: float
    p_sequential: float

    def to_dict(self) -> dict:
        return {"observed": list(self.observed), "expected_weights": list(self.expected_weights), "chi2": self.chi2,
                "p_chi2": self.p_chi2, "bayes_factor": self.bayes_factor, "p_sequential": self.p_sequential}


def srm(observed: Sequence[int], weights: Sequence[float]) -> SRMResult:
    gof = chi_square_gof(observed, weights)
    bf = dirichlet_multinomial_bf(observed, weights)
    return SRMResult(tuple(int(o) for o in observed), tuple(float(w) for w in weights), gof.statistic, gof.p_value,
                     bf, min(1.0, 1 / bf))


def coverage_difference_p(outcomes: Sequence[int], predictions: Sequence[int]) -> float:
    """Two-sided p-value that the outcome rate is the same in both arms (chi-square on the 2x2)."""
    from scipy.stats import chi2_contingency

    table = np.array([[o, p - o] for o, p in zip(outcomes, predictions)], dtype=float)
    if np.any(table.sum(axis=0) == 0) or np.any(table.sum(axis=1) == 0):
        return 1.0
    return float(chi2_contingency(table, correction=False)[1])
