"""What the client returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Assignment reasons, after OpenFeature's resolution reasons.
SPLIT = "SPLIT"          # hashed into an arm of a running experiment
DEFAULT = "DEFAULT"      # outside coverage: the champion, not an exposure
DISABLED = "DISABLED"    # the experiment is not running: its served arm (champion, or the promoted challenger)
ERROR = "ERROR"          # no ruleset or no such experiment: the champion, with an error_code


@dataclass(frozen=True)
class Prediction:
    """One answer.  ``fallback_reason`` is None when the experiment's policy answered as designed;
    otherwise it says why something else answered (the service's champion fallback, e.g.
    ``challenger_timeout``, or the SDK's own: ``sdk_deadline``, ``sdk_unavailable``, ``sdk_refused``)."""

    request_id: str
    arm: str | None
    model_version: str | None
    prediction: Any
    confidence: float | None
    latency_ms: float
    fallback_reason: str | None
    served_by: str | None = None
    in_experiment: bool = False
    cache_hit: bool = False     # the service answered from its prediction cache

    @property
    def from_fallback(self) -> bool:
        """True when the caller's fallback answered (the service did not)."""
        return self.served_by == "caller_fallback"


@dataclass(frozen=True)
class Assignment:
    """A local assignment.  ``policy`` is the arm's policy from the ruleset (``{"kind": "model",
    "model": "name:version"}`` or a cascade), None when unknown.  ``stale`` is True while the last
    ruleset refresh failed (the cached ruleset keeps answering)."""

    experiment: str
    arm: str
    policy: dict[str, Any] | None
    phase: int | None
    in_experiment: bool
    reason: str
    error_code: str | None = None
    stale: bool = False
    ruleset_version: str | None = None
