"""Values no column can hold, and inputs that used to reach a 500, are refused at the edge with a
problem naming the field: on the predict fast path and the Flask views alike, on Postgres and SQLite."""

from __future__ import annotations

import pytest
import sqlalchemy as sa


@pytest.fixture
def sdk(make_key):
    return make_key("sdk")


def _event(experiment, registered, **changes):
    from tests.api.conftest import champion_and_challenger

    champion, _ = champion_and_challenger(registered)
    event = {"request_id": "ev-1", "experiment": experiment["name"], "unit_id": "u1", "arm": "champion",
             "model_version": champion, "latency_ms": 3.5, "prediction": 1.0}
    event.update(changes)
    return {"events": [event]}


def _features(demo_models):
    return [0.5] * len(next(iter(demo_models.values())).feature_names)


def _named(response, field):
    assert response.status_code == 422, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/problem+json"
    names = [e["field"] for e in response.json["errors"]]
    assert any(n == field or n.startswith(field + ".") for n in names), (field, names)


@pytest.mark.parametrize("where", ["unit_id", "request_id", "experiment", "features"])
def test_a_nul_byte_anywhere_in_a_predict_body_is_a_422_naming_the_field(app, client, sdk, experiment, demo_models, where):
    body = {"experiment": experiment["name"], "unit_id": "u1", "features": _features(demo_models)}
    if where == "features":
        body["features"] = {"x\x00": 1}
    else:
        body[where] = (body.get(where) or "r") + "\x00"
    fast = app.wsgi_app
    before = fast.answered
    response = client.post("/v1/predict", headers=sdk, json=body)
    _named(response, f"body.{where}")
    assert fast.answered == before + 1, "the fast path answered it, with the one error mapping's problem"
    batch = client.post("/v1/predict/batch", headers=sdk,
                        json={"experiment": experiment["name"], "items": [{k: v for k, v in body.items() if k != "experiment"}]})
    if where != "experiment":
        _named(batch, f"body.items.0.{where}")


def test_an_unpaired_surrogate_is_a_422(client, sdk, experiment):
    raw = '{"experiment": "%s", "unit_id": "\\ud800", "features": [1]}' % experiment["name"]
    _named(client.post("/v1/predict", headers={**sdk, "Content-Type": "application/json"}, data=raw), "body.unit_id")


@pytest.mark.parametrize("change, field", [
    ({"latency_ms": 1e308}, "body.events.0.latency_ms"),
    ({"inference_ms": 1e300}, "body.events.0.inference_ms"),
    ({"prediction": 1e200}, "body.events.0.prediction"),
    ({"prediction": "x" * 201}, "body.events.0.prediction"),
    ({"unit_id": "u\x00"}, "body.events.0.unit_id"),
    ({"at": "0001-01-01T00:00:00+05:00"}, "body.events.0.at"),
    ({"at": "1999-12-31T23:00:00+00:00"}, "body.events.0.at"),
    ({"at": "2999-01-01T00:00:00+00:00"}, "body.events.0.at"),
    ({"phase": 2**63}, "body.events.0.phase"),
])
def test_events_out_of_any_sane_range_are_a_422(client, sdk, experiment, registered, change, field):
    _named(client.post("/v1/events", headers=sdk, json=_event(experiment, registered, **change)), field)


@pytest.mark.parametrize("change, field", [
    ({"value": 1e200}, "body.0.value"),
    ({"value": -1e13}, "body.0.value"),
    ({"at": "9999-12-31T23:59:59-05:00"}, "body.0.at"),
    ({"request_id": "r\x00"}, "body.0.request_id"),
])
def test_outcomes_out_of_range_are_a_422(client, sdk, change, field):
    _named(client.post("/v1/outcomes", headers=sdk, json=[{"request_id": "r1", "value": 1, **change}]), field)


def test_an_offset_postgres_does_not_take_is_stored_in_utc(app, client, sdk, experiment, registered):
    """+20:00 is a valid ISO 8601 offset Python parses and timestamptz refuses: it is converted at the edge."""
    from service.eventlog import event_log

    response = client.post("/v1/events", headers=sdk,
                           json=_event(experiment, registered, request_id="ev-plus20", at="2026-12-04T20:00:00+20:00"))
    assert response.status_code == 200 and response.json["accepted"] == 1, response.json
    outcome = client.post("/v1/outcomes", headers=sdk, json=[{"request_id": "ev-plus20", "value": 1, "at": "2026-12-04T20:30:00+20:00"}])
    assert outcome.status_code == 200 and outcome.json["accepted"] == 1, outcome.json
    rt = app.extensions["frugal"]
    log = event_log(rt)
    assert log.flush(30)
    assert log.stats()["dead_lettered"] == 0
    from service.store.tables import Prediction

    with rt.db.unit_of_work() as session:
        created = session.execute(sa.select(Prediction.created_at).where(Prediction.request_id == "ev-plus20")).scalar_one()
    from datetime import datetime, timezone

    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    assert created == datetime(2026, 12, 4, 0, 0, tzinfo=timezone.utc), created


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deep_json_nesting_is_a_4xx_not_a_500(client, sdk, experiment, depth):
    nested = "[" * depth + "]" * depth
    raw = '{"experiment": "%s", "unit_id": "u", "features": %s}' % (experiment["name"], nested)
    response = client.post("/v1/predict", headers={**sdk, "Content-Type": "application/json"}, data=raw)
    assert response.status_code in (400, 422), response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json"
    assert "nested" in response.get_data(as_text=True)


@pytest.mark.parametrize("url, status", [
    ("/v1/experiments/%00", 400),
    ("/v1/experiments?offset=9223372036854775808", 422),
    ("/v1/experiments?offset=9223372036854775807", 422),
    ("/v1/experiments?limit=10&offset=%00", 400),
    ("/v1/experiments/99999999999999999999", 404),
    ("/v1/experiments/\u00b2", 404),
    ("/v1/models/9223372036854775808", 422),
    ("/v1/models/4294967296", 422),
])
def test_urls_that_used_to_500(client, admin, url, status):
    response = client.get(url, headers=admin)
    assert response.status_code == status, (url, response.status_code, response.get_data(as_text=True)[:300])
    assert response.mimetype == "application/problem+json"
