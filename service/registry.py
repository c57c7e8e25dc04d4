"""The model registry: register, list, profile, quantize and delete ONNX models.

Files are stored content-addressed by SHA-256 in shared storage (the database by default, see
service/artifacts.py) with a cached copy per node; metadata and the measured profile live in the database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from service import artifacts
from service.errors import Conflict, NotFound, ValidationFailed, field_error
from service.settings import Settings
from service.store import artifacts as artifact_store
from service.store import models as model_store
from service.store.database import Database
from service.store.models import ModelRecord

TASKS = ("binary", "multiclass", "regression")


def model_path(settings: Settings, digest: str) -> Path:
    """This node's cached copy of a model file (service.artifacts keeps the shared one)."""
    return artifacts.cache_path(settings, digest)


def local_model_file(db: Database, settings: Settings, digest: str) -> Path:
    """A local file with the model's bytes, fetched from shared storage if this node lacks it."""
    with db.unit_of_work() as session:
        return artifacts.local_path(session, settings, digest)


def parse_ref(ref: str) -> tuple[str, str | None]:
    name, _, version = ref.partition(":")
    return name, version or None


def register(
    db: Database,
    settings: Settings,
    data: bytes,
    *,
    name: str,
    version: str,
    task: str,
    declared_cost_per_1k: float | None = None,
    description: str = "",
    feature_names: list[str] | None = None,
    derived_from_id: int | None = None,
    transform: str | None = None,
) -> ModelRecord:
    """Validate an ONNX file, store it content-addressed and record it."""
    from service.inference.signature import inspect_model, task_problem

    errors = []
    if task not in TASKS:
        errors.append(field_error("task", f"must be one of {', '.join(TASKS)}"))
    if not name or len(name) > 100 or ":" in name:
        errors.append(field_error("name", "must be 1-100 characters without ':'"))
    if not version or len(version) > 50 or ":" in version:
        errors.append(field_error("version", "must be 1-50 characters without ':'"))
    if declared_cost_per_1k is not None and not declared_cost_per_1k >= 0:
        errors.append(field_error("declared_cost_per_1k", "must be a number >= 0"))
    if errors:
        raise ValidationFailed("invalid model registration", errors=errors)
    signature = inspect_model(data, feature_names=feature_names)
    mismatch = task_problem(data, signature, task)
    if mismatch:
        raise ValidationFailed(f"the model does not fit task {task!r}",
                               errors=[field_error("task", f"declared {task!r}, but {mismatch}")])
    digest = hashlib.sha256(data).hexdigest()
    with db.unit_of_work() as session:
        if model_store.by_ref(session, name, version):
            raise Conflict(f"model {name}:{version} is already registered; choose a new version")
        artifacts.save(session, settings, digest, data)
        return model_store.insert(
            session, name=name, version=version, task=task, digest=digest, file_size=len(data),
            signature=signature.to_dict(), declared_cost_per_1k=declared_cost_per_1k, profile=None,
            derived_from_id=derived_from_id, transform=transform, description=description,
            created_at=datetime.now(timezone.utc),
        )


def get(db: Database, model_id: int) -> ModelRecord:
    with db.unit_of_work() as session:
        record = model_store.get(session, model_id)
    if record is None:
        raise NotFound(f"no model with id {model_id}")
    return record


def resolve(db: Database, ref: str) -> ModelRecord:
    """A model by id, ``name:version``, or ``name`` (its latest version)."""
    if ref.isascii() and ref.isdigit():
        if len(ref) > 10 or int(ref) > 2**31 - 1:
            raise NotFound(f"no model {ref!r}")
        return get(db, int(ref))
    name, version = parse_ref(ref)
    with db.unit_of_work() as session:
        record = model_store.by_ref(session, name, version) if version else model_store.latest_by_name(session, name)
    if record is None:
        raise NotFound(f"no model {ref!r}")
    return record


def page(db: Database, *, limit: int, offset: int, name: str | None = None) -> tuple[list[ModelRecord], int]:
    with db.unit_of_work() as session:
        return model_store.page(session, limit=limit, offset=offset, name=name)


def delete(db: Database, model_id: int) -> None:
    with db.unit_of_work() as session:
        record = model_store.get(session, model_id)
        if record is None:
            raise NotFound(f"no model with id {model_id}")
        active = [f"{n} ({s})" for n, s in model_store.users(session, model_id) if s in ("draft", "running", "paused")]
        if active:
            raise Conflict(f"model {record.ref} is used by experiment(s) {', '.join(active)}; stop them first")
        if model_store.users(session, model_id) or model_store.has_predictions(session, model_id):
            raise Conflict(f"model {record.ref} has logged predictions or past experiments; it is kept for the audit trail")
        model_store.delete(session, model_id)
        artifact_store.delete_unreferenced(session, record.digest)


def prediction_cost(cost_per_1k: float | None, inference_ms: float, settings: Settings) -> float:
    """One prediction's cost: the model's cost per 1,000 (declared, or measured by its profile) if
    known, else this request's inference compute time (inside ``session.run``, not end-to-end
    latency) x the price per core-hour x threads used."""
    if cost_per_1k is not None:
        return cost_per_1k / 1000.0
    threads = max(settings.ort_intra_op_threads, 1)
    return inference_ms / 3_600_000.0 * settings.price_per_core_hour * threads


def profile_model(db: Database, settings: Settings, model_id: int, *, labelled_csv: str | None = None,
                  budget_s: float = 5.0) -> dict[str, Any]:
    """Measure the model on this host and store the profile on it (see service.inference.profile)."""
    from service.inference.profile import profile_model as measure

    record = get(db, model_id)
    profile = measure(local_model_file(db, settings, record.digest), record.task, labelled_csv=labelled_csv,
                      price_per_core_hour=settings.price_per_core_hour, budget_s=budget_s,
                      signature=record.signature)
    data = profile.to_dict() if hasattr(profile, "to_dict") else dict(profile)
    with db.unit_of_work() as session:
        model_store.set_profile(session, model_id, data)
    return data


def quantize(db: Database, settings: Settings, model_id: int, to: str, *, version: str | None = None) -> ModelRecord:
    """Register an int8 or fp16 version of a model, with lineage."""
    from service.inference.quantize import quantize_model

    if to not in ("int8", "fp16"):
        raise ValidationFailed("invalid quantization", errors=[field_error("to", "must be int8 or fp16")])
    source = get(db, model_id)
    data = quantize_model(local_model_file(db, settings, source.digest).read_bytes(), to)
    record = register(
        db, settings, data, name=source.name, version=version or f"{source.version}-{to}", task=source.task,
        description=f"{to} quantization of {source.ref}", derived_from_id=source.id, transform=to,
        feature_names=source.signature.get("feature_names"),
    )
    # Smaller is not always cheaper (int8 on a tiny model can cost more): measure both on this host, so the
    # new version's cost is a measurement beside its source's, not an assumption.
    if not source.profile:
        profile_model(db, settings, source.id, budget_s=QUANTIZE_PROFILE_BUDGET_S)
    profile_model(db, settings, record.id, budget_s=QUANTIZE_PROFILE_BUDGET_S)
    return get(db, record.id)


QUANTIZE_PROFILE_BUDGET_S = 1.0


def cost_comparison(source: ModelRecord, derived: ModelRecord) -> tuple[float, float] | None:
    """(source, derived) measured CPU cost per 1,000 predictions, when both are profiled."""
    a, b = (source.profile or {}).get("cost_per_1k"), (derived.profile or {}).get("cost_per_1k")
    return (float(a), float(b)) if a is not None and b is not None else None
