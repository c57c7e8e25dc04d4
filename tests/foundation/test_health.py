from service.app import create_app
from tests.conftest import make_settings


def test_healthz_is_open_and_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_fails_until_the_schema_is_at_head(data_dir):
    from service.migrate import upgrade

    app = create_app(make_settings(data_dir))
    client = app.test_client()
    before = client.get("/readyz")
    assert before.status_code == 503
    assert "frugal db upgrade" in before.json["checks"]["schema"]
    upgrade(app.extensions["frugal"].db.engine)
    after = client.get("/readyz")
    assert after.status_code == 200, after.json
    assert after.json["checks"] == {"database": "ok", "schema": "ok", "broker": "ok", "spool": "ok"}
    assert after.json["status"] == "ok"


def test_readyz_stays_ready_but_degraded_with_the_broker_down(data_dir, sqlite_url):
    """Predictions are served without the broker, so the replica stays in the load balancer (200);
    the body says what is down."""
    from service.migrate import upgrade
    from tests.harness.servers import free_port

    app = create_app(make_settings(data_dir, database_url=sqlite_url, broker_url=f"redis://127.0.0.1:{free_port()}/0"))
    upgrade(app.extensions["frugal"].db.engine)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["status"] == "degraded"
    assert response.json["checks"]["broker"].startswith("unreachable")
    assert response.json["checks"]["database"] == "ok"


def test_openapi_document_and_docs_are_served(client):
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.json["openapi"].startswith("3.")
    assert "bearer" in spec.json["components"]["securitySchemes"]
    docs = client.get("/docs", follow_redirects=True)
    assert docs.status_code == 200 and b"swagger" in docs.data.lower()
