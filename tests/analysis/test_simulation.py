"""Seeded simulations: with the true difference exactly at the margin and a look after every batch
of 100 up to 20,000 per arm, every always-valid method keeps its type I error at most alpha (+3
Monte-Carlo standard errors); naive repeated fixed-horizon testing does not (the control that
shows the test can fail).  Power and paired efficiency are checked as well."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import quality, sequential
from analysis.simulation import Scenario, monitor, run, simulate_looks
from analysis.sufficient import Moments

ALPHA = 0.05
ALWAYS_VALID = ("asymptotic_cs", "msprt", "gsd_obf")

SCENARIOS = {
    "binary": Scenario(kind="binary", baseline=0.9, true_diff=-0.02, margin=0.02, sims=1000, seed=11),
    "binary-paired": Scenario(kind="binary", paired=True, agreement=0.9, true_diff=-0.02, margin=0.02, sims=1000, seed=12),
    "continuous": Scenario(kind="continuous", baseline=10.0, sd=2.0, true_diff=-0.1, margin=0.1, sims=1000, seed=13),
    "continuous-paired": Scenario(kind="continuous", paired=True, sd=1.0, true_diff=-0.05, margin=0.05, sims=1000, seed=14),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_type_one_error_at_the_margin_is_controlled_under_continuous_monitoring(name):
    scenario = SCENARIOS[name]
    results = run(scenario, (*ALWAYS_VALID, "fixed", "naive"))
    for method in (*ALWAYS_VALID, "fixed"):
        r = results[method]
        assert r.rate <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / r.sims), (method, r.rate)
    naive = results["naive"]
    assert naive.rate > ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / naive.sims), naive.rate


def test_power_when_the_challenger_is_as_good_and_paired_needs_fewer_requests():
    unpaired = run(Scenario(kind="binary", baseline=0.9, true_diff=0.0, margin=0.02, sims=400, seed=21))
    paired = run(Scenario(kind="binary", paired=True, agreement=0.9, true_diff=0.0, margin=0.02, sims=400, seed=22))
    for method in ALWAYS_VALID:
        assert unpaired[method].rate > 0.9 and paired[method].rate > 0.9
        # requests: unpaired uses both arms' units, paired one request scored by both models
        assert paired[method].asn < 0.5 * 2 * unpaired[method].asn, method
    # stopping early is the point of monitoring: the average sample is well below the horizon
    assert unpaired["asymptotic_cs"].asn < 0.5 * 20_000


def test_vectorised_monitor_agrees_with_the_scalar_quality_tests():
    """The simulation's per-look p-values are the same numbers analysis.quality computes."""
    s = Scenario(kind="binary", baseline=0.9, true_diff=-0.01, margin=0.02, sims=3, n_max=2000, seed=5)
    looks = simulate_looks(s, np.random.default_rng(5))
    rng = np.random.default_rng(1)
    for _ in range(10):
        i, j = int(rng.integers(0, 3)), int(rng.integers(1, 20))
        est, var, n = looks.estimate[i, j], looks.variance[i, j], looks.n_info[i, j]
        e = quality.Effect(est, var, n, looks.n_star, -s.margin, False, "absolute")
        scalar = quality.test_quality(e, "asymptotic_cs", ALPHA, ALPHA / 3, 0.8)
        rho = sequential.cs_rho(ALPHA, looks.n_star, one_sided=True)
        assert scalar.p_value == pytest.approx(
            sequential.cs_p_value_one_sided(est, var, n, rho, -s.margin), rel=1e-12)
        single = type(looks)(looks.estimate[i:i + 1, j:j + 1], looks.variance[i:i + 1, j:j + 1],
                             looks.n_info[i:i + 1, :1], looks.n_arm[:1, j:j + 1], looks.n_star)
        vec = monitor(single, "asymptotic_cs", s.margin, ALPHA)
        assert bool(vec.rejections) == (scalar.p_value <= ALPHA)
        m = quality.test_quality(e, "msprt", ALPHA, ALPHA / 3, 0.8)
        assert bool(monitor(single, "msprt", s.margin, ALPHA).rejections) == (m.p_value <= ALPHA)


def test_effect_of_binary_counts_matches_the_simulation_definition():
    champion, challenger = Moments.from_binary(900, 1000), Moments.from_binary(890, 1000)
    e = quality.effect(champion, challenger, None, binary=True, higher_is_better=True, margin=0.02,
                       margin_type="absolute", planned_n_per_arm=1000)
    pc, pt = 900.5 / 1001, 890.5 / 1001
    assert e.estimate == pytest.approx(-0.01)
    assert e.variance == pytest.approx(pc * (1 - pc) / 1000 + pt * (1 - pt) / 1000)
    assert e.threshold == -0.02 and e.n == 2000 and e.n_star == 2000
