"""One exception hierarchy for the whole service.

Every error a client can see is a :class:`FrugalError`.  ``service.api.problems`` maps them (and
werkzeug's HTTP errors, and anything unexpected) to RFC 9457 ``application/problem+json`` in one
place; nothing else in the code base builds an error response.
"""

from __future__ import annotations

from typing import Any

PROBLEM_TYPE_PREFIX = "urn:frugal:problem:"


class FrugalError(Exception):
    """Base class: an error with a stable code, an HTTP status and a message a person can act on."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class BadRequest(FrugalError):
    status, code, title = 400, "bad_request", "Bad request"


class MalformedJSON(BadRequest):
    code, title = "malformed_json", "Malformed JSON"


class ValidationFailed(FrugalError):
    """The request was well-formed but one or more fields are invalid; ``errors`` names each."""

    status, code, title = 422, "validation_failed", "Validation failed"


class Unauthorized(FrugalError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(FrugalError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(FrugalError):
    status, code, title = 404, "not_found", "Not found"


class MethodNotAllowed(FrugalError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(FrugalError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(FrugalError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(FrugalError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class NotImplementedHere(FrugalError):
    """A feature whose optional dependency is not installed (e.g. PDF reports without ``frugal[pdf]``)."""

    status, code, title = 501, "not_implemented", "Not implemented"


class ServiceUnavailable(FrugalError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


class ConfigurationError(Exception):
    """Bad settings: raised at start-up, never reaches a client.  The message names the variable."""


def field_error(field: str, message: str) -> dict[str, str]:
    """One entry of a problem's ``errors`` list."""
    return {"field": field, "message": message}
