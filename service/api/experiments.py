"""/v1/experiments: define experiments and drive their lifecycle (admin), read them (read)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from service import experiments as domain
from service.api.auth import BEARER, actor, requires
from service.api.schemas import OptionalBody, PageQuery, problem_responses
from service.definition import DefinitionPatch, ExperimentDefinition
from service.routing.runtime import catalog
from service.runtime import runtime
from service.store.experiments import EventRecord, ExperimentRecord

bp = APIBlueprint("experiments", __name__, url_prefix="/v1/experiments",
                  abp_tags=[Tag(name="experiments", description="Define experiments and drive their lifecycle")],
                  abp_security=BEARER)


class ExperimentPath(BaseModel):
    ref: str = Field(description="experiment id or name")


class ExperimentOut(BaseModel):
    id: int
    name: str
    mode: str
    state: str
    served_arm: str
    phase: int
    salt: str
    weights_bp: list[int]
    coverage_bp: int
    ramp_step: int
    revision: int
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ExperimentPage(BaseModel):
    items: list[ExperimentOut]
    total: int
    limit: int
    offset: int


class ListQuery(PageQuery):
    state: Literal["draft", "running", "paused", "stopped", "promoted", "rolled_back"] | None = None


class Reason(OptionalBody):
    reason: str = Field(default="", max_length=2000, description="why: kept in the audit trail")


class PhaseRequest(OptionalBody):
    weights: tuple[float, float] | None = Field(default=None, description="new champion/challenger shares; omit to re-salt only")
    reason: str = Field(default="", max_length=2000)


class EventOut(BaseModel):
    id: int
    at: datetime
    kind: str
    actor: str
    reason: str
    analysis_id: int | None
    data: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventOut]
    total: int
    limit: int
    offset: int


def experiment_json(r: ExperimentRecord) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "mode": r.mode, "state": r.state, "served_arm": r.served_arm,
            "phase": r.current_phase, "salt": r.phase.salt, "weights_bp": r.phase.weights_bp, "coverage_bp": r.coverage_bp,
            "ramp_step": r.ramp_step, "revision": r.revision, "definition": r.definition,
            "created_at": r.created_at.isoformat(), "updated_at": r.updated_at.isoformat()}


def event_json(e: EventRecord) -> dict[str, Any]:
    return {"id": e.id, "at": e.at.isoformat(), "kind": e.kind, "actor": e.actor, "reason": e.reason,
            "analysis_id": e.analysis_id, "data": e.data}


def _changed(record: ExperimentRecord) -> dict[str, Any]:
    catalog(runtime()).invalidate()  # this process sees the change at once; others within ruleset_ttl_s
    return experiment_json(record)


@bp.post("", responses={201: ExperimentOut, **problem_responses(401, 403, 409, 422)})
@requires("admin")
def create_experiment(body: ExperimentDefinition):
    """Create a draft experiment.  Validation errors name every bad field."""
    return _changed(domain.create(runtime().db, body, actor=actor())), 201


@bp.get("", responses={200: ExperimentPage, **problem_responses(401, 403, 422)})
@requires("read")
def list_experiments(query: ListQuery):
    """List experiments, paginated."""
    items, total = domain.page(runtime().db, limit=query.limit, offset=query.offset, state=query.state)
    return {"items": [experiment_json(r) for r in items], "total": total, "limit": query.limit, "offset": query.offset}


@bp.get("/<ref>", responses={200: ExperimentOut, **problem_responses(401, 403, 404)})
@requires("read")
def get_experiment(path: ExperimentPath):
    """One experiment."""
    return experiment_json(domain.get(runtime().db, path.ref))


@bp.patch("/<ref>", responses={200: ExperimentOut, **problem_responses(401, 403, 404, 409, 422)})
@requires("admin")
def update_experiment(path: ExperimentPath, body: DefinitionPatch):
    """Change a draft (409 once it has started)."""
    return _changed(domain.update_draft(runtime().db, path.ref, body, actor=actor()))


def _action(name: str, doc: str):
    @requires("admin")
    def view(path: ExperimentPath, body: Reason):
        return _changed(domain.transition(runtime().db, path.ref, name, actor=actor(), reason=body.reason))

    view.__name__ = f"{name}_experiment"
    view.__doc__ = doc
    bp.post(f"/<ref>/{name}", responses={200: ExperimentOut, **problem_responses(401, 403, 404, 409, 422)})(view)


_action("start", "Start a draft: traffic is assigned from now on.")
_action("pause", "Pause: every request gets the champion; nothing is an exposure.")
_action("resume", "Resume a paused experiment.")
_action("stop", "Stop: the champion serves; the experiment ends without promotion.")
_action("promote", "Promote the challenger policy manually: it serves every request from now on.")
_action("rollback", "Roll back: the champion serves every request from now on.")


@bp.post("/<ref>/phases", responses={200: ExperimentOut, **problem_responses(401, 403, 404, 409, 422)})
@requires("admin")
def new_phase(path: ExperimentPath, body: PhaseRequest):
    """Change weights (or re-salt): starts a new phase; analysis never mixes phases."""
    return _changed(domain.start_phase(runtime().db, path.ref, body.weights, actor=actor(), reason=body.reason))


@bp.post("/<ref>/ramp", responses={200: ExperimentOut, **problem_responses(401, 403, 404, 409, 422)})
@requires("admin")
def advance_ramp(path: ExperimentPath, body: Reason):
    """Move to the next coverage step of the ramp (keeps every unit already assigned)."""
    return _changed(domain.advance_ramp(runtime().db, path.ref, actor=actor(), reason=body.reason))


@bp.get("/<ref>/events", responses={200: EventPage, **problem_responses(401, 403, 404, 422)})
@requires("read")
def experiment_events(path: ExperimentPath, query: PageQuery):
    """The audit trail: every state change and automatic action, with actor, time and reason."""
    items, total = domain.events(runtime().db, path.ref, limit=query.limit, offset=query.offset)
    return {"items": [event_json(e) for e in items], "total": total, "limit": query.limit, "offset": query.offset}
