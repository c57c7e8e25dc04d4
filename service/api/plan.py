"""POST /v1/plan: sample size and duration per method (read scope)."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from service.analytics.planning import PlanRequest, make_plan
from service.api.auth import BEARER, requires
from service.api.schemas import problem_responses
from service.runtime import runtime

bp = APIBlueprint("plan", __name__, url_prefix="/v1",
                  abp_tags=[Tag(name="planning", description="How many units and days an experiment needs")],
                  abp_security=BEARER)


class MethodPlanOut(BaseModel):
    method: str
    n_per_arm: int
    expected_n_per_arm: float
    days: float | None
    expected_days: float | None


class PlanOut(BaseModel):
    kind: str
    paired: bool
    baseline: float | None
    variance: float
    margin: float
    alpha: float
    power: float
    true_diff: float
    traffic_per_day: float | None
    share: float
    sources: dict[str, str]
    plans: list[MethodPlanOut]


@bp.post("/plan", responses={200: PlanOut, **problem_responses(401, 403, 404, 422)})
@requires("read")
def plan_experiment(body: PlanRequest) -> Any:
    """Sample size per arm (paired: requests) and days, per method, at the given or observed traffic.

    Give the inputs, or ``experiment`` to read its definition, the champion's observed quality, the
    models' agreement (shadow) and its observed traffic."""
    return make_plan(runtime().db, body).to_dict()
