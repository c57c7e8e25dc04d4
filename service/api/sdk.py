"""SDK endpoints: the ruleset for local assignment, and events from backends that serve models themselves."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from service.api.auth import BEARER, requires
from service.api.schemas import MAX_LATENCY_MS, MAX_MAGNITUDE, EventTime, Strict, problem_responses
from service.registry import prediction_cost
from service.routing.runtime import catalog
from service.runtime import runtime

bp = APIBlueprint("sdk", __name__, url_prefix="/v1",
                  abp_tags=[Tag(name="sdk", description="What the routing SDK needs")], abp_security=BEARER)


class Ruleset(BaseModel):
    version: str
    generated_at: datetime
    experiments: list[dict[str, Any]]


class EventIn(Strict):
    request_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/+=-]+$")
    experiment: str = Field(min_length=1, max_length=100)
    unit_id: str = Field(max_length=256)
    arm: Literal["champion", "challenger"]
    model_version: str = Field(min_length=3, max_length=151, description="'name:version' of the model that answered")
    latency_ms: float = Field(ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False)
    inference_ms: float | None = Field(default=None, ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False)
    prediction: (Annotated[float, Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, allow_inf_nan=False)]
                 | Annotated[str, Field(max_length=200)] | None) = Field(default=None)
    confidence: float | None = Field(default=None, ge=0, le=1)
    phase: int | None = Field(default=None, ge=1, le=2**31 - 1)
    at: EventTime | None = Field(default=None, description="when it was served (ISO 8601 with a time zone, "
                                                           "2000-01-01 to a day from now); default now")


class EventBatch(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventResult(BaseModel):
    request_id: str
    status: Literal["accepted", "duplicate", "rejected"]
    detail: str | None = None


class EventResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


@bp.get("/sdk/ruleset", responses={200: Ruleset, 304: None, **problem_responses(401, 403)})
@requires("sdk")
def ruleset():
    """Everything an SDK needs to assign locally.  Send If-None-Match with the last ETag: 304 when unchanged."""
    version, experiments = catalog(runtime()).ruleset()
    etag = f'"{version}"'
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return Response(status=304, headers={"ETag": etag})
    body = {"version": version, "generated_at": datetime.now(timezone.utc).isoformat(), "experiments": experiments}
    return Response(json.dumps(body), mimetype="application/json", headers={"ETag": etag, "Cache-Control": "no-cache"})


@bp.post("/events", responses={200: EventResponse, **problem_responses(401, 403, 422)})
@requires("sdk")
def ingest_events(body: EventBatch):
    """Exposure and prediction events from SDKs that served the arm themselves (local mode)."""
    from service.eventlog import PredictionEvent, event_log

    rt = runtime()
    from flask import g

    from service.requestids import request_ids

    cat, log = catalog(rt), event_log(rt)
    ids, key = request_ids(rt), g.api_key
    received = datetime.now(timezone.utc)
    results, seen = [], set()
    for e in body.events:
        config = cat.get(e.experiment)
        status, detail = "accepted", None
        if config is None:
            status, detail = "rejected", f"no experiment {e.experiment!r}"
        else:
            policy = config.policy(e.arm)
            models = {m.ref: m for m in (policy.primary, policy.fallback) if m is not None}
            if e.model_version not in models:
                status, detail = "rejected", f"{e.model_version!r} is not a model of the {e.arm} policy ({', '.join(models)})"
            elif e.phase is not None and e.phase != config.phase:
                status, detail = "rejected", f"phase {e.phase} is not the current phase {config.phase}; refresh the ruleset"
            elif ids.issued_to(e.request_id, key.id) is False:
                status, detail = "rejected", "request ids starting with 'frq1-' are issued by the service, and this one was not issued to your key"
            elif (e.request_id, policy.primary.id) in seen:
                status = "duplicate"
            else:
                seen.add((e.request_id, policy.primary.id))
                answered = models[e.model_version]
                numeric = isinstance(e.prediction, (int, float))
                inference_ms = e.inference_ms if e.inference_ms is not None else e.latency_ms
                cost = prediction_cost(answered.cost_per_1k, inference_ms, rt.settings)
                log.record(PredictionEvent(
                    request_id=e.request_id, experiment_id=config.id, phase=config.phase, arm=e.arm, unit_id=e.unit_id,
                    model_id=policy.primary.id, served=True, in_experiment=config.state == "running", answered_by_id=answered.id,
                    latency_ms=e.latency_ms, inference_ms=inference_ms, prediction=float(e.prediction) if numeric else None,
                    label=None if numeric or e.prediction is None else str(e.prediction)[:200], confidence=e.confidence,
                    cost=cost, cache_hit=False, fallback_reason=None, source="sdk", created_at=e.at or received))
        results.append({"request_id": e.request_id, "status": status, **({"detail": detail} if detail else {})})
    count = lambda s: sum(1 for r in results if r["status"] == s)  # noqa: E731
    return {"accepted": count("accepted"), "duplicates": count("duplicate"), "rejected": count("rejected"), "results": results}
