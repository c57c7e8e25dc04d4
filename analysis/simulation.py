"""Monte-Carlo harness: simulate experiments, analyse them after every batch *through the production
decision* (:func:`analysis.decision.decide`, with the looks recorded the way the analysis task
records them), and estimate the rate of PROMOTE (type I error at the margin, or power) and the
average sample number.

One code path: a simulated run is a sequence of :class:`~analysis.decision.ExperimentData` built
from cumulative sufficient statistics (binomial counts, trinomial paired differences, normal sums
with chi-square sums of squares, drawn batch by batch from their exact distributions), and each is
decided by ``decide`` with the same :class:`~analysis.decision.DecisionConfig` an experiment
definition gives.  A run stops at its first terminal decision (PROMOTE, FUTILE, REJECT), as an
automated experiment would.  Only the ``naive`` control (a fixed-horizon z test repeated at every
look, which no experiment can choose) is computed here, vectorised, to show the harness can see
inflation.

A "rejection" is a PROMOTE: non-inferiority shown (H0 effect <= -margin rejected).  The sample
number of a run is the per-arm sample (paired: requests) at its stop, or the horizon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from scipy import stats

from analysis.decision import ArmData, DecisionConfig, ExperimentData, decide
from analysis.sufficient import Moments

__all__ = ["Scenario", "MethodResult", "Looks", "simulate_looks", "monitor", "run", "config_for", "METHODS",
           "PRODUCTION_METHODS", "TERMINAL"]

PRODUCTION_METHODS = ("fixed", "gsd_obf", "gsd_pocock", "asymptotic_cs", "msprt")
METHODS = (*PRODUCTION_METHODS, "naive")
TERMINAL = ("PROMOTE", "FUTILE", "REJECT", "UNHEALTHY")


@dataclass(frozen=True)
class Scenario:
    kind: str = "binary"            # "binary" | "continuous"
    paired: bool = False
    baseline: float = 0.9           # champion's rate (binary) or mean (continuous)
    true_diff: float = 0.0          # challenger minus champion (higher is better)
    margin: float = 0.02
    sd: float = 1.0                 # continuous: per-unit sd (of the difference when paired)
    agreement: float = 0.9          # paired binary: share of requests where both models score the same
    n_max: int = 20_000             # per arm (paired: requests); the planned horizon
    batch: int = 100
    alpha: float = 0.05
    power: float = 0.8
    sims: int = 1000
    seed: int = 0


@dataclass
class MethodResult:
    method: str
    rejections: int
    sims: int
    sample_numbers: np.ndarray = field(repr=False)
    decisions: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rejections / self.sims

    @property
    def mc_se(self) -> float:
        p = self.rate
        return math.sqrt(max(p * (1 - p), 1e-12) / self.sims)

    @property
    def asn(self) -> float:
        return float(self.sample_numbers.mean())


@dataclass(frozen=True)
class Looks:
    """Cumulative sufficient statistics per simulation (rows) and look (columns).

    Unpaired: each arm's count ``n``, ``sum`` and ``sum_sq``.  Paired (shadow): the per-request
    challenger-minus-champion differences' moments in ``paired``, and each arm's own moments.
    """

    kind: str
    paired: bool
    n_arm: np.ndarray                       # per look: units per arm (paired: requests)
    champion: tuple[np.ndarray, np.ndarray, np.ndarray]
    challenger: tuple[np.ndarray, np.ndarray, np.ndarray]
    difference: tuple[np.ndarray, np.ndarray] | None = None   # paired: sum and sum_sq of D

    @property
    def sims(self) -> int:
        return self.champion[1].shape[0]

    def data(self, i: int, j: int, looks: tuple[float, ...]) -> ExperimentData:
        """Run ``i`` at look ``j`` as the analysis task would hand it to ``decide``."""
        n = int(self.n_arm[j])

        def arm(m: tuple[np.ndarray, np.ndarray, np.ndarray]) -> ArmData:
            q = Moments(n, float(m[1][i, j]), float(m[2][i, j]))
            return ArmData(exposures=n, predictions=n, outcomes=n, quality=q)

        if self.paired:
            diff = Moments(n, float(self.difference[0][i, j]), float(self.difference[1][i, j]))
            return ExperimentData("shadow", arm(self.champion), arm(self.challenger), paired_quality=diff,
                                  expected_weights=(1.0, 1.0), looks=looks)
        return ExperimentData("ab", arm(self.champion), arm(self.challenger), looks=looks)


def simulate_looks(s: Scenario, rng: np.random.Generator | None = None) -> Looks:
    rng = rng or np.random.default_rng(s.seed)
    k = s.n_max // s.batch
    n_arm = np.arange(1, k + 1) * s.batch
    if s.paired:
        if s.kind == "binary":
            # champion correct with p = baseline; the models disagree on a share 1 - agreement,
            # split so that E[D] = true_diff
            disagree = 1 - s.agreement
            p_up, p_down = (disagree + s.true_diff) / 2, (disagree - s.true_diff) / 2
            if min(p_up, p_down) < 0:
                raise ValueError("true_diff cannot exceed the disagreement rate")
            p_both = s.baseline - p_down
            if p_both < 0 or p_both + p_up + p_down > 1:
                raise ValueError("baseline and agreement are inconsistent")
            draws = rng.multinomial(s.batch, [p_up, p_down, p_both, 1 - p_up - p_down - p_both], size=(s.sims, k))
            up, down, both = (draws[..., c].cumsum(axis=1).astype(float) for c in range(3))
            champ, chall = both + down, both + up
            return Looks("binary", True, n_arm, (n_arm, champ, champ), (n_arm, chall, chall),
                         (up - down, up + down))
        total, total_sq = _normal_batches(rng, s.sims, k, s.batch, s.true_diff, s.sd)
        # each arm's own moments do not enter a paired decision; give the champion the baseline
        champ_sum = np.full_like(total, 0.0) + n_arm * s.baseline
        champ_sq = n_arm * (s.baseline**2 + s.sd**2) + 0 * total
        return Looks("continuous", True, n_arm, (n_arm, champ_sum, champ_sq),
                     (n_arm, champ_sum + total, champ_sq), (total, total_sq))
    if s.kind == "binary":
        xc = rng.binomial(s.batch, s.baseline, size=(s.sims, k)).cumsum(axis=1).astype(float)
        xt = rng.binomial(s.batch, s.baseline + s.true_diff, size=(s.sims, k)).cumsum(axis=1).astype(float)
        return Looks("binary", False, n_arm, (n_arm, xc, xc), (n_arm, xt, xt))
    sc, qc = _normal_batches(rng, s.sims, k, s.batch, s.baseline, s.sd)
    st, qt = _normal_batches(rng, s.sims, k, s.batch, s.baseline + s.true_diff, s.sd)
    return Looks("continuous", False, n_arm, (n_arm, sc, qc), (n_arm, st, qt))


def _normal_batches(rng, sims: int, k: int, batch: int, mean: float, sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative sum and sum of squares of normal data, drawn batch by batch from their exact
    distributions: the batch mean is normal, the within-batch sum of squares is sd^2 chi2(batch-1)."""
    means = rng.normal(mean, sd / math.sqrt(batch), size=(sims, k))
    within = sd * sd * rng.chisquare(batch - 1, size=(sims, k))
    return (batch * means).cumsum(axis=1), (within + batch * means**2).cumsum(axis=1)


