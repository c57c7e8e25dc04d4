"""POST /v1/predict's fast path answers exactly what the Flask view answers, errors included (the same
problem+json from the one error mapping, nothing run twice); it hands Flask only a body it cannot read
or parse."""

from __future__ import annotations

import json

import pytest
from werkzeug.test import Client

from tests.api.conftest import experiment_body


@pytest.fixture
def both(app, admin, registered, make_key, demo_models):
    client = app.test_client()
    created = client.post("/v1/experiments", headers=admin, json=experiment_body(registered, name="fast"))
    assert client.post("/v1/experiments/fast/start", headers=admin).status_code == 200, created.json
    fast = app.wsgi_app
    flask_only = Client(lambda environ, start: fast._next(environ, start))
    n = len(next(iter(demo_models.values())).feature_names)
    return {"client": client, "flask": flask_only, "fast": fast, "sdk": make_key("sdk"), "read": make_key("read"),
            "features": [0.5] * n}


def _post(client, body, headers, content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/v1/predict", data=data, headers={**headers, "Content-Type": content_type})


def test_a_good_request_takes_the_fast_path_and_answers_like_the_view(both):
    for k in range(20):
        body = {"experiment": "fast", "unit_id": f"u{k}", "features": both["features"]}
        fast = _post(both["client"], {**body, "request_id": f"fast-{k}"}, both["sdk"])
        slow = _post(both["flask"], {**body, "request_id": f"flask-{k}"}, both["sdk"])
        assert fast.status_code == slow.status_code == 200
        assert fast.headers["Content-Type"] == slow.headers["Content-Type"] == "application/json"
        a, b = fast.get_json(), slow.get_json()
        assert set(a) == set(b)
        for key in ("experiment", "arm", "model_version", "served_by", "prediction", "confidence", "in_experiment",
                    "fallback_reason"):
            assert a[key] == b[key], key
        assert (a["request_id"], b["request_id"]) == (f"fast-{k}", f"flask-{k}")
    assert both["fast"].answered == 20


BAD = [
    ("no key", {"experiment": "fast", "unit_id": "u", "features": "F"}, "none", "application/json"),
    ("wrong scope", {"experiment": "fast", "unit_id": "u", "features": "F"}, "read", "application/json"),
    ("malformed JSON", b'{"experiment": "fast",', "sdk", "application/json"),
    ("unknown field", {"experiment": "fast", "unit_id": "u", "features": "F", "extra": 1}, "sdk", "application/json"),
    ("missing field", {"experiment": "fast", "features": "F"}, "sdk", "application/json"),
    ("unknown experiment", {"experiment": "nope", "unit_id": "u", "features": "F"}, "sdk", "application/json"),
    ("NaN feature", b'{"experiment": "fast", "unit_id": "u", "features": [NaN]}', "sdk", "application/json"),
    ("wrong count", {"experiment": "fast", "unit_id": "u", "features": [1.0, 2.0]}, "sdk", "application/json"),
    ("text body", "hello", "sdk", "text/plain"),
]


@pytest.mark.parametrize("case, body, key, content_type", BAD, ids=[b[0] for b in BAD])
def test_a_request_it_cannot_answer_gets_the_same_problem_as_from_flask(both, case, body, key, content_type):
    if isinstance(body, dict) and body.get("features") == "F":
        body = {**body, "features": both["features"]}
    if isinstance(body, bytes) and b"[NaN]" in body:
        body = body.replace(b"[NaN]", json.dumps([float("nan")] + both["features"][1:]).encode())
    headers = {} if key == "none" else both[key]
    before = both["fast"].handed_over, both["fast"].answered
    fast, slow = _post(both["client"], body, headers, content_type), _post(both["flask"], body, headers, content_type)
    unreadable = case in ("malformed JSON", "text body")     # Flask refuses those before any view runs
    assert (both["fast"].handed_over, both["fast"].answered) == \
        (before[0] + unreadable, before[1] + (not unreadable)), "who answered"
    assert 400 <= fast.status_code < 500 and fast.status_code == slow.status_code, (fast.status_code, fast.data)
    assert fast.headers["Content-Type"] == slow.headers["Content-Type"] == "application/problem+json"
    assert fast.get_json() == slow.get_json()


def test_the_batch_route_is_answered_there_too_with_the_views_answers_and_problems(both):
    items = [{"unit_id": f"u{k}", "features": both["features"]} for k in range(6)]
    client, flask = both["client"], both["flask"]
    before = both["fast"].answered
    fast = client.post("/v1/predict/batch", json={"experiment": "fast", "items": items}, headers=both["sdk"])
    slow = flask.post("/v1/predict/batch", json={"experiment": "fast", "items": items}, headers=both["sdk"])
    assert fast.status_code == slow.status_code == 200 and both["fast"].answered == before + 1
    for a, b in zip(fast.get_json()["items"], slow.get_json()["items"]):
        assert {k: v for k, v in a.items() if k not in ("request_id", "latency_ms")} == \
            {k: v for k, v in b.items() if k not in ("request_id", "latency_ms")}
    bad = [dict(items[0], request_id="same"), dict(items[1], request_id="same"), {"unit_id": "x", "features": [1.0]}]
    fast = client.post("/v1/predict/batch", json={"experiment": "fast", "items": bad}, headers=both["sdk"])
    slow = flask.post("/v1/predict/batch", json={"experiment": "fast", "items": bad}, headers=both["sdk"])
    assert fast.status_code == slow.status_code == 422
    assert fast.headers["Content-Type"] == slow.headers["Content-Type"] == "application/problem+json"
    assert fast.get_json() == slow.get_json()
    assert fast.headers["X-Request-ID"] and slow.headers["X-Request-ID"]
