"""Webhooks: tell an experiment's URL when its decision changes (retried by the task with backoff)."""

from __future__ import annotations

from typing import Any

import requests

from service.store.analyses import AnalysisRecord


class WebhookFailed(Exception):
    """Transient: the task retries with backoff; it never blocks analysis."""


def decision_message(experiment: dict[str, Any], analysis: AnalysisRecord, previous: str | None, public_url: str) -> dict[str, Any]:
    return {
        "event": "decision_changed", "experiment": {"id": experiment["id"], "name": experiment["name"]},
        "decision": analysis.decision, "previous_decision": previous, "analysis_id": analysis.id,
        "explanation": analysis.explanation, "at": analysis.created_at.isoformat(),
        "links": {"results": f"{public_url}/v1/experiments/{experiment['id']}/results",
                  "dashboard": f"{public_url}/dashboard/experiments/{experiment['id']}"},
    }


def post(url: str, message: dict[str, Any], timeout_s: float = 5.0) -> int:
    try:
        response = requests.post(url, json=message, timeout=timeout_s, headers={"User-Agent": "frugal-webhook/1"})
    except requests.RequestException as exc:
        raise WebhookFailed(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise WebhookFailed(f"HTTP {response.status_code}")
    return response.status_code
