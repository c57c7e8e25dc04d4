"""A failed task's error text: internal detail (SQL, hosts, paths) reaches admin keys only."""

from __future__ import annotations

import sqlalchemy as sa

from service.api.analyses import task_error
from service.errors import NotFound


def _internal_error() -> Exception:
    try:
        raise sa.exc.OperationalError("SELECT secret FROM api_keys", {}, Exception('connection to server at "db-7.internal" failed'))
    except sa.exc.OperationalError as exc:
        return exc


def test_read_and_sdk_keys_never_see_internal_error_text():
    exc = _internal_error()
    for scope in ("read", "sdk"):
        text = task_error(exc, scope)
        assert "db-7" not in text and "SELECT" not in text and "api_keys" not in text, text
        assert "internal error" in text
    assert "db-7.internal" in task_error(exc, "admin")


def test_an_error_written_for_people_is_shown_to_everyone():
    assert task_error(NotFound("no experiment 'churn'"), "read") == "Not found: no experiment 'churn'"


def test_task_state_with_the_result_backend_down_is_not_a_500(app_factory, sqlite_url):
    from tests.harness.servers import free_port

    app = app_factory(sqlite_url, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    from service.auth import create_key

    secret = create_key(app.extensions["frugal"].db, name="r", scope="read").secret
    response = app.test_client().get("/v1/tasks/abc-123", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code in (200, 503), response.get_data(as_text=True)
    assert response.status_code != 500
