"""Turn a stored analysis (``GET /v1/experiments/{id}/results``) into the demo's table cells."""

from __future__ import annotations

from typing import Any


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _num(value: Any, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def summarise(analysis: dict[str, Any]) -> dict[str, str]:
    """Table cells for one analysis: decision, quality difference and its lower bound against the
    margin, p95 latency per arm, cost per 1M predictions per arm (USD) and the savings share."""
    results = analysis.get("results") or {}
    quality = _get(results, "components", "quality") or {}
    latency = _get(results, "components", "latency") or {}
    cost = _get(results, "components", "cost") or {}
    ci = quality.get("ci") or [None, None]
    per_1m = lambda arm: None if _get(cost, "per_request", arm, "mean") is None else 1e6 * _get(cost, "per_request", arm, "mean")  # noqa: E731
    savings = _get(cost, "savings_share", "estimate")
    margin = quality.get("margin")
    return {
        "decision": str(results.get("decision") or analysis.get("decision") or "—"),
        "diff": _num(quality.get("estimate"), "+.4f"),
        "bound": _num(ci[0], "+.4f"),
        "margin": "—" if margin is None else f"-{margin:g}",
        "p95_champion": _num(_get(latency, "quantiles", "champion", "p95", "value"), ".2f") + " ms",
        "p95_challenger": _num(_get(latency, "quantiles", "challenger", "p95", "value"), ".2f") + " ms",
        "cost_champion": _num(per_1m("champion"), ".3g"),
        "cost_challenger": _num(per_1m("challenger"), ".3g"),
        "savings": "—" if savings is None else f"{100 * savings:.0f}%",
    }
