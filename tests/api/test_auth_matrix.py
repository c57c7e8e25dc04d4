"""Every /v1 route x {no key, wrong scope, revoked key, right scope} -> 401 / 403 / 401 / success."""

from __future__ import annotations

import io

import pytest

from service.auth import revoke_key
from tests.api.conftest import experiment_body

WRONG = {"admin": "sdk", "sdk": "read", "read": "sdk"}


def _routes(app):
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        view = app.view_functions[rule.endpoint]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method, getattr(view, "required_scope", None)


def test_every_v1_route_declares_a_scope(app):
    missing = [f"{m} {r.rule}" for r, m, scope in _routes(app) if scope not in ("admin", "sdk", "read")]
    assert not missing


def _request(client, headers, method, rule, ctx):
    """A request that succeeds with the right key."""
    model_id = ctx["deletable_model_id"] if method == "DELETE" else ctx["spare_model_id"]
    url = rule.rule.replace("<ref>", str(ctx["experiment_id"])).replace("<int:model_id>", str(model_id))
    url = url.replace("<task_id>", ctx["task_id"])
    body = ctx["bodies"].get((method, rule.rule))
    if method == "POST" and rule.rule == "/v1/models":
        return client.post(url, headers=headers, data=ctx["upload"](), content_type="multipart/form-data")
    if body is None and method in ("POST", "PATCH"):
        body = {}
    return client.open(url, method=method, headers=headers, json=body)


@pytest.fixture
def ctx(client, admin, registered, demo_models, app):
    from service import registry

    rt = app.extensions["frugal"]
    model = demo_models["mlp"]  # a model with weights, so fp16 quantization has something to do
    spare = registry.register(rt.db, rt.settings, model.path.read_bytes(), name="spare", version="1", task=model.task)
    deletable = registry.register(rt.db, rt.settings, model.path.read_bytes(), name="spare", version="2", task=model.task)
    exp = client.post("/v1/experiments", headers=admin, json=experiment_body(registered)).json
    features = [0.0] * len(next(iter(registered.values())).signature["feature_names"])
    counter = {"n": 0}

    def upload():
        counter["n"] += 1
        return {"file": (io.BytesIO(model.path.read_bytes()), "m.onnx"), "name": "uploaded", "version": str(counter["n"]),
                "task": model.task}

    return {
        "experiment_id": exp["id"], "spare_model_id": spare.id, "deletable_model_id": deletable.id, "task_id": "00000000-0000-0000-0000-000000000000",
        "upload": upload,
        "bodies": {
            ("POST", "/v1/experiments"): experiment_body(registered, name="created-by-the-matrix"),
            ("PATCH", "/v1/experiments/<ref>"): {"description": "x"},
            ("POST", "/v1/predict"): {"experiment": exp["name"], "unit_id": "u1", "features": features},
            ("POST", "/v1/predict/batch"): {"experiment": exp["name"], "items": [{"unit_id": "u1", "features": features}]},
            ("POST", "/v1/outcomes"): [{"request_id": "r-auth", "value": 1}],
            ("POST", "/v1/events"): {"events": [{"request_id": "e-auth", "experiment": exp["name"], "unit_id": "u1",
                                                 "arm": "champion", "model_version": exp["definition"]["champion"]["model"],
                                                 "latency_ms": 1.0, "prediction": 1}]},
            ("POST", "/v1/models/<int:model_id>/quantize"): {"to": "fp16"},
            ("POST", "/v1/models/<int:model_id>/benchmark"): {"budget_s": 0.2},
            ("POST", "/v1/experiments/<ref>/phases"): {"weights": [0.5, 0.5]},
            ("POST", "/v1/plan"): {"margin": 0.02, "baseline": 0.9, "methods": ["fixed"]},
        },
    }


# Routes whose success needs more state than one request (a later state, a worker): for those the
# right key must get past auth (no 401/403); the state machine answers 409 and that is tested elsewhere.
STATEFUL = {"/v1/experiments/<ref>/pause", "/v1/experiments/<ref>/resume", "/v1/experiments/<ref>/ramp",
            "/v1/experiments/<ref>/results", "/v1/experiments/<ref>/analyze", "/v1/experiments/<ref>/stop",
            "/v1/experiments/<ref>/promote", "/v1/experiments/<ref>/rollback", "/v1/experiments/<ref>/start",
            "/v1/experiments/<ref>/phases",
            "/v1/models/<int:model_id>"}


def test_auth_matrix(app, client, make_key, ctx):
    keys = {scope: make_key(scope) for scope in ("admin", "sdk", "read")}
    revoked = make_key("admin", name="to-revoke")
    revoke_key(app.extensions["frugal"].db, revoked["Authorization"].split("_")[1])
    failures = []
    for rule, method, scope in _routes(app):
        label = f"{method} {rule.rule}"
        cases = [("no key", {}, {401}), ("wrong scope", keys[WRONG[scope]], {403}), ("revoked", revoked, {401})]
        for name, headers, expected in cases:
            response = _request(client, headers, method, rule, ctx)
            if response.status_code not in expected or response.mimetype != "application/problem+json":
                failures.append(f"{label} [{name}] -> {response.status_code} {response.data[:120]!r}")
        response = _request(client, keys[scope], method, rule, ctx)
        ok = response.status_code < 300 or (rule.rule in STATEFUL and method != "GET" and response.status_code == 409) \
            or (rule.rule in STATEFUL and response.status_code in (404, 409, 202))
        if not ok or response.status_code in (401, 403):
            failures.append(f"{label} [right scope {scope}] -> {response.status_code} {response.data[:200]!r}")
    assert not failures, "\n".join(failures)
