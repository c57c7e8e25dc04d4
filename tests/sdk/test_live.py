"""The SDK against a real running service (gunicorn on loopback, Postgres, real ONNX models)."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from frugal_sdk import ApiError, Client

pytestmark = pytest.mark.postgres


def test_remote_predict_and_outcomes_join_their_predictions(live):
    with Client(live.url, live.sdk_key, timeout=5) as client:
        one = client.predict(live.experiment, "user-1", live.features)
        batch = client.predict_batch(live.experiment, [(f"user-{i}", live.features) for i in range(2, 42)])
        for p in [one, *batch]:
            client.record_outcome(p.request_id, 1.0 if p.prediction == 1 else 0.0)
        assert client.flush(timeout=10)
        stats = client.stats()
    assert one.arm in ("champion", "challenger") and one.fallback_reason is None and one.served_by
    assert one.model_version == (live.champion if one.arm == "champion" else live.challenger)
    assert len(batch) == 40 and {p.arm for p in batch} == {"champion", "challenger"}
    assert stats["outcomes_sent"] == 41 and stats["dropped"] == 0 and stats["fallbacks"] == 0
    joined = live.wait_rows("SELECT p.request_id, p.arm, o.value FROM predictions p JOIN outcomes o USING (request_id) "
                            "WHERE p.served", 41)
    assert len(joined) == 41
    arms = {p.request_id: p.arm for p in [one, *batch]}
    assert {r.request_id: r.arm for r in joined} == arms


def test_local_assignment_matches_the_service_for_the_same_units(live):
    units = [f"u{i}" for i in range(600)]
    with Client(live.url, live.sdk_key, timeout=10) as client:
        assert client.ready and client.stats()["ruleset_source"] == "service"
        local = {u: client.assign(live.experiment, u) for u in units}
        served = client.predict_batch(live.experiment, [(u, live.features) for u in units], deadline=20)
    assert all(a.reason == "SPLIT" and a.phase == 1 for a in local.values())
    assert {u: a.arm for u, a in local.items()} == {u: p.arm for u, p in zip(units, served)}
    share = sum(a.arm == "challenger" for a in local.values()) / len(units)
    assert 0.4 < share < 0.6


def test_local_assign_log_prediction_and_outcomes_land_in_the_database(live):
    with Client(live.url, live.sdk_key, timeout=5, flush_interval=0.1) as client:
        ids = []
        for i in range(50):
            a = client.assign(live.experiment, f"local-{i}")
            model = live.champion if a.arm == "champion" else live.challenger
            rid = client.log_prediction(live.experiment, f"local-{i}", a, model, latency_ms=2.5, prediction=1,
                                        confidence=0.9)
            client.record_outcome(rid, 1.0)
            ids.append((rid, a.arm))
    stats = client.stats()
    assert stats["events_sent"] == 50 and stats["outcomes_sent"] == 50 and stats["buffered"] == 0
    rows = live.wait_rows("SELECT p.request_id, p.arm, p.source, o.value FROM predictions p "
                          "JOIN outcomes o USING (request_id) WHERE p.source = 'sdk'", 50)
    assert sorted((r.request_id, r.arm) for r in rows) == sorted(ids)


def test_one_bad_event_in_a_batch_does_not_lose_the_others(live):
    with Client(live.url, live.sdk_key, timeout=5, flush_interval=60) as client:
        a = client.assign(live.experiment, "x")
        model = live.champion if a.arm == "champion" else live.challenger
        good = [client.log_prediction(live.experiment, f"g{i}", a, model, 1.0) for i in range(9)]
        client.log_prediction(live.experiment, "bad", a, model, 1.0, prediction={"not": "allowed"})  # the API refuses it
        assert client.flush(timeout=10)
        stats = client.stats()
    assert stats["events_sent"] == 9 and stats["events_rejected"] == 1
    stored = {r.request_id for r in live.wait_rows("SELECT request_id FROM predictions WHERE source = 'sdk'", 9)}
    assert stored == set(good)


def test_strict_mode_raises_typed_errors_graceful_mode_falls_back(live):
    with Client(live.url, live.sdk_key, strict=True) as client, pytest.raises(ApiError) as err:
        client.predict("no-such-experiment", "u", live.features)
    assert err.value.status == 404 and "no-such-experiment" in str(err.value)
    with Client(live.url, live.sdk_key) as client:
        p = client.predict(live.experiment, "u", live.features[:-1], fallback=lambda f: "local-model")
    assert p.prediction == "local-model" and p.from_fallback and p.fallback_reason.startswith("sdk_refused: 422")


def _child(url: str, key: str, experiment: str, queue) -> None:
    client = _PARENT_CLIENT  # inherited across the fork
    a = client.assign(experiment, "forked-unit")
    client.record_outcome("forked-outcome", 1.0)
    client.close(timeout=10)
    queue.put((a.arm, a.reason, client.stats()["outcomes_sent"]))


_PARENT_CLIENT = None


def test_a_forked_child_keeps_assigning_and_delivers_its_own_outcomes(live):
    global _PARENT_CLIENT
    with Client(live.url, live.sdk_key, timeout=5) as client:
        _PARENT_CLIENT = client
        expected = client.assign(live.experiment, "forked-unit")
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child, args=(live.url, live.sdk_key, live.experiment, queue))
        child.start()
        child.join(30)
        arm, reason, sent = queue.get(timeout=5)
        assert child.exitcode == 0 and os.getpid() != child.pid
        assert (arm, reason) == (expected.arm, "SPLIT") and sent == 1
        assert client.stats()["ruleset_version"] == expected.ruleset_version
    assert live.rows("SELECT value FROM outcomes WHERE request_id = 'forked-outcome'")[0].value == 1.0


def test_openfeature_provider_gives_the_arm_as_a_string_flag(live):
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext

    from frugal_sdk.openfeature import FrugalProvider

    # set_provider_and_wait, as docs/sdk.md says: plain set_provider initializes on a thread, and until it
    # is done OpenFeature answers the default with ERROR/PROVIDER_NOT_READY (CI saw it on a busy host)
    with Client(live.url, live.sdk_key, timeout=5, init_timeout=60) as client:
        assert client.ready, client.stats()
        api.set_provider_and_wait(FrugalProvider(client))
        of = api.get_client()
        for unit in ("a", "b", "c", "d"):
            details = of.get_string_details(live.experiment, "champion", EvaluationContext(targeting_key=unit))
            assert details.value == client.assign(live.experiment, unit).arm and details.reason == "SPLIT"
            assert details.variant == details.value and details.flag_metadata["phase"] == 1
        missing = of.get_string_details("nope", "fallback-arm", EvaluationContext(targeting_key="a"))
        assert (missing.value, missing.reason, missing.error_code) == ("fallback-arm", "ERROR", "FLAG_NOT_FOUND")
        no_key = of.get_string_details(live.experiment, "champion", EvaluationContext())
        assert no_key.error_code == "TARGETING_KEY_MISSING" and no_key.value == "champion"
        assert of.get_boolean_details(live.experiment, False, EvaluationContext(targeting_key="a")).error_code == "TYPE_MISMATCH"
        api.clear_providers()


def test_the_ruleset_refreshes_in_the_background_with_etags(live):
    """Unchanged rulesets cost a 304; a change on the service (pausing) reaches assign() within a few
    refresh intervals, with no call on the assignment path."""
    import time

    import httpx

    with Client(live.url, live.sdk_key, timeout=5, refresh_interval=0.2) as client:
        assert client.assign(live.experiment, "u1").reason == "SPLIT"
        time.sleep(1.0)
        stats = client.stats()
        assert stats["ruleset_not_modified"] >= 2 and stats["ruleset_errors"] == 0
        answer = httpx.post(f"{live.url}/v1/experiments/{live.experiment}/pause", json={"reason": "sdk test"},
                            headers={"Authorization": f"Bearer {live.admin_key}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 10
        while client.assign(live.experiment, "u1").reason != "DISABLED" and time.monotonic() < deadline:
            time.sleep(0.05)
        a = client.assign(live.experiment, "u1")
    assert (a.reason, a.arm, a.in_experiment) == ("DISABLED", "champion", False)
    assert a.ruleset_version != stats["ruleset_version"]
