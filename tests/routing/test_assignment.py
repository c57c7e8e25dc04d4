"""Assignment follows tests/vectors/assignment.json (the copy of shared/vectors/assignment.json) exactly."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from service.routing.assignment import arm_ranges, assign, bucket

VECTORS = Path(os.environ.get("FRUGAL_VECTORS_DIR", Path(__file__).resolve().parents[1] / "vectors"))
CASES = json.loads((VECTORS / "assignment.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c['unit_id'][:20]}" for i, c in enumerate(CASES)])
def test_every_golden_case(case):
    assert bucket(case["salt"], case["unit_id"]) == case["bucket"]
    assert assign(case["salt"], case["unit_id"], case["weights_bp"], case["coverage_bp"]) == case["arm_index"]


def test_shares_over_a_million_units_are_within_half_a_point_of_the_weights():
    weights = [2000, 3000, 5000]
    counts = np.zeros(len(weights) + 1, dtype=int)
    for i in range(1_000_000):
        arm = assign("salt-x", f"u{i}", weights, 10_000)
        counts[len(weights) if arm is None else arm] += 1
    shares = counts[:3] / 1_000_000
    assert counts[3] == 0
    assert np.all(np.abs(shares - np.array(weights) / 10_000) < 0.005), shares


def test_raising_coverage_keeps_every_assigned_unit_in_its_arm():
    weights = [5000, 5000]
    previous = {}
    for coverage in (500, 1000, 2500, 5000, 10_000):
        current = {f"u{i}": assign("ramp", f"u{i}", weights, coverage) for i in range(20_000)}
        for unit, arm in previous.items():
            if arm is not None:
                assert current[unit] == arm
        previous = current
    assert all(arm is not None for arm in previous.values())


def test_ranges_at_partial_coverage():
    assert arm_ranges([5000, 5000], 1000) == [(0, 500), (5000, 5500)]
