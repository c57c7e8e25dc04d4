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


def problem_response(error: FrugalError) -> Response:
    body = error.to_problem(instance=request.path if request else None)
    if _wants_html():
        from service.reports.render import page

        response = Response(page("error.html", problem=body), status=error.status, mimetype="text/html")
    else:
        response = Response(json.dumps(body), status=error.status, mimetype=PROBLEM_JSON)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="frugal"'
    if error.status == 503:
        response.headers["Retry-After"] = "5"
    return response


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
    return problem_response(FrugalError("an internal error occurred; it has been logged"))


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
