"""The SDK's assignment rule is the shared one: every case of shared/vectors/assignment.json."""

from __future__ import annotations

import pytest

from frugal_sdk import Client
from frugal_sdk._assignment import arm_index, bucket


def test_every_vector_case(assignment_vectors):
    cases = assignment_vectors["cases"]
    assert len(cases) >= 10
    for case in cases:
        b = bucket(case["salt"], case["unit_id"])
        assert b == case["bucket"], case
        assert arm_index(b, tuple(case["weights_bp"]), case["coverage_bp"]) == case["arm_index"], case


def _ruleset(case: dict, state: str = "running", mode: str = "ab") -> dict:
    names = ["champion", "challenger"] + [f"arm{i}" for i in range(2, len(case["weights_bp"]))]
    return {"version": "v1", "experiments": [{
        "name": "e", "state": state, "mode": mode, "unit": "user", "phase": 3, "salt": case["salt"],
        "coverage_bp": case["coverage_bp"], "served_arm": "champion",
        "arms": [{"name": n, "weight_bp": w, "policy": {"kind": "model", "model": f"{n}:1"}}
                 for n, w in zip(names, case["weights_bp"])]}]}


def test_client_assign_follows_the_vectors_from_a_bootstrap(assignment_vectors):
    """Through the public API, with the service unreachable and the ruleset from a bootstrap dict."""
    for case in assignment_vectors["cases"]:
        with Client("http://127.0.0.1:9", "k", bootstrap=_ruleset(case), init_timeout=0.2, timeout=0.2) as client:
            a = client.assign("e", case["unit_id"])
        if case["arm_index"] is None:
            assert (a.arm, a.in_experiment, a.reason) == ("champion", False, "DEFAULT"), case
        else:
            names = ["champion", "challenger"] + [f"arm{i}" for i in range(2, len(case["weights_bp"]))]
            assert (a.arm, a.in_experiment, a.reason) == (names[case["arm_index"]], True, "SPLIT"), case
            assert a.policy == {"kind": "model", "model": f"{a.arm}:1"} and a.phase == 3
        assert a.stale  # it came from a bootstrap, not the service


@pytest.mark.parametrize("served", ["champion", "challenger"])
def test_a_stopped_experiment_serves_its_served_arm(assignment_vectors, served):
    rules = _ruleset(assignment_vectors["cases"][0], state="promoted" if served == "challenger" else "stopped")
    rules["experiments"][0]["served_arm"] = served
    with Client("http://127.0.0.1:9", "k", bootstrap=rules, init_timeout=0) as client:
        a = client.assign("e", "anyone")
    assert (a.arm, a.in_experiment, a.reason) == (served, False, "DISABLED")


def test_shadow_experiments_always_answer_with_the_champion(assignment_vectors):
    case = next(c for c in assignment_vectors["cases"] if c["coverage_bp"] == 10000)
    with Client("http://127.0.0.1:9", "k", bootstrap=_ruleset(case, mode="shadow"), init_timeout=0) as client:
        a = client.assign("e", case["unit_id"])
    assert (a.arm, a.in_experiment) == ("champion", True)


def test_no_ruleset_and_unknown_experiments_are_errors_not_exceptions(assignment_vectors):
    with Client("http://127.0.0.1:9", "k", init_timeout=0) as client:
        a = client.assign("e", "u")
        assert (a.arm, a.reason, a.error_code, a.policy) == ("champion", "ERROR", "PROVIDER_NOT_READY", None)
    with Client("http://127.0.0.1:9", "k", bootstrap=_ruleset(assignment_vectors["cases"][0]), init_timeout=0) as client:
        a = client.assign("missing", "u")
        assert (a.arm, a.reason, a.error_code) == ("champion", "ERROR", "FLAG_NOT_FOUND")
    from frugal_sdk import NotReady

    with Client("http://127.0.0.1:9", "k", init_timeout=0, strict=True) as client, pytest.raises(NotReady):
        client.assign("e", "u")


@pytest.mark.parametrize("request_id, value", [("has space", 1.0), ("", 1.0), ("ok", float("nan")), ("ok", "high"),
                                               ("ok", None)])
def test_a_malformed_outcome_is_refused_at_the_call_counted_and_never_buffered(request_id, value):
    with Client("http://127.0.0.1:9", "k", local=False, timeout=0.1) as client:
        client.record_outcome(request_id, value)
        stats = client.stats()
    assert stats["invalid"] == 1 and stats["buffered"] == 0 and stats["dropped"] == 0
    with Client("http://127.0.0.1:9", "k", local=False, timeout=0.1, strict=True) as client, \
            pytest.raises(ValueError, match="record_outcome"):
        client.record_outcome(request_id, value)


def test_a_malformed_prediction_log_is_refused_naming_each_problem():
    with Client("http://127.0.0.1:9", "k", local=False, timeout=0.1, strict=True) as client, \
            pytest.raises(ValueError) as err:
        client.log_prediction("e", "u", "neither", "m:1", float("inf"), confidence=2.0)
    message = str(err.value)
    assert "arm must be" in message and "latency_ms must be" in message and "confidence must be" in message
