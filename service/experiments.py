"""Experiment use cases: create, read, update a draft, and the lifecycle.

Every state change writes an audit event (who, when, why) in the same transaction.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from service.definition import DefinitionPatch, ExperimentDefinition, policy_models
from service.errors import Conflict, NotFound, ValidationFailed, field_error
from service.registry import parse_ref
from service.store import experiments as store
from service.store import models as model_store
from service.store.database import Database
from service.store.experiments import EventRecord, ExperimentRecord

# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "start": (("draft",), "running"),
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "stop": (("running", "paused"), "stopped"),
    "promote": (("running", "paused", "stopped"), "promoted"),
    "rollback": (("running", "paused", "stopped", "promoted"), "rolled_back"),
}
ACTIVE_STATES = ("running", "paused")


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_salt() -> str:
    """A random phase salt: never the experiment's name, so two experiments never share buckets."""
    return secrets.token_hex(8)


def _resolve_models(session, definition: ExperimentDefinition) -> dict[str, Any]:
    """Resolve every model ref; check they exist, differ, and share one input signature."""
    errors, resolved = [], {}
    for arm in ("champion", "challenger"):
        policy = getattr(definition, arm)
        fields = ["model"] if policy.kind == "model" else ["cheap", "fallback"]
        for field, ref in zip(fields, policy_models(policy)):
            name, version = parse_ref(ref)
            record = model_store.by_ref(session, name, version) if version else None
            if version is None:
                errors.append(field_error(f"{arm}.{field}", f"{ref!r} must be 'name:version'"))
            elif record is None:
                errors.append(field_error(f"{arm}.{field}", f"no registered model {ref!r}"))
            else:
                resolved[(arm, field)] = record
    if not errors:
        champion = resolved[("champion", "model" if definition.champion.kind == "model" else "cheap")]
        reference = _inputs(champion.signature)
        for (arm, field), record in resolved.items():
            if record.task != champion.task:
                errors.append(field_error(f"{arm}.{field}", f"{record.ref} is a {record.task} model and the champion "
                                          f"{champion.ref} a {champion.task} one; both arms must answer the same task"))
            if _inputs(record.signature) != reference:
                errors.append(field_error(f"{arm}.{field}", f"input signature of {record.ref} differs from the champion's "
                                          f"{champion.ref}: {_inputs(record.signature)} vs {reference}"))
        primary = {arm: resolved[(arm, "model" if getattr(definition, arm).kind == "model" else "cheap")] for arm in ("champion", "challenger")}
        if primary["champion"].id == primary["challenger"].id:
            errors.append(field_error("challenger", "the challenger's scoring model must differ from the champion's"))
    if errors:
        raise ValidationFailed(f"{len(errors)} invalid field(s) in the experiment", errors=errors)
    return {"primary": primary, "all": {r.id for r in resolved.values()}}


def _inputs(signature: dict[str, Any]) -> Any:
    return {"inputs": signature.get("inputs"), "feature_names": signature.get("feature_names")}


def create(db: Database, definition: ExperimentDefinition, *, actor: str) -> ExperimentRecord:
    at = now()
    with db.unit_of_work() as session:
        if store.get(session, name=definition.name):
            raise Conflict(f"an experiment named {definition.name!r} already exists")
        models = _resolve_models(session, definition)
        record = store.insert(
            session,
            values=dict(name=definition.name, mode=definition.mode, state="draft", definition=definition.model_dump(mode="json"),
                        champion_model_id=models["primary"]["champion"].id, challenger_model_id=models["primary"]["challenger"].id,
                        coverage_bp=definition.initial_coverage_bp),
            salt=new_salt(), weights_bp=definition.weights_bp, model_ids=models["all"], now=at,
        )
        store.add_event(session, record.id, kind="created", actor=actor, reason="", now=at)
        return record


MAX_ID = 2**31 - 1  # ids are 32-bit integers


def resolve(session, ref: str | int, *, for_update: bool = False) -> ExperimentRecord:
    ref = str(ref)
    if ref.isascii() and ref.isdigit():
        if len(ref) > 10 or int(ref) > MAX_ID:  # no row has it (and the database would refuse the number)
            raise NotFound(f"no experiment {ref!r}")
        record = store.get(session, experiment_id=int(ref), for_update=for_update)
    else:
        record = store.get(session, name=ref, for_update=for_update)
    if record is None:
        raise NotFound(f"no experiment {ref!r}")
    return record


def get(db: Database, ref: str | int) -> ExperimentRecord:
    with db.unit_of_work() as session:
        return resolve(session, ref)


def page(db: Database, *, limit: int, offset: int, state: str | None = None) -> tuple[list[ExperimentRecord], int]:
    with db.unit_of_work() as session:
        return store.page(session, limit=limit, offset=offset, state=state)


