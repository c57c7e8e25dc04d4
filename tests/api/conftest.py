"""Fixtures for API tests: real demo ONNX models, registered, and experiments built from them."""

from __future__ import annotations

import pytest


@pytest.fixture
def registered(app, demo_models):
    """The demo models registered in this test's database: {key: ModelRecord}."""
    from service import registry

    rt = app.extensions["frugal"]
    out = {}
    for key, model in demo_models.items():
        out[key] = registry.register(rt.db, rt.settings, model.path.read_bytes(), name=model.name, version=model.version,
                                     task=model.task, description=model.description)
    return out


def champion_and_challenger(registered):
    """(complex champion ref, cheap challenger ref) among the registered demo models."""
    refs = {key: rec.ref for key, rec in registered.items()}
    champion = next(r for k, r in refs.items() if "gbm" in k or "forest" in k or "champion" in k)
    challenger = next(r for k, r in refs.items() if "logistic" in k or "cheap" in k or "challenger" in k)
    return champion, challenger


def experiment_body(registered, name="churn-ab", mode="ab", **extra):
    champion, challenger = champion_and_challenger(registered)
    body = {"name": name, "mode": mode, "champion": {"kind": "model", "model": champion},
            "challenger": {"kind": "model", "model": challenger}, "metric": {"kind": "binary", "margin": 0.02}}
    body.update(extra)
    return body


@pytest.fixture
def experiment(client, admin, registered):
    response = client.post("/v1/experiments", headers=admin, json=experiment_body(registered))
    assert response.status_code == 201, response.json
    return response.json
