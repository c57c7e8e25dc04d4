"""Stateless web replicas: two gunicorn servers with different data directories share one Postgres
(and nothing else).  A model uploaded through one is served by the other, every prediction split
across both succeeds, and a dashboard session made on one is valid on the other."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.harness.processes import WebServer, frugal_env

pytestmark = [pytest.mark.slow]
PREDICTIONS = 1_000


def _upload(url: str, headers: dict[str, str], model) -> str:
    with open(model.path, "rb") as handle:
        r = httpx.post(url + "/v1/models", headers=headers, timeout=60, files={"file": (model.path.name, handle)},
                       data={"name": model.name, "version": model.version, "task": model.task})
    assert r.status_code == 201, r.text
    return r.json()["ref"]


def test_a_model_uploaded_through_one_replica_is_served_by_the_other(fresh_pg, redis_url, demo_models, tmp_path):
    from service.auth import create_key
    from service.runtime import Runtime
    from tests.conftest import make_settings

    rt = Runtime(make_settings(tmp_path / "setup", database_url=fresh_pg))
    admin = {"Authorization": "Bearer " + create_key(rt.db, name="a", scope="admin").secret}
    sdk = {"Authorization": "Bearer " + create_key(rt.db, name="s", scope="sdk").secret}
    read_key = create_key(rt.db, name="r", scope="read").secret
    rt.close()

    dirs = [tmp_path / "node-a", tmp_path / "node-b"]
    servers = [WebServer(frugal_env(d, fresh_pg, redis_url, FRUGAL_RULESET_TTL_S="0.5"), tmp_path / f"{d.name}.log", workers=2)
               for d in dirs]
    try:
        a, b = servers
        models = {m.role: m for m in demo_models.values() if getattr(m, "role", None)}
        refs = {role: _upload(a.url, admin, m) for role, m in models.items()}   # both files reach node A only
        body = {"name": "replicas", "mode": "ab", "unit": "unit_id", "champion": {"kind": "model", "model": refs["champion"]},
                "challenger": {"kind": "model", "model": refs["challenger"]}, "metric": {"kind": "binary", "margin": 0.05}}
        assert httpx.post(a.url + "/v1/experiments", json=body, headers=admin, timeout=30).status_code == 201
        assert httpx.post(a.url + "/v1/experiments/replicas/start", json={"reason": "t"}, headers=admin, timeout=30).status_code == 200
        assert not (dirs[1] / "models").exists() or not any((dirs[1] / "models").rglob("*.onnx"))

        features = [0.5] * len(models["champion"].feature_names)
        statuses: dict[int, int] = {}
        served = {a.url: set(), b.url: set()}
        with httpx.Client(timeout=30) as client:
            for k in range(PREDICTIONS):
                server = servers[k % 2]
                r = client.post(server.url + "/v1/predict", headers=sdk,
                                json={"experiment": "replicas", "unit_id": f"u{k}", "features": features})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    served[server.url].add(r.json()["served_by"])
        print(f"\n[frugal tests] two replicas, one Postgres: {PREDICTIONS} predictions alternating A/B -> statuses {statuses}")
        assert statuses == {200: PREDICTIONS}, statuses
        assert served[b.url] == set(refs.values()), served     # node B served both models it never received
        assert len(list((dirs[1] / "models").rglob("*.onnx"))) == 2   # fetched from the database into its cache

        # the dashboard session: logged in on A, still logged in on B (one secret for the deployment)
        with httpx.Client(timeout=30) as browser:
            form = browser.get(a.url + "/login", headers={"Accept": "text/html"}).text   # the form's CSRF token
            token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
            login = browser.post(a.url + "/login", data={"key": read_key, "next": "/dashboard", "csrf": token})
            assert login.status_code == 302 and "frugal_session" in browser.cookies
            page = browser.get(b.url + "/dashboard")
            assert page.status_code == 200, page.text[:500]
            assert "/login" not in str(page.url)
    finally:
        for server in servers:
            server.stop()