def update_draft(db: Database, ref: str, patch: DefinitionPatch, *, actor: str) -> ExperimentRecord:
    at = now()
    with db.unit_of_work() as session:
        record = resolve(session, ref, for_update=True)
        if record.state != "draft":
            raise Conflict(f"experiment {record.name} is {record.state}; only a draft can be edited "
                           "(change weights of a running experiment with POST .../phases)")
        merged = {**record.definition, **patch.model_dump(mode="json", exclude_unset=True)}
        try:
            definition = ExperimentDefinition.model_validate(merged)
        except ValidationError as exc:
            from service.api.problems import validation_failed

            raise validation_failed(exc) from None
        models = _resolve_models(session, definition)
        updated = store.update(session, record.id, now=at, model_ids=models["all"], definition=definition.model_dump(mode="json"),
                               champion_model_id=models["primary"]["champion"].id,
                               challenger_model_id=models["primary"]["challenger"].id,
                               coverage_bp=definition.initial_coverage_bp)
        store.replace_phase_weights(session, record.id, definition.weights_bp)
        store.add_event(session, record.id, kind="updated", actor=actor, reason="",
                        data={"fields": sorted(patch.model_fields_set)}, now=at)
        return store.get(session, experiment_id=updated.id)


def transition(db: Database, ref: str, action: str, *, actor: str, reason: str = "", analysis_id: int | None = None,
               expected_state: str | None = None) -> ExperimentRecord:
    """Apply a lifecycle action; 409 when the current state does not allow it."""
    sources, target = TRANSITIONS[action]
    at = now()
    with db.unit_of_work() as session:
        record = resolve(session, ref, for_update=True)
        if record.state not in sources or (expected_state and record.state != expected_state):
            raise Conflict(f"cannot {action} experiment {record.name}: it is {record.state} "
                           f"(allowed from {', '.join(sources)})")
        values: dict[str, Any] = {"state": target}
        if action == "promote":
            values["served_arm"] = "challenger"
        elif action == "rollback":
            values["served_arm"] = "champion"
        store.update(session, record.id, now=at, **values)
        store.add_event(session, record.id, kind=action, actor=actor, reason=reason, analysis_id=analysis_id,
                        data={"from": record.state, "to": target}, now=at)
        return store.get(session, experiment_id=record.id)


def start_phase(db: Database, ref: str, weights: tuple[float, float] | None, *, actor: str, reason: str) -> ExperimentRecord:
    """New weights (or just a new salt): a new phase that analysis never mixes with the old one."""
    at = now()
    with db.unit_of_work() as session:
        record = resolve(session, ref, for_update=True)
        if record.state not in ACTIVE_STATES + ("draft",):
            raise Conflict(f"experiment {record.name} is {record.state}; phases change only while it is draft, running or paused")
        try:
            definition = ExperimentDefinition.model_validate({**record.definition, **({"weights": weights} if weights else {})})
        except ValidationError as exc:  # e.g. weights that do not sum to 1: the caller's 422, never a 500
            from service.api.problems import validation_failed

            raise validation_failed(exc) from None
        store.update(session, record.id, now=at, definition=definition.model_dump(mode="json"))
        updated = store.new_phase(session, record.id, salt=new_salt(), weights_bp=definition.weights_bp, now=at)
        store.add_event(session, record.id, kind="new_phase", actor=actor, reason=reason,
                        data={"phase": updated.current_phase, "weights_bp": definition.weights_bp}, now=at)
        return updated


def advance_ramp(db: Database, ref: str, *, actor: str, reason: str, analysis_id: int | None = None,
                 expected_step: int | None = None) -> ExperimentRecord:
    """Move coverage to the next ramp step.  Raising coverage keeps everyone already assigned."""
    at = now()
    with db.unit_of_work() as session:
        record = resolve(session, ref, for_update=True)
        steps = record.definition.get("ramp") or []
        if record.state not in ACTIVE_STATES:
            raise Conflict(f"experiment {record.name} is {record.state}; the ramp moves only while it runs")
        if expected_step is not None and record.ramp_step != expected_step:
            raise Conflict(f"experiment {record.name} is already at ramp step {record.ramp_step}")
        if record.ramp_step + 1 >= len(steps):
            raise Conflict(f"experiment {record.name} is at its last ramp step")
        step = record.ramp_step + 1
        coverage_bp = round(steps[step]["coverage"] * 10_000)
        store.update(session, record.id, now=at, ramp_step=step, coverage_bp=coverage_bp)
        store.add_event(session, record.id, kind="ramp", actor=actor, reason=reason, analysis_id=analysis_id,
                        data={"step": step, "coverage_bp": coverage_bp, "from_coverage_bp": record.coverage_bp}, now=at)
        return store.get(session, experiment_id=record.id)


def events(db: Database, ref: str, *, limit: int, offset: int) -> tuple[list[EventRecord], int]:
    with db.unit_of_work() as session:
        record = resolve(session, ref)
        return store.events(session, record.id, limit=limit, offset=offset)
