"""Shared wire schemas (pydantic): problem details and pagination."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from service.errors import MalformedJSON, ValidationFailed, field_error

MAX_JSON_DEPTH = 32
MAX_ID = 2**31 - 1          # ids and offsets: the database's integer columns
MAX_MAGNITUDE = 1e12        # an outcome or a prediction: |x| <= 1e12 (sums of squares of a billion stay finite)
MAX_LATENCY_MS = 3_600_000  # one hour
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
FUTURE_SLACK = timedelta(days=1)


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
    offset: int = Field(default=0, ge=0, le=MAX_ID)


def _event_time(value: datetime) -> datetime:
    """Stored in UTC (an offset Postgres does not take, such as +20:00, never reaches it), between
    2000-01-01 and a day from now (a clock far off would put the row outside every analysis window)."""
    try:
        utc = value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise ValueError("is out of range") from None
    if utc < EARLIEST or utc > datetime.now(timezone.utc) + FUTURE_SLACK:
        raise ValueError("must be between 2000-01-01 and one day from now (ISO 8601 with a time zone)")
    return utc


EventTime = Annotated[AwareDatetime, AfterValidator(_event_time)]


def check_json_tree(data: Any, where: str = "body") -> None:
    """Refuse what no column can hold and no parser should walk: a string (or key) with a NUL
    character or an unpaired surrogate, and nesting deeper than MAX_JSON_DEPTH.  Raises
    ValidationFailed naming the first offending field."""
    stack: list[tuple[Any, str, int]] = [(data, where, 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                raise ValidationFailed(f"{path}: {problem}", errors=[field_error(path, problem)])
        elif isinstance(value, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                message = f"is nested more than {MAX_JSON_DEPTH} levels deep"
                raise ValidationFailed(f"{path}: {message}", errors=[field_error(path, message)])
            if isinstance(value, dict):
                for key, item in value.items():
                    problem = _text_problem(key)
                    if problem:
                        raise ValidationFailed(f"{path}: a key {problem}", errors=[field_error(path, f"a key {problem}")])
                    stack.append((item, f"{path}.{key}", depth + 1))
            else:
                stack.extend((item, f"{path}.{i}", depth + 1) for i, item in enumerate(value))


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain a NUL character (\\u0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (an unpaired surrogate such as \\ud800 is not)"
    return None


def parse_json(body: bytes | str) -> Any:
    """json.loads that answers a client error, never a RecursionError, for a pathological body."""
    import json

    try:
        return json.loads(body)
    except RecursionError:
        raise MalformedJSON(f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None


def problem_responses(*codes: int) -> dict[int, type[BaseModel]]:
    return {code: Problem for code in codes}
