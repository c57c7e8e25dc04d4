"""/v1/predict: route a request through an experiment and answer it (sdk scope)."""

from __future__ import annotations

import time
from typing import Any

from flask import g
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from service.api.auth import BEARER, requires
from service.api.schemas import Strict, problem_responses
from service.routing.runtime import router
from service.runtime import runtime

bp = APIBlueprint("predict", __name__, url_prefix="/v1/predict",
                  abp_tags=[Tag(name="predict", description="Serve predictions through an experiment")],
                  abp_security=BEARER)

Features = dict[str, Any] | list[Any]
RequestId = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/+=-]+$",
                  description="your id for this request (idempotency and outcome join); generated when omitted")


class PredictRequest(Strict):
    experiment: str = Field(min_length=1, max_length=100)
    unit_id: str = Field(max_length=256, description="what assignment sticks to (e.g. a user id)")
    features: Features = Field(description="an object by feature name, or an array by position")
    request_id: str | None = RequestId


class BatchItem(Strict):
    unit_id: str = Field(max_length=256)
    features: Features
    request_id: str | None = RequestId


class BatchRequest(Strict):
    experiment: str = Field(min_length=1, max_length=100)
    items: list[BatchItem] = Field(min_length=1, max_length=1000)


class PredictResponse(BaseModel):
    request_id: str
    experiment: str
    arm: str
    model_version: str
    served_by: str
    prediction: Any
    confidence: float | None
    latency_ms: float
    in_experiment: bool
    fallback_reason: str | None
    cache_hit: bool = Field(default=False, description="answered from the prediction cache: no model ran for it")


class BatchResponse(BaseModel):
    items: list[PredictResponse]


def request_id_for(rt, key, given: str | None, field: str = "body.request_id") -> str:
    """The client's own id, or one issued to this key (unguessable; outcomes for it need this key).
    A client may not send an id in the issued format that was not issued to its key."""
    from service.requestids import request_ids

    ids = request_ids(rt)
    if given is None:
        return ids.issue(key.id)
    if ids.issued_to(given, key.id) is False:
        from service.errors import ValidationFailed, field_error

        message = "request ids starting with 'frq1-' are issued by the service; this one was not issued to your key"
        raise ValidationFailed(message, errors=[field_error(field, message)])
    return given


def answer_one(rt, key, body: PredictRequest, started: float) -> dict[str, Any]:
    """POST /v1/predict, validated: the one function both entries (the fast path and this view) call."""
    rid = request_id_for(rt, key, body.request_id)
    return router(rt).predict(body.experiment, [(body.unit_id, body.features, rid)], started)[0].to_dict()


def answer_batch(rt, key, body: BatchRequest, started: float) -> dict[str, Any]:
    """POST /v1/predict/batch, validated: as ``answer_one``, each model run once for its rows."""
    ids = [item.request_id for item in body.items if item.request_id]
    if len(ids) != len(set(ids)):
        from service.errors import ValidationFailed, field_error

        raise ValidationFailed("request_id values must be unique within a batch",
                               errors=[field_error("items.request_id", "duplicate request_id in the batch")])
    rids = [request_id_for(rt, key, item.request_id, f"body.items.{n}.request_id") for n, item in enumerate(body.items)]
    answers = router(rt).predict(body.experiment, [(i.unit_id, i.features, rid) for i, rid in zip(body.items, rids)], started)
    return {"items": [a.to_dict() for a in answers]}


# The views: reached only when the fast path (service/api/fastpath.py) hands a request over (a body it
# cannot read or parse); they document the routes in the OpenAPI spec and answer through the same functions.
@bp.post("", responses={200: PredictResponse, **problem_responses(401, 403, 404, 422)})
@requires("sdk")
def predict(body: PredictRequest):
    """Answer one request.  The experiment never fails it: a failing challenger is answered by the champion."""
    return answer_one(runtime(), g.api_key, body, time.perf_counter())


@bp.post("/batch", responses={200: BatchResponse, **problem_responses(401, 403, 404, 422)})
@requires("sdk")
def predict_batch(body: BatchRequest):
    """Answer many rows; each model runs once for all rows assigned to it."""
    return answer_batch(runtime(), g.api_key, body, time.perf_counter())
