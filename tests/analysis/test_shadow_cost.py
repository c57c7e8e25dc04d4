"""Shadow mode's cost comparison (analysis.cost.compare_shadow_costs, through analysis.decision.decide):
the savings share compares the challenger with the champion timed beside it in the scorer (the
reference), the challenger's cost per request is stated in request-path terms, and both intervals
cover their true values at the stated rate (by simulation), as the A/B comparison's do."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from analysis.cost import compare_costs, compare_shadow_costs
from analysis.decision import ArmData, DecisionConfig, ExperimentData, decide, replay
from analysis.sufficient import Moments


def _costs(rng, n: int, mean: float, cv: float = 0.5) -> Moments:
    """Per-request CPU costs: gamma with the given mean and coefficient of variation (skewed, positive)."""
    shape = 1 / cv**2
    return Moments.from_values(rng.gamma(shape, mean / shape, n))


def _arm(n: int, cost: Moments) -> ArmData:
    return ArmData(n, n, 0, Moments(), cost=cost)


def test_one_model_against_itself_is_as_costly_though_the_scorer_runs_it_twice_as_fast():
    rng = np.random.default_rng(16)
    served = _costs(rng, 5_000, 2e-6)                    # the request path: cold, beside other work
    reference, challenger = _costs(rng, 5_000, 1e-6), _costs(rng, 5_000, 1e-6)   # the scorer: warm
    naive = compare_costs(served, challenger)
    assert naive.savings_share == pytest.approx(0.5, abs=0.03)   # what comparing across processes claimed
    data = ExperimentData("shadow", _arm(5_000, served), _arm(5_000, challenger), reference_cost=reference)
    cost = decide(data, DecisionConfig(planned_n_per_arm=5_000)).to_dict()["components"]["cost"]
    low, high = cost["savings_share"]["ci"]
    assert low < 0 < high and abs(cost["savings_share"]["estimate"]) < 0.05, cost["savings_share"]
    assert cost["measured"] == "side by side in the shadow scorer" and cost["reference_n"] == 5_000
    # stated in request-path terms: about the champion's served cost, not the scorer's half of it
    assert cost["per_request"]["challenger"]["mean"] == pytest.approx(served.mean, rel=0.05)
    assert cost["status"] == "continue"


def test_shadow_intervals_cover_the_true_savings_and_request_path_cost_at_95_percent():
    rng = np.random.default_rng(17)
    champion_served, champion_scorer, challenger_scorer = 3e-6, 1.2e-6, 0.4e-6   # true means
    true_share = 1 - challenger_scorer / champion_scorer
    true_request_path = champion_served * challenger_scorer / champion_scorer
    sims, share_hits, cost_hits = 600, 0, 0
    for _ in range(sims):
        cmp = compare_shadow_costs(_costs(rng, 400, champion_served, 0.8), _costs(rng, 300, champion_scorer, 0.8),
                                   _costs(rng, 400, challenger_scorer, 0.8))
        share_hits += cmp.savings_ci[0] <= true_share <= cmp.savings_ci[1]
        cost_hits += cmp.challenger_ci[0] <= true_request_path <= cmp.challenger_ci[1]
    tolerance = 3 * math.sqrt(0.95 * 0.05 / sims)
    assert abs(share_hits / sims - 0.95) <= tolerance, share_hits / sims
    assert abs(cost_hits / sims - 0.95) <= tolerance, cost_hits / sims


def test_without_a_reference_the_comparison_is_the_served_one_and_a_replay_keeps_the_reference():
    rng = np.random.default_rng(18)
    served, challenger, reference = _costs(rng, 2_000, 2e-6), _costs(rng, 2_000, 1e-6), _costs(rng, 2_000, 1e-6)
    old = ExperimentData("shadow", _arm(2_000, served), _arm(2_000, challenger))     # rows from before revision 0008
    cost = decide(old, DecisionConfig()).to_dict()["components"]["cost"]
    assert cost["measured"] == "each arm as it ran" and cost["reference_n"] is None
    assert cost["savings_share"]["estimate"] == pytest.approx(compare_costs(served, challenger).savings_share)
    new = replace(old, reference_cost=reference)
    decided = decide(new, DecisionConfig())
    again = replay(decided.inputs, decided.parameters["config"])
    assert again.to_dict()["components"]["cost"] == decided.to_dict()["components"]["cost"]
    assert again.to_dict()["components"]["cost"]["reference_n"] == 2_000
    ab = replace(new, mode="ab")   # an A/B test has no reference: both arms ran on the request path
    assert decide(ab, DecisionConfig()).to_dict()["components"]["cost"]["measured"] == "each arm as it ran"
