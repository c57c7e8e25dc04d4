"""Planning against the textbook formula and against simulation."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from analysis import gsd
from analysis.planning import plan, unit_variance


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
    # Jennison & Turnbull Table 2.4 area: one-sided alpha 0.025, power 0.8, 5 looks, OBF, efficacy only: R ~ 1.03
    za, zb = stats.norm.isf(0.025), stats.norm.isf(0.2)
    efficacy_only = gsd.drift_for_power(gsd.planned_fractions(5), 0.025, "obf", 0.8, futility=False)
    assert 1.01 < (efficacy_only / (za + zb)) ** 2 < 1.05
    # the decision also stops for futility (non-binding beta spending), and the plan counts those stops:
    # it needs more than the efficacy-only design, and still stops earlier on average than a fixed test
    p = plan("gsd_obf", margin=0.01, variance=1.0, alpha=0.025, power=0.8)
    fixed = plan("fixed", margin=0.01, variance=1.0, alpha=0.025, power=0.8)
    assert p.n_per_arm / fixed.n_per_arm > (efficacy_only / (za + zb)) ** 2
    assert p.expected_n_per_arm < fixed.n_per_arm


def test_the_gsd_plan_power_counts_the_futility_stops():
    """With the design's futility bounds applied, the planned maximum reaches the planned power
    exactly (recursive integration); the efficacy-only sizing falls short (the old planner's ~0.77)."""
    for spending in ("obf", "pocock"):
        t = gsd.planned_fractions(5)
        drift = gsd.drift_for_power(t, 0.05, spending, 0.8)
        d = gsd.design(t, 0.05, spending, beta=0.2, drift=drift)
        up, _ = gsd.crossing_probabilities(d.upper, t, d.lower, drift=drift)
        assert up.sum() == pytest.approx(0.8, abs=1e-5)
        naive = gsd.drift_for_power(t, 0.05, spending, 0.8, futility=False)
        d_naive = gsd.design(t, 0.05, spending, beta=0.2, drift=naive)
        up_naive, _ = gsd.crossing_probabilities(d_naive.upper, t, d_naive.lower, drift=naive)
        assert up_naive.sum() < 0.79, spending


# The planned sample reaching the planned power through decide() is checked for every method in
# tests/analysis/test_simulation.py::test_power_through_decide_is_the_planned_power.


def test_duration_from_traffic():
    p = plan("fixed", margin=0.02, variance=unit_variance("binary", baseline=0.9), traffic_per_day=10_000, share=0.5)
    assert p.days == pytest.approx(2 * p.n_per_arm / 5_000)
