"""Liveness and readiness (open routes, no key)."""

from __future__ import annotations

import time

from flask_openapi3 import APIBlueprint, Tag
from kombu import Connection
from pydantic import BaseModel, Field

from service.migrate import schema_is_current
from service.runtime import runtime

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health", description="Liveness and readiness")])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description="'ok'; 'degraded' while a dependency is down and predictions are still served "
                                    "(events spooled); 'unavailable' only when this replica cannot serve")
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
    """Ready to serve predictions.  A database or broker outage is ridden through (keys and experiments
    are cached, events are spooled), so it is reported as ``degraded`` with a 200: a load balancer keeps
    the replica.  503 only when it cannot serve: the schema is behind the migrations' head."""
    from service.eventlog import event_log

    rt = runtime()
    checks: dict[str, str] = {}
    serving = True
    try:
        current, found, head = schema_is_current(rt.db.engine)
        checks["database"] = "ok"
        checks["schema"] = "ok" if current else f"at {found or 'empty'}, head is {head}: run 'frugal db upgrade'"
        serving = current
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__} (predictions go on; events are spooled)"
        checks["schema"] = "unknown"
    cached = rt.lazy("broker_check", lambda: {"at": 0.0, "status": ""})
    if time.monotonic() - cached["at"] > 5:
        cached.update(at=time.monotonic(), status=_check_broker(rt.settings.resolved_broker_url))
    checks["broker"] = cached["status"]
    events = event_log(rt).stats()
    checks["spool"] = "ok" if events["spool_writable"] else \
        f"not writable ({events['last_error'] or 'disk full or read-only'}): events are lost during a database outage"
    if events["dead_letter_files"]:
        checks["dead_letters"] = f"{events['dead_letter_files']} file(s) in spool/dead: see 'frugal events replay-dead-letters'"
    if not serving:
        return {"status": "unavailable", "checks": checks}, 503
    ok = all(value == "ok" for value in checks.values())
    return {"status": "ok" if ok else "degraded", "checks": checks}, 200
