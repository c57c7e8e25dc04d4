"""The whole loop on Postgres + Redis + a live worker process: traffic in through the API (real ONNX
models), outcomes later, the worker rolls up and analyses, and acts where the experiment allows it.

The truth is set exactly: each arm's outcomes agree with its predictions in exactly the chosen share
of requests (spread evenly), so the challenger is non-inferior (same accuracy) or worse (5 points
below, margin 2 points) whatever units the phase's random salt puts in each arm.  (Random outcomes
made the equal-accuracy case fail about one run in 50, by chance.)
"""

from __future__ import annotations

import time

import pytest

from service.app import create_app
from service.worker.celery_app import make_celery
from tests.conftest import make_settings
from tests.harness.processes import Worker, frugal_env

REQUESTS = 12_000


def _rows(demo_models):
    import csv

    champion = next(m for m in demo_models.values() if getattr(m, "role", "") == "champion")
    with open(champion.path.parent / "test.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        return [[float(r[name]) for name in champion.feature_names] for r in reader]


@pytest.fixture
def loop(fresh_pg, redis_url, data_dir, tmp_path, demo_models):
    """An in-process API on the test's own database and a live worker process on Redis."""
    from service import registry
    from service.auth import create_key

    app = create_app(make_settings(data_dir, database_url=fresh_pg, broker_url=redis_url, ruleset_ttl_s=0.2,
                                   event_flush_interval_s=0.05))
    rt = app.extensions["frugal"]
    celery = make_celery(app)
    models = {m.role: m for m in demo_models.values() if getattr(m, "role", None)}
    refs = {role: registry.register(rt.db, rt.settings, m.path.read_bytes(), name=m.name, version=m.version, task=m.task,
                                    declared_cost_per_1k=cost).ref
            for role, m, cost in (("champion", models["champion"], 1.0), ("challenger", models["challenger"], 0.1))}
    admin = {"Authorization": "Bearer " + create_key(rt.db, name="admin", scope="admin").secret}
    sdk = {"Authorization": "Bearer " + create_key(rt.db, name="sdk", scope="sdk").secret}
    worker = Worker(frugal_env(data_dir, fresh_pg, redis_url), tmp_path / "worker.log")
    yield {"app": app, "rt": rt, "celery": celery, "client": app.test_client(), "refs": refs, "admin": admin, "sdk": sdk,
           "rows": _rows(demo_models), "worker": worker}
    worker.stop()
    rt.close()


def _experiment(ctx, name: str) -> dict:
    body = {"name": name, "mode": "ab", "unit": "unit_id",
            "champion": {"kind": "model", "model": ctx["refs"]["champion"]},
            "challenger": {"kind": "model", "model": ctx["refs"]["challenger"]},
            "metric": {"kind": "binary", "quality": "accuracy", "margin": 0.02},
            "guardrails": {"latency": {"threshold_ms": 500, "max_share": 0.05}, "cost_must_be_lower": True},
            "design": {"alpha": 0.05, "power": 0.8, "planned_n_per_arm": REQUESTS // 2, "method": "asymptotic_cs"},
            "automation": {"promote": True, "rollback": True}}
    client, admin = ctx["client"], ctx["admin"]
    created = client.post("/v1/experiments", json=body, headers=admin)
    assert created.status_code == 201, created.get_json()
    started = client.post(f"/v1/experiments/{name}/start", json={"reason": "test"}, headers=admin)
    assert started.status_code == 200, started.get_json()
    return started.get_json()


def _traffic(ctx, name: str, accuracy: dict[str, float]) -> dict[str, int]:
    """Serve REQUESTS predictions, then send outcomes that make each arm right in exactly its share."""
    from service.eventlog import event_log

    client, sdk, rows = ctx["client"], ctx["sdk"], ctx["rows"]
    outcomes, arms = [], {"champion": 0, "challenger": 0}
    for start in range(0, REQUESTS, 250):
        items = [{"unit_id": f"{name}-u{k}", "features": rows[k % len(rows)], "request_id": f"{name}-{k}"}
                 for k in range(start, start + 250)]
        response = client.post("/v1/predict/batch", json={"experiment": name, "items": items}, headers=sdk)
        assert response.status_code == 200, response.get_json()
        for answer in response.get_json()["items"]:
            k = arms[answer["arm"]]
            arms[answer["arm"]] += 1
            share = accuracy[answer["arm"]]
            right = int((k + 1) * share) > int(k * share)   # the arm's k-th answer: exactly `share` of them right
            value = float(answer["prediction"]) if right else 1.0 - float(answer["prediction"])
            outcomes.append({"request_id": answer["request_id"], "value": value})
    for start in range(0, len(outcomes), 1000):
        response = client.post("/v1/outcomes", json=outcomes[start:start + 1000], headers=sdk)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["accepted"] == len(outcomes[start:start + 1000])
    assert event_log(ctx["rt"]).flush(timeout=60), "the event log did not drain"
    return arms


def _analyse(ctx, experiment_id: int, slot: str) -> dict:
    return ctx["celery"].send_task("frugal.analyze", args=[experiment_id, slot]).get(timeout=180)


def _why(ctx, name: str) -> str:
    response = ctx["client"].get(f"/v1/experiments/{name}/results", headers=ctx["admin"])
    return response.get_json().get("explanation", response.get_data(as_text=True))


def _events(ctx, name: str) -> list[dict]:
    response = ctx["client"].get(f"/v1/experiments/{name}/events?limit=100", headers=ctx["admin"])
    assert response.status_code == 200
    return response.get_json()["items"]


@pytest.mark.worker
def test_a_non_inferior_cheaper_challenger_is_promoted_and_then_serves(loop):
    experiment = _experiment(loop, "noninferior")
    arms = _traffic(loop, "noninferior", {"champion": 0.95, "challenger": 0.95})
    assert min(arms.values()) > 0.45 * REQUESTS

    result = _analyse(loop, experiment["id"], "slot-1")
    assert result["decision"] == "PROMOTE", _why(loop, "noninferior")
    assert result["actions"] == ["promote"]

    state = loop["client"].get("/v1/experiments/noninferior", headers=loop["admin"]).get_json()
    assert state["state"] == "promoted"
    promote = [e for e in _events(loop, "noninferior") if e["kind"] == "promote"]
    assert len(promote) == 1 and promote[0]["analysis_id"] == result["analysis_id"]
    assert str(result["analysis_id"]) in promote[0]["reason"]

    time.sleep(0.5)  # the in-process catalog refreshes every 0.2 s
    for k in range(20):
        answer = loop["client"].post("/v1/predict", headers=loop["sdk"], json={
            "experiment": "noninferior", "unit_id": f"after-{k}", "features": loop["rows"][k]}).get_json()
        assert answer["served_by"] == loop["refs"]["challenger"], answer


@pytest.mark.worker
def test_a_challenger_worse_than_the_margin_is_rejected_and_rolled_back(loop):
    experiment = _experiment(loop, "worse")
    _traffic(loop, "worse", {"champion": 0.95, "challenger": 0.90})

    result = _analyse(loop, experiment["id"], "slot-1")
    assert result["decision"] == "REJECT", _why(loop, "worse")
    assert result["actions"] == ["rollback"]
    state = loop["client"].get("/v1/experiments/worse", headers=loop["admin"]).get_json()
    assert state["state"] == "rolled_back"
    rollback = [e for e in _events(loop, "worse") if e["kind"] == "rollback"]
    assert len(rollback) == 1 and rollback[0]["analysis_id"] == result["analysis_id"]

    time.sleep(0.5)
    for k in range(20):
        answer = loop["client"].post("/v1/predict", headers=loop["sdk"], json={
            "experiment": "worse", "unit_id": f"after-{k}", "features": loop["rows"][k]}).get_json()
        assert answer["served_by"] == loop["refs"]["champion"], answer

    again = _analyse(loop, experiment["id"], "slot-1")
    assert again["analysis_id"] == result["analysis_id"] and again["created"] is False
