"""Every case of tests/vectors/statistics.json (a copy of ../shared/vectors), within its tolerance.

Each kind maps to a checker that computes the case from its inputs with :mod:`analysis` and
compares with the published or independently computed values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analysis import fixed, gsd, sequential
from analysis.fixed import SampleSummary
from analysis.latency import quantile_difference

CASES = json.loads((Path(__file__).parents[1] / "vectors" / "statistics.json").read_text())


def close(actual, expected, *, abs_tol=0.0, rel_tol=0.0, what=""):
    if expected == "inf":
        assert math.isinf(actual) and actual > 0, what
        return
    assert math.isclose(float(actual), float(expected), abs_tol=abs_tol, rel_tol=rel_tol), \
        f"{what}: got {actual!r}, expected {expected!r} (abs {abs_tol}, rel {rel_tol})"


def rounding(x: float) -> float:
    """Half a unit in the last digit a published value was rounded to (e.g. 1.79e-10 -> 5e-13)."""
    mantissa, _, exponent = repr(float(x)).partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (int(exponent or 0) - decimals)


def summary(d: dict) -> SampleSummary:
    return SampleSummary(d["n"], d["mean"], d["var"])


def fractions(inputs: dict) -> list[float]:
    t = inputs["information_fractions"]
    if isinstance(t, str):
        k = inputs["K"]
        return [i / k for i in range(1, k + 1)]
    return t


def check_pocock_constant(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    c, bounds = gsd.constant_boundaries(fractions(i), i["alpha"], sides=i.get("sides", 2), kind="pocock")
    if "C_P" in e:
        close(c, e["C_P"], abs_tol=tol.get("abs", 1e-4), what="C_P")
    if "critical_values" in e:
        for b, x in zip(bounds, e["critical_values"]):
            close(b, x, abs_tol=tol.get("abs_critical", tol.get("abs", 6e-4)), what="critical value")
    if "cumulative_alpha_spent" in e:
        up, down = gsd.crossing_probabilities(bounds, fractions(i), -bounds if i.get("sides", 2) == 2 else None)
        for got, x in zip(np.cumsum(up + down), e["cumulative_alpha_spent"]):
            close(got, x, abs_tol=tol.get("abs_alpha", 6e-6), what="cumulative alpha")


def check_obf_constant(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    c, bounds = gsd.constant_boundaries(fractions(i), i["alpha"], sides=i.get("sides", 2), kind="obf")
    close(c, e["C_B"], abs_tol=tol["abs"], what="C_B")
    for b, x in zip(bounds, e["boundary_z_each_look_from_rounded_C"]):
        close(b, x, abs_tol=tol["abs_boundaries"], what="boundary")


def check_obf_boundaries(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    sides = i["sides"]
    alpha_total = i["alpha"] * (2 if sides == 1 else 1)  # the classical constant is defined two-sided
    c, bounds = gsd.constant_boundaries(fractions(i), alpha_total, sides=2, kind="obf")
    close(c, e["C_B"], abs_tol=tol["abs_critical"], what="C_B")
    for b, x in zip(bounds, e["critical_values"]):
        close(b, x, abs_tol=tol["abs_critical"], what="critical value")
    up, down = gsd.crossing_probabilities(bounds, fractions(i), -bounds if sides == 2 else None)
    for got, x in zip(np.cumsum(up + down), e["cumulative_alpha_spent"]):
        close(got, x, abs_tol=tol["abs_alpha"], what="cumulative alpha")


def check_spending(kind):
    def check(case):
        i, e, tol = case["inputs"], case["expected"], case["tolerance"]
        d = gsd.design(i["information_fractions"], i["alpha"], kind, sides=i["sides"])
        spent = e.get("cumulative_alpha_spent", e.get("cumulative_alpha_spent_total"))
        for got, x in zip(d.cumulative_alpha, spent):
            close(got, x, abs_tol=tol["abs_alpha"], what="cumulative alpha")
        for got, x in zip(d.upper, e.get("critical_values", e.get("critical_values_derived"))):
            close(got, x, abs_tol=tol["abs_critical"], what="critical value")
        if "two_sided_stage_levels" in e:  # nominal two-sided level of each look's boundary
            for got, x in zip(d.upper, e["two_sided_stage_levels"]):
                close(2 * stats.norm.sf(got), x, abs_tol=tol["abs_levels"], what="stage level")
    return check


def check_power_spending(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    d = gsd.design(i["information_fractions"], i["alpha"], "power", sides=i["sides"], rho=2)
    for got, x, y in zip(d.upper, e["spotify_confidence_bounds"], e["independent_engine_bounds"]):
        close(got, x, abs_tol=tol["abs"], what="vs spotify-confidence")
        close(got, y, abs_tol=1e-4, what="vs independent engine")


def check_type1_inflation(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    t = [k / i["K"] for k in range(1, i["K"] + 1)]
    b = np.full(i["K"], i["boundary_z"])
    up, down = gsd.crossing_probabilities(b, t, -b)
    close(up.sum(), e["upper_crossing_probability"], abs_tol=tol["abs"], what="upper crossing")
    close(up.sum() + down.sum(), e["two_sided_overall_type1"], abs_tol=tol["abs_two_sided"], what="two-sided")


def _ni_inputs(i):
    x1 = i.get("x1", i.get("x1_treatment"))
    x2 = i.get("x2", i.get("x2_control"))
    return x1, i["n1"], x2, i["n2"], i["delta0"], i["alternative"]


def check_ni_score(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    x1, n1, x2, n2, d0, alt = _ni_inputs(i)
    if "p_value" in e:  # Miettinen–Nurminen duality cases
        r = fixed.farrington_manning(x1, n1, x2, n2, d0, alt, miettinen_nurminen=True)
        close(r.p_value, e["p_value"], abs_tol=tol["abs_p"], what="MN p")
        close(abs(r.statistic), e["z_statistic_abs"], abs_tol=tol["abs_z"], what="MN z")
        return
    kw = dict(rel_tol=tol["rel"], abs_tol=tol["abs"])
    fm = fixed.farrington_manning(x1, n1, x2, n2, d0, alt)
    close(fm.statistic, e["farrington_manning"]["z"], what="FM z", **kw)
    close(fm.p_value, e["farrington_manning"]["p_value"], what="FM p", **kw)
    for got, x in zip(fm.extra["restricted_mle"], e["farrington_manning"]["restricted_mle"]):
        close(got, x, what="restricted MLE", **kw)
    mn = fixed.farrington_manning(x1, n1, x2, n2, d0, alt, miettinen_nurminen=True)
    close(mn.statistic, e["miettinen_nurminen"]["z"], what="MN z", **kw)
    close(mn.p_value, e["miettinen_nurminen"]["p_value"], what="MN p", **kw)
    w = fixed.wald_two_proportions(x1, n1, x2, n2, d0, alt)
    close(w.statistic, e["wald_unpooled"]["z"], what="Wald z", **kw)
    close(w.p_value, e["wald_unpooled"]["p_value"], what="Wald p", **kw)
    close(w.se, e["wald_unpooled"]["se"], what="Wald se", **kw)


def check_score_ci(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    lo, hi = fixed.score_interval(i["x1"], i["n1"], i["x2"], i["n2"], i["conf_level"])
    close(lo, e["ci"][0], abs_tol=tol["abs"], what="lower")
    close(hi, e["ci"][1], abs_tol=tol["abs"], what="upper")


def check_wald_ci(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    lo, hi = fixed.agresti_caffo_interval(i["x1"], i["n1"], i["x2"], i["n2"], i["conf_level"])
    close(lo, e["ci"][0], abs_tol=tol["abs"], what="lower")
    close(hi, e["ci"][1], abs_tol=tol["abs"], what="upper")


def check_shifted_means(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    alternative = {"less": "smaller", "greater": "larger"}.get(i["alternative"].split()[0], i["alternative"])
    r = fixed.welch_test(summary(i["x"]), summary(i["y"]), i["mu0"], alternative, var_equal=i["var_equal"])
    rel = tol["rel"] * 1e3  # the published inputs carry 12 significant digits
    close(r.statistic, e["t"], rel_tol=rel, what="t")
    close(r.df, e["df"], rel_tol=rel, what="df")
    close(r.p_value, e["p_value"], rel_tol=rel, what="p")
    if "conf_int_95" in e:
        for got, x in zip(r.ci, e["conf_int_95"]):
            close(got, x, rel_tol=rel, what="ci")
    if "conf_int_one_sided_95" in e:  # upper one-sided 95% bound = upper end of the two-sided 90% interval
        upper = fixed.welch_test(summary(i["x"]), summary(i["y"]), i["mu0"], alternative, var_equal=i["var_equal"],
                                 confidence=0.90).ci[1]
        close(upper, e["conf_int_one_sided_95"][1], rel_tol=rel, what="one-sided bound")


def check_tost(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    x, y = np.asarray(i["raw_x"]), np.asarray(i["raw_y"])
    sx = SampleSummary(x.size, float(x.mean()), float(x.var(ddof=1)))
    sy = SampleSummary(y.size, float(y.mean()), float(y.var(ddof=1)))
    r = fixed.tost(sx, sy, i["lower_margin"], i["upper_margin"], i["alpha"], var_equal=i["var_equal"])
    rel = tol["rel"] * 1e3
    close(r.estimate, e["mean_diff"], rel_tol=rel, what="difference")
    close(r.se, e["se_diff"], rel_tol=rel, what="se")
    close(r.df, e["df"], rel_tol=rel, what="df")
    close(r.p_value, e["p_value"], rel_tol=rel, what="p")
    for got, x in zip(r.ci, e["ci_90"]):
        close(got, x, rel_tol=rel, what="90% ci")
    assert r.extra["equivalent"] == (e["result"] == "rejected")


def check_msprt_normal(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    lam = sequential.msprt_lambda(i["mean_diff"], i["V"] / i["n_per_arm"], i["tau2"], i["theta0"])
    close(lam, e["Lambda"], rel_tol=tol["rel"], what="Lambda")
    close(math.log(lam), e["log_Lambda"], rel_tol=tol["rel"], what="log Lambda")
    close(min(1, 1 / lam), e["always_valid_p_single_look"], rel_tol=tol["rel"],
          abs_tol=rounding(e["always_valid_p_single_look"]), what="p")
    assert (lam >= 1 / 0.05) == e["reject_at_alpha_0.05"]


def check_msprt_sequence(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    V = 2 * i["sigma2_per_arm"]
    lams = [sequential.msprt_lambda(look["mean_diff"], V / look["n_per_arm"], i["tau2"], i["theta0"]) for look in i["looks"]]
    ps = sequential.msprt_p_values(lams)
    for lam, p, x in zip(lams, ps, e["per_look"]):
        close(lam, x["Lambda"], rel_tol=tol["rel"], what="Lambda")
        close(p, x["p_running"], rel_tol=tol["rel"], what="running p")


def check_msprt_bernoulli(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    n = i["n_per_arm"]
    pc, pt = i["successes_control"] / n, i["successes_treatment"] / n
    V = pc * (1 - pc) + pt * (1 - pt)
    lam = sequential.msprt_lambda(pt - pc, V / n, i["tau2"], i["theta0"])
    close(lam, e["Lambda"], rel_tol=tol["rel"], what="Lambda")
    close(min(1, 1 / lam), e["always_valid_p_single_look"], rel_tol=tol["rel"], what="p")


def _relative(control: SampleSummary, treatment: SampleSummary) -> tuple[float, float]:
    mc, mt = control.mean, treatment.mean
    return mt / mc - 1, treatment.var / (treatment.n * mc * mc) + control.var * mt * mt / (control.n * mc**4)


def _gb_summary(d: dict) -> SampleSummary:
    if d["type"] == "proportion":
        p = d["sum"] / d["n"]
        return SampleSummary(d["n"], p, p * (1 - p))
    mean = d["sum"] / d["n"]
    return SampleSummary(d["n"], mean, (d["sum_squares"] - d["sum"] ** 2 / d["n"]) / (d["n"] - 1))


def check_cs(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    if "a" in i:
        control, treatment = _gb_summary(i["a"]), _gb_summary(i["b"])
    else:
        control, treatment = summary(i["control"]), summary(i["treatment"])
    n = control.n + treatment.n
    if i["difference_type"] == "relative":
        est, var = _relative(control, treatment)
    else:
        est, var = treatment.mean - control.mean, treatment.var / treatment.n + control.var / control.n
    cs = sequential.asymptotic_cs(est, var, n, i["alpha"], i["sequential_tuning_parameter"])
    kw = dict(abs_tol=tol.get("abs", 0.0), rel_tol=tol.get("rel", 0.0))
    if "expected" in e:
        close(est, e["expected"], what="estimate", **kw)
        close(math.sqrt(var), e["stddev"], what="stddev", **kw)
    else:
        close(est, e["point_estimate"], what="estimate", **kw)
        close(var, e["variance_of_estimate"], what="variance", **kw)
        close(cs.rho, e["rho"], what="rho", **kw)
        close(cs.halfwidth, e["halfwidth"], what="halfwidth", **kw)
    close(cs.lower, e["ci"][0], what="lower", **kw)
    close(cs.upper, e["ci"][1], what="upper", **kw)
    close(cs.p_value, e["p_value"], what="p", **kw)


def check_fixed_welch_relative(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    r = fixed.relative_welch_test(_gb_summary(i["b"]), _gb_summary(i["a"]), 0.0, "two-sided", 1 - i["alpha"])
    close(r.estimate, e["expected"], abs_tol=tol["abs"], what="estimate")
    close(r.se, e["stddev"], abs_tol=tol["abs"], what="stddev")
    close(r.ci[0], e["ci"][0], abs_tol=tol["abs"], what="lower")
    close(r.ci[1], e["ci"][1], abs_tol=tol["abs"], what="upper")
    close(r.p_value, e["p_value"], abs_tol=tol["abs"], what="p")


def check_srm(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    r = fixed.chi_square_gof(i["observed"], i["expected_weights"])
    close(r.statistic, e["chi2"], rel_tol=tol["rel"], what="chi2")
    assert r.df == e["df"]
    close(r.p_value, e["p_value"], abs_tol=1e-12, what="p")


def check_gof(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    r = fixed.chi_square_gof(i["observed"], i["expected_proportions"])
    close(r.statistic, e["chi2"], abs_tol=tol["abs_chi2"], what="chi2")
    close(r.statistic, e["chi2_computed"], abs_tol=1e-7, what="chi2 (computed)")
    close(r.p_value, e["p_value"], abs_tol=tol["abs_p"], what="p")
    assert r.df == e["df"]


def check_mcnemar(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    b, c = i["discordant_b_c"]
    exact = fixed.mcnemar(b, c, exact=True)
    close(exact.p_value, e["p_exact_binomial_two_sided"], abs_tol=tol.get("abs_exact", tol.get("abs", 0.0)) or 1e-12,
          what="exact p")
    if "statistic_min_discordant" in e:
        assert exact.statistic == e["statistic_min_discordant"]
    if "chi2_corrected" in e:
        rel = tol["rel_chi2_p"] * 5  # published to 7 significant digits
        cor, unc = fixed.mcnemar(b, c, exact=False), fixed.mcnemar(b, c, exact=False, correction=False)
        close(cor.statistic, e["chi2_corrected"], rel_tol=rel, what="chi2 corrected")
        close(cor.p_value, e["p_corrected"], rel_tol=rel, what="p corrected")
        close(unc.statistic, e["chi2_uncorrected"], rel_tol=rel, what="chi2")
        close(unc.p_value, e["p_uncorrected"], rel_tol=rel, what="p")


def check_quantile_difference(case):
    i, e, tol = case["inputs"], case["expected"], case["tolerance"]
    c, t = i["control"], i["treatment"]
    est, (lo, hi) = quantile_difference((c["quantile_hat"], c["quantile_lower"], c["quantile_upper"]),
                                        (t["quantile_hat"], t["quantile_lower"], t["quantile_upper"]),
                                        1 - i["alpha"], relative=i["difference_type"] == "relative")
    close(est, e["estimate"], abs_tol=tol["abs"], what="estimate")
    close(lo, e["ci"][0], abs_tol=tol["abs"], what="lower")
    close(hi, e["ci"][1], abs_tol=tol["abs"], what="upper")


def check_peer(case):
    """Side-by-side with peers: compare only where the method is the same as ours."""
    i, e = case["inputs"], case["expected"]
    kw = dict(rel_tol=case["tolerance"]["rel"], abs_tol=case["tolerance"]["abs"])
    last = i["looks_cumulative"][-1]

    def summary(d: dict) -> SampleSummary:  # gbstats' proportion variance is p(1 - p)
        if "successes" in d:
            p = d["successes"] / d["n"]
            return SampleSummary(d["n"], p, p * (1 - p))
        return SampleSummary(d["n"], d["mean"], d["var"])

    control, treatment = summary(last["control"]), summary(last["treatment"])
    n = control.n + treatment.n
    gb = e["gbstats"]
    w = fixed.welch_test(treatment, control)
    close(w.p_value, gb["fixed_two_sided_absolute"]["p_value"], what="gbstats fixed p", **kw)
    for got, x in zip(w.ci, gb["fixed_two_sided_absolute"]["ci"]):
        close(got, x, what="gbstats fixed ci", **kw)
    diff, var = treatment.mean - control.mean, treatment.var / treatment.n + control.var / control.n
    for tuning in sorted(int(k.rsplit("tuning", 1)[1]) for k in gb if k.startswith("sequential_two_sided_absolute")):
        key = f"sequential_two_sided_absolute_tuning{tuning}"
        cs = sequential.asymptotic_cs(diff, var, n, i["alpha"], tuning)
        close(cs.p_value, gb[key]["p_value"], what=key, **kw)
        close(cs.lower, gb[key]["ci"][0], what=key, **kw)
        rel, rvar = _relative(control, treatment)
        key = f"sequential_two_sided_relative_tuning{tuning}"
        cs = sequential.asymptotic_cs(rel, rvar, n, i["alpha"], tuning)
        close(cs.p_value, gb[key]["p_value"], what=key, **kw)
        close(cs.upper, gb[key]["ci"][1], what=key, **kw)
    ni = fixed.relative_welch_test(treatment, control, -i["ni_margin_relative_to_control_mean"], "larger", 1 - i["alpha"])
    close(ni.p_value, gb["NI_one_sided_relative_margin"]["p_value"], what="gbstats NI p", **kw)
    close(ni.ci[0], gb["NI_one_sided_relative_margin"]["ci"][0], what="gbstats NI bound", **kw)
    sp = e["spotify_confidence"]
    z = fixed.z_test_difference(treatment, control)
    close(z.p_value, sp["fixed_two_sided_absolute"]["p_value"], what="spotify z p", **kw)
    null = -i["ni_margin_relative_to_control_mean"] * control.mean
    zni = fixed.z_test_difference(treatment, control, null, "larger", 1 - i["alpha"])
    close(zni.p_value, sp["NI_increase_relative_margin"]["p_value"], what="spotify NI p", **kw)
    close(zni.ci[0], sp["NI_increase_relative_margin"]["ci"][0], what="spotify NI bound", **kw)
    # spotify's group-sequential adjusted intervals: power-family spending (rho 2) at t = N_k / N_max
    n_max = i["final_expected_n_total"]
    looks = i["looks_cumulative"]
    t = [(lk["control"]["n"] + lk["treatment"]["n"]) / n_max for lk in looks]
    d = gsd.design(t, i["alpha"], "power", sides=2, rho=2)
    for look, bound, x in zip(looks, d.upper, sp["group_sequential_two_sided_absolute"]):
        c, tr = summary(look["control"]), summary(look["treatment"])
        se = math.sqrt(tr.var / tr.n + c.var / c.n)
        got = (tr.mean - c.mean - bound * se, tr.mean - c.mean + bound * se)
        close(got[0], x["adjusted_ci"][0], abs_tol=2e-3 * se, what="spotify GSD lower")
        close(got[1], x["adjusted_ci"][1], abs_tol=2e-3 * se, what="spotify GSD upper")
        assert (got[0] > 0 or got[1] < 0) == x["is_significant"]


CHECKERS = {
    "gsd_pocock_constant": check_pocock_constant,
    "gsd_obf_constant": check_obf_constant,
    "gsd_obf_boundaries": check_obf_boundaries,
    "gsd_spending_ldof": check_spending("obf"),
    "gsd_spending_ldpocock": check_spending("pocock"),
    "gsd_spending_power": check_power_spending,
    "gsd_type1_inflation": check_type1_inflation,
    "ni_two_proportions_score": check_ni_score,
    "ni_two_proportions_score_ci": check_score_ci,
    "ni_two_proportions_wald_ci": check_wald_ci,
    "means_welch_shifted_null": check_shifted_means,
    "means_pooled_shifted_null": check_shifted_means,
    "means_tost": check_tost,
    "msprt_normal": check_msprt_normal,
    "msprt_normal_sequence": check_msprt_sequence,
    "msprt_bernoulli": check_msprt_bernoulli,
    "asymptotic_confidence_sequence": check_cs,
    "fixed_horizon_welch_ttest": check_fixed_welch_relative,
    "srm_chi_square": check_srm,
    "chi_square_gof": check_gof,
    "mcnemar": check_mcnemar,
    "quantile_difference_ci": check_quantile_difference,
    "peer_side_by_side": check_peer,
}


def test_every_kind_has_a_checker():
    assert {c["kind"] for c in CASES} <= set(CHECKERS)
    assert len(CASES) == 81


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_vector(case):
    CHECKERS[case["kind"]](case)
