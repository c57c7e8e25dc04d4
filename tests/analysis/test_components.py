"""Sketch accuracy and coverage, the SLO e-process's type I error, and the decision rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from analysis.decision import ArmData, DecisionConfig, ExperimentData, decide, replay
from analysis.latency import slo_e_value
from analysis.sketch import LatencySketch
from analysis.sufficient import Moments


def test_sketch_quantiles_are_within_the_relative_accuracy_and_merge_exactly():
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(1.0, 0.8, 50_000), rng.lognormal(2.0, 0.5, 30_000)
    sa, sb = LatencySketch(), LatencySketch()
    sa.add_many(a)
    sb.add_many(b)
    merged = sa + sb
    both = np.sort(np.concatenate([a, b]))
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        exact = both[max(math.ceil(q * both.size), 1) - 1]
        assert abs(merged.quantile(q) - exact) <= 0.01 * exact + 1e-12, q
    whole = LatencySketch()
    whole.add_many(both)
    assert whole.to_dict() == merged.to_dict()
    assert LatencySketch.from_dict(json.loads(json.dumps(merged.to_dict()))).to_dict() == merged.to_dict()


def test_sketch_quantile_interval_covers_the_true_quantile():
    rng = np.random.default_rng(4)
    true_p95 = math.exp(0.5 + 0.6 * 1.6448536269514722)
    covered = 0
    for _ in range(300):
        s = LatencySketch()
        s.add_many(rng.lognormal(0.5, 0.6, 400))
        est = s.quantile_interval(0.95)
        covered += est.lower <= true_p95 <= est.upper
    assert covered / 300 >= 0.93


def test_slo_e_process_keeps_type_one_error_under_continuous_monitoring():
    rng = np.random.default_rng(5)
    pi, alpha, sims = 0.05, 0.05, 300
    false_alarms = 0
    for _ in range(sims):
        slow = np.cumsum(rng.random(20_000) < pi)  # the share is exactly at the limit: H0 "share >= pi" is true
        for n in range(100, 20_001, 100):
            if slo_e_value(int(slow[n - 1]), n, pi, show_below=True) >= 1 / alpha:
                false_alarms += 1
                break
    assert false_alarms / sims <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / sims)


def test_slo_e_process_detects_a_clear_pass_and_a_clear_violation():
    assert slo_e_value(100, 10_000, 0.05, show_below=True) > 1e6
    assert slo_e_value(900, 10_000, 0.05, show_below=False) > 1e6
    assert slo_e_value(500, 10_000, 0.05, show_below=True) < 1


def _arm(rng, n, accuracy, latency_ms, cost, exposures=None, outcomes=None):
    q = (rng.random(n) < accuracy).astype(float)
    lat = rng.lognormal(math.log(latency_ms), 0.3, n)
    sketch = LatencySketch()
    sketch.add_many(lat)
    return ArmData(exposures if exposures is not None else n, n, n if outcomes is None else outcomes,
                   Moments.from_values(q[: (n if outcomes is None else outcomes)]), sketch, n, int((lat > 20).sum()),
                   Moments.from_values(np.full(n, cost)))


CFG = DecisionConfig(margin=0.02, planned_n_per_arm=10_000, latency_threshold_ms=20, latency_max_share=0.05)


def _decide(champion, challenger, cfg=CFG, **kw):
    return decide(ExperimentData("ab", champion, challenger, **kw), cfg).to_dict()


def test_promote_needs_every_condition_and_explains_each():
    rng = np.random.default_rng(6)
    r = _decide(_arm(rng, 10_000, 0.9, 5, 1e-3), _arm(rng, 10_000, 0.9, 3, 1e-4))
    assert r["decision"] == "PROMOTE", r["explanation"]
    q = r["components"]["quality"]
    assert q["status"] == "non_inferior" and q["ci"][0] > -0.02
    assert r["components"]["cost"]["savings_share"]["estimate"] == pytest.approx(0.9)
    assert "non-inferior" in r["explanation"] and "SLO holds" in r["explanation"]
    json.dumps(r, allow_nan=False)  # storable as JSON in Postgres: no NaN or infinity


def test_intersection_union_a_slow_challenger_is_not_promoted_and_an_slo_violation_rejects():
    rng = np.random.default_rng(7)
    r = _decide(_arm(rng, 10_000, 0.9, 5, 1e-3), _arm(rng, 10_000, 0.9, 16, 1e-4))  # ~23% slower than 20 ms
    assert r["decision"] == "REJECT" and r["components"]["latency"]["status"] == "harm"
    assert r["components"]["quality"]["status"] == "non_inferior"


def test_quality_harm_rejects_and_dearer_challenger_rejects():
    rng = np.random.default_rng(8)
    worse = _decide(_arm(rng, 10_000, 0.9, 5, 1e-3), _arm(rng, 10_000, 0.84, 3, 1e-4))
    assert worse["decision"] == "REJECT" and worse["components"]["quality"]["status"] == "harm"
    dearer = _decide(_arm(rng, 10_000, 0.9, 5, 1e-4), _arm(rng, 10_000, 0.9, 3, 1e-3))
    assert dearer["decision"] == "REJECT" and dearer["components"]["cost"]["status"] == "harm"


def test_srm_and_missing_outcomes_make_it_unhealthy():
    rng = np.random.default_rng(9)
    srm = _decide(_arm(rng, 10_000, 0.9, 5, 1e-3, exposures=10_000), _arm(rng, 10_000, 0.9, 3, 1e-4, exposures=9_000))
    assert srm["decision"] == "UNHEALTHY" and srm["components"]["health"]["status"] == "srm"
    missing = _decide(_arm(rng, 10_000, 0.9, 5, 1e-3), _arm(rng, 10_000, 0.9, 3, 1e-4, outcomes=6_000))
    assert missing["decision"] == "UNHEALTHY" and missing["components"]["health"]["status"] == "missing_outcomes"


def test_futile_at_the_horizon_and_insufficient_before_the_minimum_sample():
    rng = np.random.default_rng(10)
    futile = _decide(_arm(rng, 10_000, 0.9, 5, 1e-3), _arm(rng, 10_000, 0.885, 3, 1e-4))
    assert futile["decision"] in ("FUTILE", "REJECT") and futile["components"]["quality"]["status"] in ("futile", "harm")
    early = _decide(_arm(rng, 60, 0.9, 5, 1e-3), _arm(rng, 60, 0.9, 3, 1e-4))
    assert early["decision"] == "CONTINUE" and early["components"]["quality"]["status"] == "insufficient"


def test_a_stored_decision_replays_exactly_from_its_inputs():
    rng = np.random.default_rng(11)
    r = decide(ExperimentData("ab", _arm(rng, 5_000, 0.9, 5, 1e-3), _arm(rng, 5_000, 0.89, 3, 1e-4), looks=(0.1, 0.3)),
               DecisionConfig(method="gsd_obf", planned_n_per_arm=10_000)).to_dict()
    again = replay(json.loads(json.dumps(r["inputs"])), r["parameters"]["config"]).to_dict()
    assert again == r


@pytest.mark.parametrize("method", ["asymptotic_cs", "msprt", "gsd_obf", "gsd_pocock", "fixed"])
def test_every_method_promotes_a_clearly_non_inferior_challenger_at_the_horizon(method):
    rng = np.random.default_rng(12)
    cfg = DecisionConfig(margin=0.03, planned_n_per_arm=10_000, method=method)
    r = decide(ExperimentData("ab", _arm(rng, 10_000, 0.9, 5, 1e-3), _arm(rng, 10_000, 0.9, 3, 1e-4),
                              looks=(0.2, 0.4, 0.6, 0.8)), cfg).to_dict()
    assert r["decision"] == "PROMOTE", r["explanation"]


def test_paired_shadow_analysis_uses_the_per_request_differences():
    rng = np.random.default_rng(13)
    n = 4_000
    champ = (rng.random(n) < 0.9).astype(float)
    chall = champ.copy()
    rescore = rng.random(n) < 0.1  # the models disagree only where the challenger re-scores, equally well
    chall[rescore] = (rng.random(int(rescore.sum())) < 0.9).astype(float)
    data = ExperimentData("shadow", _arm(rng, n, 0.9, 5, 1e-3), _arm(rng, n, 0.9, 3, 1e-4),
                          paired_quality=Moments.from_values(chall - champ), expected_weights=(1.0, 1.0))
    r = decide(data, DecisionConfig(margin=0.02, planned_n_per_arm=n)).to_dict()
    q = r["components"]["quality"]
    assert q["paired"] is True and q["estimate"] == pytest.approx((chall - champ).mean())
    assert r["decision"] == "PROMOTE", r["explanation"]
