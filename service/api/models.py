"""/v1/models: the model registry (admin to change, read to list)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from flask import request
from flask_openapi3 import APIBlueprint, FileStorage, Tag
from pydantic import BaseModel, BeforeValidator, Field

from service import registry
from service.api.auth import BEARER, requires
from service.api.schemas import PageQuery, Strict, problem_responses
from service.errors import ValidationFailed, field_error
from service.runtime import runtime
from service.store.models import ModelRecord

# Form values that look like JSON ("1", "2.0") arrive decoded; a name or version is text whatever it looks like.
FormText = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)]

bp = APIBlueprint("models", __name__, url_prefix="/v1/models",
                  abp_tags=[Tag(name="models", description="Register, profile and quantize ONNX models")],
                  abp_security=BEARER)


class ModelUpload(BaseModel):
    file: FileStorage = Field(description="the .onnx file")
    name: FormText = Field(
        min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: FormText = Field(
        min_length=1, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    task: Literal["binary", "multiclass", "regression"]
    declared_cost_per_1k: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    description: str = Field(default="", max_length=2000)
    feature_names: str | None = Field(default=None, description="comma-separated names of a single-tensor input's columns")


class ModelPath(BaseModel):
    model_id: int = Field(ge=1, le=2**31 - 1)


class ModelOut(BaseModel):
    id: int
    name: str
    version: str
    ref: str
    task: str
    digest: str
    file_size: int
    signature: dict[str, Any]
    declared_cost_per_1k: float | None
    profile: dict[str, Any] | None
    derived_from_id: int | None
    transform: str | None
    description: str
    created_at: datetime
    lineage: dict[str, Any] | None = Field(default=None, description=(
        "a derived model's making: source ref and sha256, transform and parameters, the data it was checked on "
        "and its agreement with the source; kept when the source is deleted"))


class ModelPage(BaseModel):
    items: list[ModelOut]
    total: int
    limit: int
    offset: int


class ModelListQuery(PageQuery):
    name: str | None = None


class BenchmarkRequest(Strict):
    labelled_csv: str | None = Field(default=None, max_length=50_000_000,
                                     description="CSV text with a header of feature names and a 'label' column")
    budget_s: float = Field(default=5.0, gt=0, le=120, description="time budget for the measurement "
                                                                   "(at most FRUGAL_BENCHMARK_MAX_S, default 120)")


class QuantizeRequest(Strict):
    to: Literal["int8", "fp16"]
    version: str | None = Field(default=None, min_length=1, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    check_csv: str | None = Field(default=None, max_length=50_000_000, description=(
        "CSV text with a header of feature names (a 'label' column optional): the new version is checked against "
        "its source on these rows (agreement, quality, CPU time timed turn about) and the check is stored in "
        "its lineage"))
    margin: float = Field(default=0.02, ge=0, lt=1, description="with check_csv: how much worse than the source "
                                                                 "(accuracy points, or RMSE) it may be")


def model_json(r: ModelRecord) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "version": r.version, "ref": r.ref, "task": r.task, "digest": r.digest,
            "file_size": r.file_size, "signature": r.signature, "declared_cost_per_1k": r.declared_cost_per_1k,
            "profile": r.profile, "derived_from_id": r.derived_from_id, "transform": r.transform,
            "description": r.description, "created_at": r.created_at.isoformat(), "lineage": r.lineage}


@bp.post("", responses={201: ModelOut, **problem_responses(400, 401, 403, 409, 413, 415, 422)})
@requires("admin")
def register_model(form: ModelUpload):
    """Upload and register an ONNX model (multipart/form-data).  Refuses corrupt or non-ONNX files,
    unsupported operators and a duplicate (name, version)."""
    data = form.file.read()
    if not data:
        raise ValidationFailed("the uploaded file is empty", errors=[field_error("file", "is empty")])
    rt = runtime()
    names = [n.strip() for n in form.feature_names.split(",")] if form.feature_names else None
    record = registry.register(rt.db, rt.settings, data, name=form.name, version=form.version, task=form.task,
                               declared_cost_per_1k=form.declared_cost_per_1k, description=form.description,
                               feature_names=names)
    return model_json(record), 201


@bp.get("", responses={200: ModelPage, **problem_responses(401, 403, 422)})
@requires("read")
def list_models(query: ModelListQuery):
    """Registered models, paginated."""
    items, total = registry.page(runtime().db, limit=query.limit, offset=query.offset, name=query.name)
    return {"items": [model_json(r) for r in items], "total": total, "limit": query.limit, "offset": query.offset}


@bp.get("/<int:model_id>", responses={200: ModelOut, **problem_responses(401, 403, 404)})
@requires("read")
def get_model(path: ModelPath):
    """One model, with its signature and measured profile."""
    return model_json(registry.get(runtime().db, path.model_id))


@bp.delete("/<int:model_id>", responses={204: None, **problem_responses(401, 403, 404, 409)})
@requires("admin")
def delete_model(path: ModelPath):
    """Delete a model no experiment uses (409 otherwise)."""
    registry.delete(runtime().db, path.model_id)
    return "", 204


@bp.post("/<int:model_id>/benchmark", responses={200: ModelOut, **problem_responses(401, 403, 404, 422)})
@requires("admin")
def benchmark_model(path: ModelPath, body: BenchmarkRequest):
    """Measure latency, throughput, memory and (given labels) accuracy on this host; stored on the model."""
    rt = runtime()
    registry.profile_model(rt.db, rt.settings, path.model_id, labelled_csv=body.labelled_csv,
                           budget_s=min(body.budget_s, rt.settings.benchmark_max_s))
    return model_json(registry.get(rt.db, path.model_id))


@bp.post("/<int:model_id>/quantize", responses={201: ModelOut, **problem_responses(400, 401, 403, 404, 409, 422)})
@requires("admin")
def quantize_model(path: ModelPath, body: QuantizeRequest):
    """Register an int8 (dynamic quantization) or fp16 version of the model, with lineage; with
    ``check_csv``, checked against its source (``lineage.check.verdict``)."""
    from service.candidates import checked_quantize

    rt = runtime()
    record, _ = checked_quantize(rt.db, rt.settings, path.model_id, body.to, body.check_csv, version=body.version,
                                 margin=body.margin)
    return model_json(record), 201
