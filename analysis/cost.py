"""Cost per request: per-arm means with intervals, the savings share, projected savings.

Cost per request is a mean of per-request costs (declared or measured), so the machinery is that
of any mean: a t interval per arm; the savings share 1 - mean(challenger) / mean(champion) with a
delta-method interval on the log ratio (which keeps the interval inside (-inf, 1)).  Costs are often
deterministic per model (zero variance): then the interval collapses to the point, which is exact.

Shadow mode (``compare_shadow_costs``): the challenger runs in a scorer process, the champion on the
request path, and CPU time per prediction depends on those conditions as much as on the model.  So
the scorer also times the champion on the rows it scores (the *reference*), and the savings share
compares the two models measured side by side there; the challenger's cost per request is then
stated in request-path terms: the champion's served mean times that ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from analysis.sufficient import Moments

__all__ = ["mean_interval", "CostComparison", "compare_costs", "compare_shadow_costs"]


def mean_interval(m: Moments, confidence: float = 0.95) -> tuple[float, float]:
    if m.n == 0:
        return math.nan, math.nan
    if m.n == 1:
        return -math.inf, math.inf
    half = stats.t.ppf(1 - (1 - confidence) / 2, m.n - 1) * math.sqrt(m.variance / m.n)
    return m.mean - half, m.mean + half


@dataclass(frozen=True)
class CostComparison:
    champion_mean: float
    champion_ci: tuple[float, float]
    challenger_mean: float
    challenger_ci: tuple[float, float]
    savings_share: float
    savings_ci: tuple[float, float]
    log_ratio: float
    log_ratio_var: float

    def projected_savings(self, requests: float) -> dict[str, float]:
        """Savings at ``requests`` predictions (e.g. a month's volume), with the interval."""
        base = self.champion_mean * requests
        return {"requests": requests, "estimate": base * self.savings_share,
                "ci": [base * self.savings_ci[0], base * self.savings_ci[1]]}

    def to_dict(self) -> dict:
        return {"per_request": {"champion": {"mean": self.champion_mean, "ci": list(self.champion_ci)},
                                "challenger": {"mean": self.challenger_mean, "ci": list(self.challenger_ci)}},
                "savings_share": {"estimate": self.savings_share, "ci": list(self.savings_ci)}}


def compare_costs(champion: Moments, challenger: Moments, confidence: float = 0.95) -> CostComparison | None:
    if champion.n == 0 or challenger.n == 0 or champion.mean <= 0 or challenger.mean <= 0:
        return None
    lr = math.log(challenger.mean / champion.mean)
    var = ((challenger.variance if challenger.n > 1 else 0.0) / (challenger.n * challenger.mean**2)
           + (champion.variance if champion.n > 1 else 0.0) / (champion.n * champion.mean**2))
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    half = z * math.sqrt(var)
    return CostComparison(champion.mean, mean_interval(champion, confidence), challenger.mean,
                          mean_interval(challenger, confidence), 1 - math.exp(lr),
                          (1 - math.exp(lr + half), 1 - math.exp(lr - half)), lr, var)


def compare_shadow_costs(champion: Moments, reference: Moments, challenger: Moments,
                         confidence: float = 0.95) -> CostComparison | None:
    """Shadow mode: the savings share from ``challenger`` against ``reference`` (the champion timed by
    the same scorer on the same rows); the champion's cost per request from its served rows
    (``champion``); the challenger's = champion mean x cost ratio, its interval on the log scale with
    both variances (delta method).  The two scorer samples are treated as independent, which ignores
    their positive pairing and so errs wide.  None until all three have costed rows."""
    side_by_side = compare_costs(reference, challenger, confidence)
    if side_by_side is None or champion.n == 0 or champion.mean <= 0:
        return None
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    champion_log_var = (champion.variance if champion.n > 1 else 0.0) / (champion.n * champion.mean**2)
    half = z * math.sqrt(side_by_side.log_ratio_var + champion_log_var)
    centre = math.log(champion.mean) + side_by_side.log_ratio
    return CostComparison(champion.mean, mean_interval(champion, confidence), math.exp(centre),
                          (math.exp(centre - half), math.exp(centre + half)), side_by_side.savings_share,
                          side_by_side.savings_ci, side_by_side.log_ratio, side_by_side.log_ratio_var)
