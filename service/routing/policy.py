"""Run a policy (one model, or a cascade) on rows, and turn an answer into an event-log row.

Shared by the router (request path) and the shadow scorers (service/scorer.py), so a challenger's
shadow row is built, timed and costed exactly like a served one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from service.registry import prediction_cost
from service.routing.catalog import ModelSpec, PolicySpec
from service.settings import Settings

# (spec, rows, use_cache) -> (outputs [(prediction, confidence)], inference ms for the batch, cache hits)
RunModel = Callable[[ModelSpec, list[Any], bool], tuple[list[tuple[Any, float | None]], float, list[bool]]]


@dataclass(frozen=True)
class Scored:
    """One row's answer from a policy."""

    prediction: Any
    confidence: float | None
    answered_by: ModelSpec
    inference_ms: float
    cost: float
    cache_hit: bool


def run_policy(run_model: RunModel, settings: Settings, policy: PolicySpec, rows: list[Any], use_cache: bool) -> list[Scored]:
    """Score ``rows``; a cascade sends the rows its cheap model is unsure of to its fallback model."""
    outputs, total_ms, hits = run_model(policy.primary, rows, use_cache)
    per_row_ms = total_ms / max(len(rows) - sum(hits), 1)
    scored = [
        Scored(pred, conf, policy.primary, 0.0 if hit else per_row_ms,
               0.0 if hit else prediction_cost(policy.primary.cost_per_1k, per_row_ms, settings), hit)
        for (pred, conf), hit in zip(outputs, hits)
    ]
    if policy.kind == "cascade":
        unsure = [i for i, s in enumerate(scored) if s.confidence is None or s.confidence < policy.threshold]
        if unsure:
            outputs2, total2, hits2 = run_model(policy.fallback, [rows[i] for i in unsure], use_cache)
            ms2 = total2 / max(len(unsure) - sum(hits2), 1)
            for i, (pred, conf), hit in zip(unsure, outputs2, hits2):
                first = scored[i]
                extra_ms = 0.0 if hit else ms2
                extra_cost = 0.0 if hit else prediction_cost(policy.fallback.cost_per_1k, ms2, settings)
                scored[i] = Scored(pred, conf, policy.fallback, first.inference_ms + extra_ms, first.cost + extra_cost,
                                   first.cache_hit and hit)
    return scored


def prediction_event(*, experiment_id: int, phase: int, request_id: str, unit_id: str, arm: str, in_experiment: bool,
                     served: bool, policy: PolicySpec, scored: Scored, latency_ms: float, reason: str | None, now) -> dict[str, Any]:
    """The event-log row (service.eventlog.PredictionEvent fields) for one scored row."""
    prediction = scored.prediction
    numeric = isinstance(prediction, (int, float)) and not isinstance(prediction, bool)
    return {
        "request_id": request_id, "experiment_id": experiment_id, "phase": phase, "arm": arm,
        "unit_id": unit_id[:256], "model_id": policy.primary.id, "served": served, "in_experiment": in_experiment,
        "answered_by_id": scored.answered_by.id, "latency_ms": latency_ms, "inference_ms": scored.inference_ms,
        "prediction": float(prediction) if numeric else None, "label": None if numeric else str(prediction)[:200],
        "confidence": scored.confidence, "cost": scored.cost, "cache_hit": scored.cache_hit,
        "fallback_reason": reason, "source": "server", "created_at": now,
    }
