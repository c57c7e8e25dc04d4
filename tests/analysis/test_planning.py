"""Planning against the textbook formula and against simulation."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from analysis.planning import plan, unit_variance
from analysis.simulation import Scenario, run


def test_fixed_sample_size_is_the_textbook_formula():
    v = unit_variance("binary", baseline=0.9)
    p = plan("fixed", margin=0.02, variance=v, alpha=0.05, power=0.8)
    want = (stats.norm.isf(0.05) + stats.norm.isf(0.2)) ** 2 * 2 * 0.09 / 0.02**2
    assert p.n_per_arm == math.ceil(want)  # 2,783 per arm


def test_paired_plan_needs_fewer_requests_than_an_ab_needs_units():
    a_b = plan("fixed", margin=0.02, variance=unit_variance("binary", baseline=0.9))
    paired = plan("fixed", margin=0.02, variance=unit_variance("binary", baseline=0.9, paired=True, agreement=0.9),
                  paired=True)
    assert 2 * a_b.n_per_arm > 3 * paired.n_per_arm


def test_group_sequential_inflation_matches_published_obf_factor():
    # Jennison & Turnbull Table 2.4 area: one-sided alpha 0.025, power 0.8, 5 looks, OBF: R ~ 1.03
    p = plan("gsd_obf", margin=0.01, variance=1.0, alpha=0.025, power=0.8)
    fixed = plan("fixed", margin=0.01, variance=1.0, alpha=0.025, power=0.8)
    assert 1.01 < p.n_per_arm / fixed.n_per_arm < 1.05
    assert p.expected_n_per_arm < fixed.n_per_arm


@pytest.mark.parametrize("method", ["asymptotic_cs", "msprt", "gsd_obf", "fixed"])
def test_planned_sample_gives_the_planned_power_in_simulation(method):
    v = unit_variance("binary", baseline=0.9)
    p = plan(method, margin=0.02, variance=v, alpha=0.05, power=0.8)
    batch = max(p.n_per_arm // 40, 1)
    scenario = Scenario(kind="binary", baseline=0.9, true_diff=0.0, margin=0.02, n_max=batch * 40, batch=batch,
                        sims=600, seed=31)
    rate = run(scenario, [method])[method].rate
    assert rate >= 0.8 - 3 * math.sqrt(0.16 / 600), (method, p.n_per_arm, rate)


def test_duration_from_traffic():
    p = plan("fixed", margin=0.02, variance=unit_variance("binary", baseline=0.9), traffic_per_day=10_000, share=0.5)
    assert p.days == pytest.approx(2 * p.n_per_arm / 5_000)