def config_for(method: str, *, kind: str, margin: float, alpha: float, power: float, n_max: int) -> DecisionConfig:
    """The decision config of an experiment testing quality only (no latency SLO, no cost or
    failure guardrail), so the rate measured is the quality method's."""
    return DecisionConfig(metric_kind=kind, higher_is_better=True, margin=margin, margin_type="absolute",
                          alpha=alpha, power=power, planned_n_per_arm=n_max, method=method,
                          latency_threshold_ms=None, latency_max_share=None, cost_must_be_lower=False,
                          failure_max_share=None)


def monitor(looks: Looks, method: str, margin: float, alpha: float, power: float = 0.8,
            n_max: int | None = None) -> MethodResult:
    """Which simulated runs are PROMOTEd (and when) when ``decide`` analyses every look."""
    n_arm = looks.n_arm
    n_max = int(n_max or n_arm[-1])
    sims = looks.sims
    if method == "naive":
        return _naive(looks, margin, alpha, n_max)
    config = config_for(method, kind=looks.kind, margin=margin, alpha=alpha, power=power, n_max=n_max)
    promoted = 0
    sample = np.full(sims, float(n_max))
    counts: dict[str, int] = {}
    for i in range(sims):
        seen: tuple[float, ...] = ()
        verdict = "CONTINUE"
        for j in range(n_arm.size):
            d = decide(looks.data(i, j, seen), config)
            # the analysis task stores this as the look's information fraction (0 before any)
            seen = (*seen, d.components["quality"].get("information_fraction") or 0.0)
            verdict = d.decision
            if verdict in TERMINAL:
                sample[i] = n_arm[j]
                break
        counts[verdict] = counts.get(verdict, 0) + 1
        promoted += verdict == "PROMOTE"
    return MethodResult(method, promoted, sims, sample, counts)


def _naive(looks: Looks, margin: float, alpha: float, n_max: int) -> MethodResult:
    n = looks.n_arm.astype(float)
    if looks.paired:
        total, total_sq = looks.difference
        mean = total / n
        var = np.maximum(total_sq / n - mean**2, 1e-12) / n
        est = mean
    else:
        def mv(m):
            mean = m[1] / n
            var = np.maximum(m[2] / n - mean**2, 1e-12) * n / np.maximum(n - 1, 1)
            return mean, var / n
        (mc, vc), (mt, vt) = mv(looks.champion), mv(looks.challenger)
        est, var = mt - mc, vc + vt
    reject = (est + margin) / np.sqrt(var) > stats.norm.isf(alpha)
    hit = reject.any(axis=1)
    idx = np.where(hit, reject.argmax(axis=1), reject.shape[1] - 1)
    sample = np.where(hit, n[idx], n_max).astype(float)
    return MethodResult("naive", int(hit.sum()), looks.sims, sample, {"PROMOTE": int(hit.sum())})


def run(scenario: Scenario, methods: Iterable[str] = METHODS) -> dict[str, MethodResult]:
    looks = simulate_looks(scenario)
    return {m: monitor(looks, m, scenario.margin, scenario.alpha, scenario.power, scenario.n_max) for m in methods}
