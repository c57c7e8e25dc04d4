"""The challenger failure-rate guardrail, and one sentence per component in an explanation."""

from __future__ import annotations

import math

import numpy as np

from analysis.decision import ArmData, DecisionConfig, ExperimentData, decide, replay
from analysis.latency import slo_log_e_value
from analysis.sufficient import Moments


def _arm(n: int, correct: int, fallbacks: int = 0) -> ArmData:
    return ArmData(exposures=n, predictions=n, outcomes=n, quality=Moments.from_binary(correct, n), fallbacks=fallbacks)


CONFIG = DecisionConfig(planned_n_per_arm=2000, cost_must_be_lower=False)


def test_a_challenger_that_never_answered_is_rejected_not_promoted():
    """The audit's case: every challenger request fell back to the champion (607 of 607), whose
    answers then made the challenger look exactly as good."""
    d = decide(ExperimentData("ab", _arm(607, 560), _arm(607, 560, fallbacks=607)), CONFIG)
    assert d.decision == "REJECT", d.explanation
    f = d.components["failures"]
    assert f["status"] == "harm" and f["failed"] == 607 and f["share"] == 1.0
    assert "607 of 607 challenger requests" in d.explanation


def test_failures_block_promotion_until_shown_below_the_limit():
    good = ExperimentData("ab", _arm(20_000, 18_000), _arm(20_000, 18_100, fallbacks=0))
    assert decide(good, CONFIG).decision == "PROMOTE"
    # 2% failing against a 1% limit: never promoted, rejected once the alarm is sure
    bad = ExperimentData("ab", _arm(20_000, 18_000), _arm(20_000, 18_100, fallbacks=400))
    d = decide(bad, CONFIG)
    assert d.decision == "REJECT" and d.components["failures"]["status"] == "harm", d.explanation
    # too few requests to tell: quality alone would promote, the guardrail keeps it waiting
    early = ExperimentData("ab", _arm(300, 290), _arm(300, 299, fallbacks=3))
    d = decide(early, DecisionConfig(planned_n_per_arm=300, cost_must_be_lower=False, min_sample=100))
    assert d.components["quality"]["status"] == "non_inferior"
    assert d.components["failures"]["status"] == "continue" and d.decision == "CONTINUE", d.explanation
    off = decide(bad, DecisionConfig(planned_n_per_arm=2000, cost_must_be_lower=False, failure_max_share=None))
    assert off.components["failures"]["status"] == "not_required" and off.decision == "PROMOTE"


def test_the_failure_test_keeps_its_error_rate_under_continuous_monitoring():
    """At a failure rate exactly at the limit, the 'holds' e-process crosses 1/alpha in at most
    alpha of runs however often it is looked at (Ville's inequality), checked after every 100 requests."""
    rng = np.random.default_rng(3)
    limit, alpha, sims, looks = 0.01, 0.05, 300, 40
    fails = rng.binomial(100, limit, size=(sims, looks)).cumsum(axis=1)
    crossed = 0
    for run in fails:
        crossed += any(slo_log_e_value(int(f), 100 * (j + 1), limit, show_below=True) >= -math.log(alpha)
                       for j, f in enumerate(run))
    assert crossed / sims <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / sims)


def test_a_reject_explanation_says_each_component_once():
    """'REJECT: quality ... HARM ... quality ... HARM ...' repeated the failing component's sentence."""
    d = decide(ExperimentData("ab", _arm(10_000, 9_500), _arm(10_000, 9_000, fallbacks=0)), CONFIG)
    assert d.decision == "REJECT"
    assert d.explanation.count("quality (") == 1 and d.explanation.count("HARM") == 1, d.explanation
    for component in ("latency:", "failures:", "cost:", "health:"):
        assert d.explanation.count(component) == 1, (component, d.explanation)


def test_an_analysis_stored_before_the_guardrail_replays_without_it():
    d = decide(ExperimentData("ab", _arm(5000, 4500), _arm(5000, 4500, fallbacks=5000)),
               DecisionConfig(planned_n_per_arm=5000, cost_must_be_lower=False, failure_max_share=None))
    config = {k: v for k, v in d.parameters["config"].items() if k != "failure_max_share"}
    assert replay(d.inputs, config).to_dict() == d.to_dict()
