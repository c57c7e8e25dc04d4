"""Table-driven malformed requests against every real /v1 route that takes a body: each answers a
4xx problem+json naming the problem; none answers 5xx."""

from __future__ import annotations

import pytest

from tests.api.conftest import experiment_body

CASES = [
    # (name, kwargs for client.open, acceptable statuses, text the problem must mention)
    ("bad json", dict(data='{"a": ', content_type="application/json"), {400}, "not valid JSON"),
    ("wrong content type", dict(data="a=1", content_type="text/plain"), {415}, "application/json"),
    ("form instead of json", dict(data={"a": "1"}, content_type="application/x-www-form-urlencoded"), {415}, "application/json"),
    ("json array", dict(json=[1, 2]), {422}, "body"),
    ("json string", dict(json="hello"), {422}, "body"),
    ("json null", dict(data="null", content_type="application/json"), {422}, "body"),
    ("unknown field", dict(json={"surely_not_a_field": 1}), {422}, "surely_not_a_field"),
    ("huge body", dict(data='{"a": "' + "x" * 2_000_000 + '"}', content_type="application/json"), {413}, "larger"),
]


ACTIONS = ("/start", "/pause", "/resume", "/stop", "/promote", "/rollback", "/ramp", "/analyze", "/phases")


def _body_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/") and rule.rule != "/v1/models":
            for method in sorted(rule.methods & {"POST", "PATCH", "PUT"}):
                yield rule.rule, method


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_bodies_get_a_4xx_problem(app, client, admin, make_key, experiment, case):
    name, kwargs, statuses, mention = case
    sdk = make_key("sdk")
    failures = []
    for rule, method in _body_routes(app):
        url = rule.replace("<ref>", str(experiment["id"])).replace("<int:model_id>", "1")
        headers = sdk if rule.startswith(("/v1/predict", "/v1/outcomes", "/v1/events")) else admin
        if name == "json null" and rule.endswith(ACTIONS):
            continue  # an action's (or a re-salt's) body is optional: null means "no body"
        send = kwargs
        if rule == "/v1/outcomes" and name == "unknown field":
            send = dict(json=[{"request_id": "r", "value": 1, "surely_not_a_field": 1}])
        response = client.open(url, method=method, headers=headers, **send)
        body = response.get_json(silent=True) or {}
        ok = (response.status_code in statuses and response.mimetype == "application/problem+json"
              and mention.lower() in (response.get_data(as_text=True)).lower())
        if rule.endswith("/analyze") and response.status_code == 202:
            ok = True  # analyze takes no body: anything JSON is ignored
        if not ok:
            failures.append(f"{method} {rule}: {response.status_code} {body}")
        assert response.status_code < 500
    assert not failures, "\n".join(failures)


FIELD_CASES = [
    ("/v1/experiments", "admin", {"name": "Bad Name", "mode": "abc", "champion": {"kind": "model"}, "challenger": {"kind": "x"},
                                   "weights": [0.7, 0.7], "coverage": 2, "metric": {"margin": -1}},
     ["body.name", "body.mode", "body.champion.model.model", "body.weights", "body.coverage", "body.metric.margin"]),
    ("/v1/predict", "sdk", {"experiment": "", "unit_id": 5, "features": "x", "request_id": "has space"},
     ["body.experiment", "body.unit_id", "body.request_id"]),
    ("/v1/predict/batch", "sdk", {"experiment": "x", "items": []}, ["body.items"]),
    ("/v1/outcomes", "sdk", [{"request_id": "r1", "value": "high"}, {"value": 1}, {"request_id": "r3", "value": 1, "at": "yesterday"}],
     ["body.0.value", "body.1.request_id", "body.2.at"]),
    ("/v1/events", "sdk", {"events": [{"request_id": "r", "experiment": "x", "unit_id": "u", "arm": "third",
                                       "model_version": "m:1", "latency_ms": -1}]},
     ["body.events.0.arm", "body.events.0.latency_ms"]),
]


@pytest.mark.parametrize("url, scope, body, fields", FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_each_invalid_field_is_named(client, make_key, url, scope, body, fields):
    response = client.post(url, headers=make_key(scope), json=body)
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    named = {e["field"] for e in response.json["errors"]}
    for field in fields:
        assert any(n == field or n.startswith(field) for n in named), (field, named)


def test_experiment_rules_that_need_the_registry_name_the_field(client, admin, registered):
    body = experiment_body(registered)
    body["challenger"] = {"kind": "model", "model": "nope:1"}
    response = client.post("/v1/experiments", headers=admin, json=body)
    assert response.status_code == 422
    assert response.json["errors"] == [{"field": "challenger.model", "message": "no registered model 'nope:1'"}]


@pytest.mark.parametrize("path", ["/v1/nothing", "/v2/predict", "/reports/../../etc/passwd"])
def test_unknown_routes_are_404_problems(client, path):
    response = client.get(path)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_wrong_method_is_405_problem_with_allow(client):
    response = client.delete("/v1/predict")
    assert response.status_code == 405 and response.mimetype == "application/problem+json"
    assert "POST" in response.headers["Allow"]
