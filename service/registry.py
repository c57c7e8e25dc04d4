"""The model registry: register, list, profile, quantize and delete ONNX models.

Files are stored content-addressed by SHA-256 in shared storage (the database by default, see
service/artifacts.py) with a cached copy per node; metadata and the measured profile live in the database.
"""

from __future__ import annotations

import hashlib
import math
import os
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
    lineage: dict[str, Any] | None = None,
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
            created_at=datetime.now(timezone.utc), lineage=lineage,
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


HOURS_PER_MONTH = 24 * 30.0   # the reports' month (service.reports.gather.DAYS_PER_MONTH)


def compute_threads(settings: Settings) -> int:
    """Cores one inference is charged for.  With one intra-op thread (the default) onnxruntime runs on the
    calling thread and the session pool times ``session.run`` in that thread's CPU time
    (``service.inference.sessions.inference_clock``): one core.  With more threads it times wall
    time, charged for every thread it may use (0 = onnxruntime's default, one per core)."""
    threads = settings.ort_intra_op_threads
    return 1 if threads == 1 else (threads or os.cpu_count() or 1)


def prediction_cost(cost_per_1k: float | None, inference_ms: float, settings: Settings) -> float:
    """One prediction's cost in USD: the one cost model (docs/models.md#cost), charged to every served,
    shadow and client-reported row from that row's own measurement.

    compute = this row's inference time inside ``session.run`` (CPU time, measured the same way in
    the request process and in a shadow scorer) / 3,600,000 ms x ``price_per_core_hour`` x
    ``compute_threads``, plus ``cost_per_1k`` / 1,000 when the model declares a cost per 1,000
    predictions (a licence or API fee: added to the compute, never instead of it).  A model's
    benchmark profile does not enter: re-benchmarking never changes what a row cost.  Memory is
    charged per replica-hour, not per row (``memory_cost_per_month``)."""
    compute = max(inference_ms, 0.0) / 3_600_000.0 * settings.price_per_core_hour * compute_threads(settings)
    return compute + (cost_per_1k / 1000.0 if cost_per_1k else 0.0)


@dataclass(frozen=True)
class MemoryCost:
    """The memory a model's serving replicas hold, priced per GB-hour, at an observed traffic rate."""

    replicas: int
    memory_mb: float
    per_month: float      # USD


def memory_cost_per_month(memory_mb: float, predictions_per_s: float, cpu_ms_per_prediction: float,
                          settings: Settings) -> MemoryCost:
    """USD a month for the resident memory of the replicas a model needs at ``predictions_per_s``: a
    replica is one process with one core, so the traffic needs ceil(rate x CPU seconds per
    prediction) of them, at least one; each holds ``memory_mb`` (the model's own increment,
    measured by ``frugal models bench`` in a fresh process)."""
    replicas = max(1, math.ceil(max(predictions_per_s, 0.0) * max(cpu_ms_per_prediction, 0.0) / 1000.0))
    per_month = replicas * max(memory_mb, 0.0) / 1024.0 * HOURS_PER_MONTH * settings.price_per_gb_hour
    return MemoryCost(replicas, memory_mb, per_month)


def profile_model(db: Database, settings: Settings, model_id: int, *, labelled_csv: str | None = None,
                  budget_s: float = 5.0) -> dict[str, Any]:
    """Measure the model on this host, in a fresh process, and store the profile on it (see
    service.inference.profile: the CLI and the API get the same figures)."""
    from service.inference.profile import profile_in_fresh_process as measure

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
        lineage={"source": source.ref, "source_sha256": source.digest, "transform": to, "params": {}},
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


@dataclass(frozen=True)
class ModelComparison:
    """One registered model on the quality / cost plane (``frugal models compare``), from its benchmark."""

    ref: str
    quality_name: str | None        # "accuracy" or "rmse": what the labelled benchmark measured
    quality: float | None
    cost_per_1m: float | None       # USD: benchmarked CPU time per prediction at today's price, plus any declared cost
    p95_ms: float | None            # single-row latency, end to end
    memory_mb: float | None
    on_frontier: bool = False


def compare(db: Database, settings: Settings, refs: list[str] | None = None) -> list[ModelComparison]:
    """Registered models (``refs``, or every one) with their benchmarked quality, cost per 1M predictions
    (the cost model of ``prediction_cost`` applied to the benchmark's CPU time) and p95 latency; the
    frontier is computed among models whose quality was measured the same way (same figure)."""
    from service.reports.plots import ParetoPoint, frontier

    records = [resolve(db, ref) for ref in refs] if refs else page(db, limit=1000, offset=0)[0]
    rows = []
    for record in records:
        profile = record.profile or {}
        cpu_ms = profile.get("cpu_ms_per_prediction")
        cost = prediction_cost(record.declared_cost_per_1k, cpu_ms, settings) * 1e6 if cpu_ms is not None else None
        name = "accuracy" if "accuracy" in profile else "rmse" if "rmse" in profile else None
        rows.append(ModelComparison(record.ref, name, profile.get(name) if name else None, cost,
                                    (profile.get("single_row_latency_ms") or {}).get("p95"), profile.get("memory_mb")))
    best: set[str] = set()
    for name, higher in (("accuracy", True), ("rmse", False)):
        points = [ParetoPoint(r.ref, r.quality, r.cost_per_1m, r.p95_ms) for r in rows
                  if r.quality_name == name and r.quality is not None and r.cost_per_1m]
        best |= frontier(points, higher)
    return [ModelComparison(**{**r.__dict__, "on_frontier": r.ref in best}) for r in rows]
