"""Liveness and readiness (open routes, no key)."""

from __future__ import annotations

import time

from flask_openapi3 import APIBlueprint, Tag
from kombu import Connection
from pydantic import BaseModel

from service.migrate import schema_is_current
from service.runtime import runtime

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health", description="Liveness and readiness")])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@bp.get("/healthz", responses={200: Health})
def healthz():
    """The process is up."""
    return {"status": "ok"}


def _check_broker(url: str) -> str:
    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # any failure means "not ready"; the message says why
        return f"unreachable: {type(exc).__name__}"


@bp.get("/readyz", responses={200: Readiness, 503: Readiness})
def readyz():
    """Ready to serve: database reachable, schema at the migrations' head, broker reachable."""
    rt = runtime()
    checks: dict[str, str] = {}
    try:
        current, found, head = schema_is_current(rt.db.engine)
        checks["database"] = "ok"
        checks["schema"] = "ok" if current else f"at {found or 'empty'}, head is {head}: run 'frugal db upgrade'"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["schema"] = "unknown"
    cached = rt.lazy("broker_check", lambda: {"at": 0.0, "status": ""})
    if time.monotonic() - cached["at"] > 5:
        cached.update(at=time.monotonic(), status=_check_broker(rt.settings.resolved_broker_url))
    checks["broker"] = cached["status"]
    ok = all(value == "ok" for value in checks.values())
    return {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503
