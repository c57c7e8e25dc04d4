"""The one place errors become HTTP responses: RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import json
import logging

from flask import Flask, Response, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from service.errors import FrugalError, ValidationFailed, field_error

log = logging.getLogger("frugal.api")
PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def _wants_html() -> bool:
    """A browser on one of the HTML pages (not /v1): it gets the same problem as a page.  API clients,
    which do not prefer text/html, keep getting problem+json."""
    if not request or request.path.startswith("/v1/") or request.path in ("/openapi.json",):
        return False
    accept = request.accept_mimetypes
    return accept.best_match(["application/problem+json", "application/json", "text/html"]) == "text/html"


def problem_headers(error: FrugalError) -> list[tuple[str, str]]:
    """The headers a problem carries besides its Content-Type."""
    if error.status == 401:
        return [("WWW-Authenticate", 'Bearer realm="frugal"')]
    if error.status == 503:
        return [("Retry-After", "5")]
    return []


def problem_json(error: FrugalError, instance: str | None) -> bytes:
    """The problem+json body: the one rendering of an error, in Flask or in the predict fast path."""
    return json.dumps(error.to_problem(instance=instance)).encode()


def problem_response(error: FrugalError) -> Response:
    if _wants_html():
        from service.reports.render import page

        body = error.to_problem(instance=request.path if request else None)
        response = Response(page("error.html", problem=body), status=error.status, mimetype="text/html")
    else:
        response = Response(problem_json(error, request.path if request else None), status=error.status,
                            mimetype=PROBLEM_JSON)
    for name, value in problem_headers(error):
        response.headers[name] = value
    return response


def unexpected_error() -> FrugalError:
    return FrugalError("an internal error occurred; it has been logged")


def _http_error(exc: HTTPException) -> Response:
    code, title = _HTTP_CODES.get(exc.code or 500, ("http_error", exc.name))
    detail = {
        404: f"no route {request.path}; see /docs for the API",
        405: f"{request.method} is not allowed on {request.path}",
        413: "the request body is larger than this endpoint accepts (FRUGAL_MAX_REQUEST_BYTES)",
    }.get(exc.code or 0, exc.description or exc.name)
    error = FrugalError(detail)
    error.status, error.code, error.title = exc.code or 500, code, title
    response = problem_response(error)
    if exc.code == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return problem_response(unexpected_error())


def validation_failed(exc: ValidationError, *, where: str = "body") -> ValidationFailed:
    """Turn a pydantic error into a 422 naming every invalid field."""
    errors = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in err["loc"])
        field = f"{where}.{loc}" if loc else where
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "is required"
        else:
            message = err["msg"]
        errors.append(field_error(field, message))
    fields = ", ".join(e["field"] for e in errors[:5])
    return ValidationFailed(f"{len(errors)} invalid field(s): {fields}", errors=errors)


def openapi_validation_callback(exc: ValidationError) -> Response:
    """flask-openapi3 hands request-validation errors here; the model's name says where the field is."""
    title = exc.title.lower()
    where = "query" if title.endswith("query") else "path" if title.endswith("path") else "form" if title.endswith(("upload", "form")) else "body"
    return problem_response(validation_failed(exc, where=where))


def register(app: Flask) -> None:
    app.register_error_handler(FrugalError, problem_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


# -- the OpenAPI document -------------------------------------------------------------------------
_TITLES = {400: "Bad request (malformed JSON, or a NUL character in the URL)", 401: "Missing or unknown API key",
           403: "The key's scope does not allow this route", 404: "Not found", 409: "Conflict",
           413: "The body is too large", 415: "The body is not application/json",
           422: "A field is invalid: ``errors`` names each", 500: "Internal error (logged; the detail says nothing more)",
           503: "A dependency is unavailable; retry after Retry-After seconds"}
_NOT_PROBLEMS = {("/readyz", "get", "503")}  # readiness answers its own body with a 503


def document_problems(spec: dict) -> None:
    """Every error response of every operation in the OpenAPI document: ``application/problem+json``
    with the Problem schema, and every status the one error handler can answer for that operation
    (400 and 500 everywhere; 401, 403 and 503 on keyed routes; 404 where the path has parameters;
    413, 415 and 422 where there is a body or parameters)."""
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            codes = {400, 500}
            if operation.get("security"):
                codes |= {401, 403, 503}
            if "{" in path:
                codes.add(404)
            if operation.get("requestBody"):
                codes |= {413, 415, 422}
            if operation.get("parameters") or operation.get("requestBody"):
                codes.add(422)
            for code in codes:
                responses.setdefault(str(code), {"description": _TITLES[code]})
            for code, response in responses.items():
                if code[:1] in ("4", "5") and (path, method, code) not in _NOT_PROBLEMS:
                    response["content"] = problem
                    response.setdefault("description", _TITLES.get(int(code), "Error"))
