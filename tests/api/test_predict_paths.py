"""/v1/predict and /v1/predict/batch give the same answers and the same errors for the same rows, a
batch's 422 names every bad row by its place in ``items`` whichever arm it was assigned to, and an
answer says when it came from the prediction cache (issue 19).  Real demo models in onnxruntime,
through the app's WSGI stack (its fast path included), on SQLite and on Postgres."""

from __future__ import annotations

import pytest

from tests.api.conftest import experiment_body

@pytest.fixture
def sdk(make_key):
    return make_key("sdk")


FIELDS = ("experiment", "arm", "model_version", "served_by", "prediction", "confidence", "in_experiment",
          "fallback_reason", "cache_hit")


def _start(client, admin, registered, **extra) -> str:
    body = experiment_body(registered, name="paths", **extra)
    assert client.post("/v1/experiments", headers=admin, json=body).status_code == 201
    assert client.post("/v1/experiments/paths/start", headers=admin, json={}).status_code == 200
    return "paths"


def _rows(demo_models, n: int) -> list[list[float]]:
    from sklearn.datasets import load_breast_cancer

    width = len(next(iter(demo_models.values())).feature_names)
    return [row[:width] for row in load_breast_cancer().data[:n].tolist()]


def test_single_and_batch_answer_every_row_the_same(client, admin, sdk, registered, demo_models):
    name = _start(client, admin, registered)
    rows = _rows(demo_models, 30)
    single = []
    for k, row in enumerate(rows):
        r = client.post("/v1/predict", headers=sdk, json={"experiment": name, "unit_id": f"u{k}", "features": row})
        assert r.status_code == 200, r.json
        single.append(r.json)
    batch = client.post("/v1/predict/batch", headers=sdk, json={
        "experiment": name, "items": [{"unit_id": f"u{k}", "features": row} for k, row in enumerate(rows)]})
    assert batch.status_code == 200, batch.json
    assert {a["arm"] for a in single} == {"champion", "challenger"}, "both arms are exercised"
    for one, many in zip(single, batch.json["items"]):
        assert {f: one[f] for f in FIELDS if f != "prediction" and f != "confidence"} == \
            {f: many[f] for f in FIELDS if f != "prediction" and f != "confidence"}
        assert one["prediction"] == many["prediction"]
        assert one["confidence"] == pytest.approx(many["confidence"], abs=1e-6)   # float32 runs of 1 vs n rows


def test_a_batch_names_every_bad_row_by_its_place_whichever_arm_it_is_in(client, admin, sdk, registered, demo_models):
    name = _start(client, admin, registered)
    rows = _rows(demo_models, 12)
    probe = client.post("/v1/predict/batch", headers=sdk, json={
        "experiment": name, "items": [{"unit_id": f"u{k}", "features": row} for k, row in enumerate(rows)]})
    arms = [a["arm"] for a in probe.json["items"]]
    bad = [next(k for k, a in enumerate(arms) if a == arm) for arm in ("champion", "challenger")]
    bad += [next(k for k, a in enumerate(arms) if a == arm and k not in bad) for arm in ("challenger", "champion")]
    width = len(rows[0])
    broken = [list(row) for row in rows]
    broken[bad[0]][3] = "12.5"           # a string
    broken[bad[1]][0] = None             # a null
    broken[bad[2]] = broken[bad[2]][:-1]  # one value short
    broken[bad[3]][width - 1] = True     # a boolean
    answer = client.post("/v1/predict/batch", headers=sdk, json={
        "experiment": name, "items": [{"unit_id": f"u{k}", "features": row} for k, row in enumerate(broken)]})
    assert answer.status_code == 422 and answer.mimetype == "application/problem+json", answer.json
    fields = {e["field"] for e in answer.json["errors"]}
    names = registered[next(iter(registered))].signature["feature_names"]   # an array row is named by feature too
    assert fields == {f"features[{bad[0]}].{names[3]}", f"features[{bad[1]}].{names[0]}", f"features[{bad[2]}]",
                      f"features[{bad[3]}].{names[width - 1]}"}, (fields, arms)
    # the same row alone is the same problem, named without the index
    one = client.post("/v1/predict", headers=sdk, json={"experiment": name, "unit_id": f"u{bad[0]}",
                                                        "features": broken[bad[0]]})
    assert one.status_code == 422 and one.mimetype == "application/problem+json"
    assert [(e["field"], e["message"]) for e in one.json["errors"]] == \
        [(f"features.{names[3]}", next(e["message"] for e in answer.json["errors"]
                                       if e["field"] == f"features[{bad[0]}].{names[3]}"))]
    # nothing was recorded for the refused batch: the good rows of it were not answered either
    again = client.post("/v1/predict/batch", headers=sdk, json={
        "experiment": name, "items": [{"unit_id": f"u{k}", "features": row} for k, row in enumerate(rows)]})
    assert [a["arm"] for a in again.json["items"]] == arms


def test_an_answer_says_when_it_came_from_the_cache(client, admin, sdk, registered, demo_models):
    name = _start(client, admin, registered, cache={"champion": True, "challenger": True})
    row = _rows(demo_models, 1)[0]
    first = client.post("/v1/predict", headers=sdk, json={"experiment": name, "unit_id": "u1", "features": row})
    second = client.post("/v1/predict", headers=sdk, json={"experiment": name, "unit_id": "u1", "features": row})
    assert first.status_code == second.status_code == 200
    assert first.json["cache_hit"] is False and second.json["cache_hit"] is True
    assert second.json["prediction"] == first.json["prediction"] and second.json["arm"] == first.json["arm"]
    batch = client.post("/v1/predict/batch", headers=sdk, json={"experiment": name, "items": [
        {"unit_id": "u1", "features": row}, {"unit_id": "u1", "features": [v * 1.01 for v in row]}]})
    assert [a["cache_hit"] for a in batch.json["items"]] == [True, False]

