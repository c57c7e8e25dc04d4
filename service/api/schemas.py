"""Shared wire schemas (pydantic): problem details and pagination."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class OptionalBody(Strict):
    """A body that may be omitted entirely (no body means all defaults)."""

    @model_validator(mode="before")
    @classmethod
    def _none_is_empty(cls, data):
        return {} if data is None else data


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["urn:frugal:problem:validation_failed"])
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


class PageQuery(Strict):
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0)


def problem_responses(*codes: int) -> dict[int, type[BaseModel]]:
    return {code: Problem for code in codes}
