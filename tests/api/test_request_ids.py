"""Server-issued request ids are unguessable and bound to the key they were issued to (outcome hijack)."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def running(client, admin, experiment):
    assert client.post(f"/v1/experiments/{experiment['id']}/start", headers=admin).status_code == 200
    return experiment


def _predict(client, key, experiment, demo_models, **extra):
    n = len(next(iter(demo_models.values())).feature_names)
    r = client.post("/v1/predict", headers=key, json={"experiment": experiment["name"], "unit_id": "u1", "features": [0.5] * n, **extra})
    return r


def test_issued_ids_look_random_and_never_repeat(client, make_key, running, demo_models):
    key = make_key("sdk")
    ids = [_predict(client, key, running, demo_models).json["request_id"] for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(re.fullmatch(r"frq1-[0-9a-f]{24}-[0-9a-f]{32}", i) for i in ids), ids[:3]
    macs = [i.rsplit("-", 1)[1] for i in ids]
    # consecutive ids share the visible counter's prefix, never the MAC: no MAC predicts the next one
    assert len({m[:8] for m in macs}) > 45


def test_another_sdk_key_cannot_post_the_outcome_of_my_request(client, make_key, running, demo_models):
    mine, theirs = make_key("sdk", name="mine"), make_key("sdk", name="theirs")
    rid = _predict(client, mine, running, demo_models).json["request_id"]
    hijack = client.post("/v1/outcomes", headers=theirs, json=[{"request_id": rid, "value": 1}])
    assert hijack.status_code == 200
    assert hijack.json["rejected"] == 1 and hijack.json["accepted"] == 0
    assert hijack.json["results"][0]["status"] == "rejected"
    forged = client.post("/v1/outcomes", headers=theirs, json=[{"request_id": rid[:-4] + "0000", "value": 1}])
    assert forged.json["rejected"] == 1
    own = client.post("/v1/outcomes", headers=mine, json=[{"request_id": rid, "value": 0}])
    assert own.json["accepted"] == 1 and own.json["rejected"] == 0


def test_a_client_cannot_claim_an_issued_id_of_another_key(client, make_key, running, demo_models):
    mine, theirs = make_key("sdk", name="mine"), make_key("sdk", name="theirs")
    rid = _predict(client, mine, running, demo_models).json["request_id"]
    again = _predict(client, mine, running, demo_models, request_id=rid)
    assert again.status_code == 200 and again.json["request_id"] == rid  # a retry with my own id is fine
    claimed = _predict(client, theirs, running, demo_models, request_id=rid)
    assert claimed.status_code == 422 and claimed.json["errors"][0]["field"] == "body.request_id"
