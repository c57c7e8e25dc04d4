"""Analyses: run one on demand, follow the task, read the latest result and the history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app, g
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from service.api.auth import BEARER, requires
from service.api.experiments import ExperimentPath
from service.api.schemas import PageQuery, problem_responses
from service.errors import FrugalError, ServiceUnavailable
from service.experiments import get as get_experiment
from service.runtime import runtime
from service.store.analyses import AnalysisRecord

bp = APIBlueprint("analyses", __name__, url_prefix="/v1",
                  abp_tags=[Tag(name="analyses", description="Statistical results and decisions")], abp_security=BEARER)


class TaskAccepted(BaseModel):
    task_id: str
    status_url: str


class TaskPath(BaseModel):
    task_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")


class TaskOut(BaseModel):
    task_id: str
    state: str
    result: dict[str, Any] | None = None
    error: str | None = None


class AnalysisOut(BaseModel):
    id: int
    experiment_id: int
    phase: int
    slot: str
    decision: str
    explanation: str
    method: str
    inputs_digest: str
    parameters: dict[str, Any]
    results: dict[str, Any]
    created_at: datetime


class AnalysisPage(BaseModel):
    items: list[AnalysisOut]
    total: int
    limit: int
    offset: int


def analysis_json(a: AnalysisRecord, *, with_inputs: bool = False) -> dict[str, Any]:
    body = {"id": a.id, "experiment_id": a.experiment_id, "phase": a.phase, "slot": a.slot, "decision": a.decision,
            "explanation": a.explanation, "method": a.method, "inputs_digest": a.inputs_digest, "parameters": a.parameters,
            "results": a.results, "created_at": a.created_at.isoformat()}
    if with_inputs:
        body["inputs"] = a.inputs
    return body


@bp.post("/experiments/<ref>/analyze", responses={202: TaskAccepted, **problem_responses(401, 403, 404)})
@requires("admin")
def analyze_now(path: ExperimentPath):
    """Roll up and analyse now, on a worker.  Answers 202 with the task to follow."""
    experiment = get_experiment(runtime().db, path.ref)
    task = current_app.extensions["celery"].send_task("frugal.analyze", args=[experiment.id, None, True])
    return {"task_id": task.id, "status_url": f"/v1/tasks/{task.id}"}, 202


@bp.get("/tasks/<task_id>", responses={200: TaskOut, **problem_responses(401, 403, 422, 503)})
@requires("read")
def task_state(path: TaskPath):
    """State of a worker task: PENDING, STARTED, SUCCESS, FAILURE or RETRY."""
    result = current_app.extensions["celery"].AsyncResult(path.task_id)
    try:
        body: dict[str, Any] = {"task_id": path.task_id, "state": result.state}
        if result.successful():
            body["result"] = result.result
        elif result.failed():
            body["error"] = task_error(result.result, g.api_key.scope)
    except FrugalError:
        raise
    except Exception as exc:  # the result backend (Redis) is down: say so, not 500
        raise ServiceUnavailable(f"task results are unavailable now ({type(exc).__name__}); retry shortly") from None
    return body


def task_error(exc: BaseException | Any, scope: str) -> str:
    """What a client is told about a failed task.  A FrugalError's detail is written for people; any
    other error's text is internal (SQL, paths, hosts) and is shown to admin keys only."""
    if isinstance(exc, FrugalError):
        return f"{exc.title}: {exc.detail}"
    if scope == "admin":
        return f"{type(exc).__name__}: {exc}"[:1000]
    return "the task failed with an internal error; an admin can read it here or in the worker's log"


@bp.get("/experiments/<ref>/results", responses={200: AnalysisOut, **problem_responses(401, 403, 404)})
@requires("read")
def results(path: ExperimentPath):
    """The latest analysis: decision, each component's numbers, and the explanation."""
    from service.analytics import analyze as domain

    return analysis_json(domain.latest(runtime().db, path.ref), with_inputs=True)


@bp.get("/experiments/<ref>/analyses", responses={200: AnalysisPage, **problem_responses(401, 403, 404, 422)})
@requires("read")
def analyses(path: ExperimentPath, query: PageQuery):
    """Every analysis of the experiment, newest first."""
    from service.analytics import analyze as domain

    items, total = domain.page(runtime().db, path.ref, limit=query.limit, offset=query.offset)
    return {"items": [analysis_json(a) for a in items], "total": total, "limit": query.limit, "offset": query.offset}
