"""`frugal plan`: sample size and days per method from the command line (POST /v1/plan is tested
on Postgres in tests/worker/test_decisions.py)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from analysis.planning import plan, unit_variance


def test_frugal_plan_prints_every_method_with_its_days():
    from service.cli import main

    result = CliRunner().invoke(main, ["plan", "--margin", "0.02", "--baseline", "0.9", "--traffic-per-day", "20000",
                                       "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    plans = {p["method"]: p for p in body["plans"]}
    assert set(plans) == {"asymptotic_cs", "msprt", "gsd_obf", "gsd_pocock", "fixed"}
    fixed = plan("fixed", margin=0.02, variance=unit_variance("binary", baseline=0.9))
    assert plans["fixed"]["n_per_arm"] == fixed.n_per_arm == 2783
    assert plans["fixed"]["days"] == 2 * 2783 / 20000
    assert plans["gsd_obf"]["expected_n_per_arm"] < plans["gsd_obf"]["n_per_arm"]
    table = CliRunner().invoke(main, ["plan", "--margin", "0.02", "--baseline", "0.9", "--method", "fixed"])
    assert table.exit_code == 0 and "2,783" in table.output


def test_frugal_plan_says_what_is_missing():
    from service.cli import main

    result = CliRunner().invoke(main, ["plan", "--margin", "0.02"])
    assert result.exit_code != 0 and "baseline" in result.output
    result = CliRunner().invoke(main, ["plan", "--margin", "-1", "--baseline", "0.9"])
    assert result.exit_code != 0 and "margin" in result.output
