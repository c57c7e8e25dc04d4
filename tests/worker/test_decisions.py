"""Decisions on Postgres + Redis + a live worker: every documented endpoint answers on Postgres
(``POST /v1/experiments/{id}/analyze`` failed there: its 41-character slot did not fit), a
challenger that never answers is not promoted, FUTILE stops the experiment when automation says
so, and the webhook (signed, from the outbox) survives a worker killed after the analysis."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from service.app import create_app
from service.worker.celery_app import make_celery
from tests.conftest import make_settings
from tests.harness.processes import Worker, frugal_env
from tests.worker.test_loop import REQUESTS, _events, _rows, _traffic, _why

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict, bytes]] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def live(fresh_pg, redis_url, data_dir, tmp_path, demo_models):
    """The API in process on the test's own Postgres, a live worker on Redis that may post webhooks to
    this host (FRUGAL_WEBHOOK_ALLOW_PRIVATE) and signs them."""
    from service import registry
    from service.auth import create_key

    extra = {"webhook_secret": SECRET, "webhook_allow_private": "true"}
    app = create_app(make_settings(data_dir, database_url=fresh_pg, broker_url=redis_url, ruleset_ttl_s=0.2,
                                   event_flush_interval_s=0.05, **extra))
    rt = app.extensions["frugal"]
    celery = make_celery(app)
    models = {m.role: m for m in demo_models.values() if getattr(m, "role", None)}
    refs = {role: registry.register(rt.db, rt.settings, m.path.read_bytes(), name=m.name, version=m.version, task=m.task,
                                    declared_cost_per_1k=cost).ref
            for role, m, cost in (("champion", models["champion"], 1.0), ("challenger", models["challenger"], 0.1))}
    admin = {"Authorization": "Bearer " + create_key(rt.db, name="admin", scope="admin").secret}
    sdk = {"Authorization": "Bearer " + create_key(rt.db, name="sdk", scope="sdk").secret}
    read = {"Authorization": "Bearer " + create_key(rt.db, name="read", scope="read").secret}
    worker = Worker(frugal_env(data_dir, fresh_pg, redis_url, FRUGAL_WEBHOOK_SECRET=SECRET,
                               FRUGAL_WEBHOOK_ALLOW_PRIVATE="true"), tmp_path / "worker.log")
    yield {"app": app, "rt": rt, "celery": celery, "client": app.test_client(), "refs": refs, "admin": admin,
           "sdk": sdk, "read": read, "rows": _rows(demo_models), "worker": worker, "demo_models": demo_models}
    worker.stop()
    rt.close()


def _create(ctx, name: str, **extra) -> dict:
    body = {"name": name, "mode": "ab", "unit": "unit_id",
            "champion": {"kind": "model", "model": ctx["refs"]["champion"]},
            "challenger": {"kind": "model", "model": ctx["refs"]["challenger"]},
            "metric": {"kind": "binary", "quality": "accuracy", "margin": 0.02},
            "guardrails": {"latency": {"threshold_ms": 5000, "max_share": 0.05}, "cost_must_be_lower": True},
            "design": {"alpha": 0.05, "power": 0.8, "planned_n_per_arm": REQUESTS // 2, "method": "asymptotic_cs"},
            "challenger_deadline_ms": 30_000}
    body.update(extra)
    created = ctx["client"].post("/v1/experiments", json=body, headers=ctx["admin"])
    assert created.status_code == 201, created.get_json()
    started = ctx["client"].post(f"/v1/experiments/{name}/start", json={"reason": "test"}, headers=ctx["admin"])
    assert started.status_code == 200, started.get_json()
    return started.get_json()


def _poll_task(ctx, task_id: str) -> dict:
    deadline = time.monotonic() + 240
    while True:
        state = ctx["client"].get(f"/v1/tasks/{task_id}", headers=ctx["read"])
        assert state.status_code == 200, state.get_json()
        body = state.get_json()
        if body["state"] in ("SUCCESS", "FAILURE"):
            return body
        assert time.monotonic() < deadline, (body, ctx["worker"].log())
        time.sleep(0.2)


@pytest.mark.worker
def test_every_documented_endpoint_answers_on_postgres(live):
    c, admin, sdk, read = live["client"], live["admin"], live["sdk"], live["read"]
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 200, c.get("/readyz").get_data(as_text=True)

    model = live["demo_models"]["mlp"]  # a model with weights, so fp16 quantization has something to do
    uploaded = c.post("/v1/models", headers=admin, content_type="multipart/form-data", data={
        "file": (open(model.path, "rb"), "m.onnx"), "name": "extra", "version": "1", "task": model.task})
    assert uploaded.status_code == 201, uploaded.get_json()
    model_id = uploaded.get_json()["id"]
    assert c.get(f"/v1/models/{model_id}", headers=read).status_code == 200
    assert c.get("/v1/models", headers=read).get_json()["total"] >= 3
    bench = c.post(f"/v1/models/{model_id}/benchmark", headers=admin, json={"budget_s": 0.3})
    assert bench.status_code == 200 and bench.get_json()["profile"], bench.get_json()
    quant = c.post(f"/v1/models/{model_id}/quantize", headers=admin, json={"to": "fp16"})
    assert quant.status_code == 201, quant.get_json()

    experiment = _create(live, "everything")
    name, exp_id = experiment["name"], experiment["id"]
    assert c.get("/v1/experiments", headers=read).get_json()["total"] == 1
    assert c.get(f"/v1/experiments/{exp_id}", headers=read).status_code == 200
    rows = live["rows"]
    one = c.post("/v1/predict", headers=sdk, json={"experiment": name, "unit_id": "u-0", "features": rows[0]})
    assert one.status_code == 200, one.get_json()
    batch = c.post("/v1/predict/batch", headers=sdk, json={"experiment": name, "items": [
        {"unit_id": f"u-{k}", "features": rows[k % len(rows)], "request_id": f"r-{k}"} for k in range(1, 300)]})
    assert batch.status_code == 200, batch.get_json()
    answers = batch.get_json()["items"]
    outcomes = c.post("/v1/outcomes", headers=sdk, json=[{"request_id": a["request_id"], "value": 1.0} for a in answers])
    assert outcomes.status_code == 200 and outcomes.get_json()["accepted"] == len(answers)
    ruleset = c.get("/v1/sdk/ruleset", headers=sdk)
    assert ruleset.status_code == 200 and any(e["name"] == name for e in ruleset.get_json()["experiments"])
    events = c.post("/v1/events", headers=sdk, json={"events": [{
        "request_id": "local-1", "experiment": name, "unit_id": "u-local", "arm": "champion",
        "model_version": live["refs"]["champion"], "latency_ms": 1.0, "prediction": 1}]})
    assert events.status_code == 200 and events.get_json()["accepted"] == 1, events.get_json()
    assert c.get("/v1/metrics", headers=read).status_code == 200

    accepted = c.post(f"/v1/experiments/{exp_id}/analyze", headers=admin)
    assert accepted.status_code == 202, accepted.get_json()
    task = _poll_task(live, accepted.get_json()["task_id"])
    assert task["state"] == "SUCCESS", task  # failed on Postgres: the slot 'task:<uuid>' is 41 characters
    results = c.get(f"/v1/experiments/{exp_id}/results", headers=read)
    assert results.status_code == 200 and results.get_json()["slot"].startswith("task:")
    assert "failures" in results.get_json()["results"]["components"]
    assert c.get(f"/v1/experiments/{name}/analyses", headers=read).get_json()["total"] == 1
    assert c.get(f"/v1/experiments/{exp_id}/events", headers=read).status_code == 200

    plan = c.post("/v1/plan", headers=read, json={"experiment": name, "traffic_per_day": 10_000})
    assert plan.status_code == 200, plan.get_json()
    assert {p["method"] for p in plan.get_json()["plans"]} == {"asymptotic_cs", "msprt", "gsd_obf", "gsd_pocock", "fixed"}
    assert plan.get_json()["sources"]["baseline"] == "experiment"

    bad = c.post(f"/v1/experiments/{exp_id}/phases", headers=admin, json={"weights": [0.7, 0.7]})
    assert bad.status_code == 422 and bad.content_type.startswith("application/problem+json"), bad.get_data(as_text=True)
    phase = c.post(f"/v1/experiments/{exp_id}/phases", headers=admin, json={"weights": [0.6, 0.4], "reason": "test"})
    assert phase.status_code == 200 and phase.get_json()["phase"] == 2, phase.get_json()
    assert c.post(f"/v1/experiments/{exp_id}/pause", headers=admin, json={}).status_code == 200
    assert c.post(f"/v1/experiments/{exp_id}/resume", headers=admin, json={}).status_code == 200
    assert c.post(f"/v1/experiments/{exp_id}/stop", headers=admin, json={}).status_code == 200


@pytest.mark.worker
def test_a_challenger_that_never_answers_is_not_promoted_and_pays_for_its_failed_runs(live):
    """The audit's case: deadline 0.001 ms, every challenger request fell back, and it was PROMOTEd."""
    experiment = _create(live, "silent", challenger_deadline_ms=0.001, automation={"promote": True})
    arms = _traffic(live, "silent", {"champion": 0.95, "challenger": 0.95})
    assert arms["challenger"] > 0.4 * REQUESTS
    result = live["celery"].send_task("frugal.analyze", args=[experiment["id"], "slot-1"]).get(timeout=240)
    why = _why(live, "silent")
    assert result["decision"] == "REJECT" and result["actions"] == [], why
    body = live["client"].get("/v1/experiments/silent/results", headers=live["read"]).get_json()
    failures = body["results"]["components"]["failures"]
    assert failures["status"] == "harm" and failures["failed"] == failures["predictions"] == arms["challenger"]
    assert "failures: TOO MANY" in body["explanation"] and body["explanation"].count("failures:") == 1
    assert live["client"].get("/v1/experiments/silent", headers=live["read"]).get_json()["state"] == "running"
    # each fallen-back row is charged the champion's answer and the challenger's failed attempt
    cost = body["inputs"]["decision_inputs"]["arms"]
    champion_mean = cost["champion"]["cost"]["sum"] / cost["champion"]["cost"]["n"]
    challenger_mean = cost["challenger"]["cost"]["sum"] / cost["challenger"]["cost"]["n"]
    assert champion_mean == pytest.approx(1.0 / 1000)
    assert challenger_mean == pytest.approx((1.0 + 0.1) / 1000)


