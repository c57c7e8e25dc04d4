"""Typed errors.  Only strict mode raises them; graceful mode (the default) returns a fallback."""

from __future__ import annotations

from typing import Any


class FrugalError(Exception):
    """Base class of every error the SDK raises."""


class DeadlineExceeded(FrugalError):
    """The service did not answer within the deadline."""


class ServiceUnavailable(FrugalError):
    """The service could not be reached, or answered 5xx / 429."""


class ApiError(FrugalError):
    """The service refused the request (4xx).  ``problem`` is its RFC 9457 body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        detail = problem.get("detail") or problem.get("title") or "request refused"
        super().__init__(f"{status}: {detail}")


class NotReady(FrugalError):
    """No ruleset yet: the service was unreachable at start and no bootstrap was given."""


class UnknownExperiment(FrugalError):
    """The ruleset has no experiment of that name."""