@pytest.mark.worker
def test_futile_stops_and_a_killed_worker_still_acts_and_sends_the_signed_webhook(live, receiver):
    """FUTILE + automation.futile = stop.  The analysis is stored as a worker would store it and then
    'dies' (no action, no webhook); the redelivered task finds the analysis, takes the action and
    delivers the outbox row, signed, saying what automation did."""
    from service.analytics import webhooks
    from service.analytics.analyze import analyze
    from service.store import outbox

    experiment = _create(live, "futile", automation={"futile": "stop"}, webhook_url=receiver,
                         design={"alpha": 0.05, "power": 0.8, "planned_n_per_arm": 1000, "method": "asymptotic_cs"})
    _traffic(live, "futile", {"champion": 0.95, "challenger": 0.935})
    from service.analytics.rollup import run_rollup

    run_rollup(live["rt"].db)
    stored, created = analyze(live["rt"].db, experiment["id"], "slot-dead", public_url="http://frugal.test")
    assert created and stored.decision == "FUTILE", stored.explanation
    with live["rt"].db.unit_of_work() as session:
        row = outbox.for_analysis(session, stored.id)
    assert row is not None and row.delivered_at is None  # written with the analysis, in its transaction
    assert live["client"].get("/v1/experiments/futile", headers=live["read"]).get_json()["state"] == "running"

    result = live["celery"].send_task("frugal.analyze", args=[experiment["id"], "slot-dead"]).get(timeout=240)
    assert result["created"] is False and result["analysis_id"] == stored.id
    assert result["actions"] == ["stop"], _why(live, "futile")
    assert live["client"].get("/v1/experiments/futile", headers=live["read"]).get_json()["state"] == "stopped"
    stop = [e for e in _events(live, "futile") if e["kind"] == "stop"]
    assert len(stop) == 1 and stop[0]["analysis_id"] == stored.id and stop[0]["actor"] == "worker"

    deadline = time.monotonic() + 120
    while not _Receiver.received:
        assert time.monotonic() < deadline, live["worker"].log()
        time.sleep(0.1)
    headers, body = _Receiver.received[0]
    assert webhooks.verify(SECRET, headers, body)
    assert not webhooks.verify(SECRET, headers, body.replace(b"FUTILE", b"PROMOTE"))
    message = json.loads(body)
    assert message["decision"] == "FUTILE" and message["analysis_id"] == stored.id
    assert [a["action"] for a in message["automation"]] == ["stop"]
    assert headers["webhook-id"] == f"msg_analysis_{stored.id}"
    # a second redelivery neither acts again nor sends the webhook again
    again = live["celery"].send_task("frugal.analyze", args=[experiment["id"], "slot-dead"]).get(timeout=240)
    assert again["actions"] == []
    time.sleep(1.0)
    assert len(_Receiver.received) == 1
