"""The SDK in operation: warnings are rate-limited during an outage, and the OpenFeature provider's
lifecycle (initialize, status, track, shutdown)."""

from __future__ import annotations

import logging

import pytest

from frugal_sdk import Client
from frugal_sdk._ratelimit import RateLimitedLog


def test_an_outage_logs_one_fallback_warning_not_one_per_request(caplog):
    caplog.set_level(logging.WARNING, logger="frugal_sdk")
    with Client("http://127.0.0.1:9", "k", timeout=0.2, init_timeout=0, local=False) as client:
        answers = [client.predict("e", f"u{i}", [1.0], fallback=0.0) for i in range(200)]
        stats = client.stats()
    assert all(a.fallback_reason and a.prediction == 0.0 for a in answers)
    assert stats["fallbacks"] == 200                      # every fallback is still counted
    fell_back = [r for r in caplog.records if "fell back" in r.getMessage()]
    assert len(fell_back) == 1, [r.getMessage() for r in fell_back]


def test_rate_limited_warnings_say_how_many_were_held_back(caplog):
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("frugal_sdk.test"), interval=60, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="frugal_sdk.test")
    assert limited.warning("a", "down: %s", "x") is True
    assert [limited.warning("a", "down: %s", "x") for _ in range(5)] == [False] * 5
    assert limited.warning("b", "other") is True          # each kind has its own budget
    now[0] = 61.0
    assert limited.warning("a", "down: %s", "y") is True
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["down: x", "other", "down: y (and 5 more like it in the last 60 s)"]


def test_openfeature_provider_is_not_ready_when_the_service_never_answered():
    pytest.importorskip("openfeature")
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.provider import ProviderStatus

    from frugal_sdk.openfeature import FrugalProvider

    from openfeature.exception import ProviderNotReadyError

    client = Client("http://127.0.0.1:9", "k", timeout=0.1, init_timeout=0)
    provider = FrugalProvider(client, init_timeout=0.2)
    with pytest.raises(ProviderNotReadyError):
        api.set_provider_and_wait(provider)
    try:
        of = api.get_client()
        assert of.get_provider_status() == ProviderStatus.ERROR
        details = of.get_string_details("e", "champion", EvaluationContext(targeting_key="u"))
        assert details.value == "champion" and details.error_code is not None
    finally:
        api.clear_providers()        # shutdown: the watcher stops, the client is closed
    assert client._closed


@pytest.mark.postgres
def test_openfeature_provider_is_ready_tracks_outcomes_and_closes_the_client(live):
    pytest.importorskip("openfeature")
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.provider import ProviderStatus
    from openfeature.track import TrackingEventDetails

    from frugal_sdk.openfeature import FrugalProvider

    client = Client(live.url, live.sdk_key, timeout=5, flush_interval=0.1)
    api.set_provider_and_wait(FrugalProvider(client))
    try:
        of = api.get_client()
        assert of.get_provider_status() == ProviderStatus.READY
        a = client.assign(live.experiment, "of-unit")
        model = live.champion if a.arm == "champion" else live.challenger
        rid = client.log_prediction(live.experiment, "of-unit", a, model, latency_ms=1.0, prediction=1)
        of.track("converted", EvaluationContext(targeting_key="of-unit"), TrackingEventDetails(0.5, {"request_id": rid}))
        of.track("converted", EvaluationContext(targeting_key="of-unit"))   # no request id: ignored, never raises
        assert client.flush(timeout=10)
    finally:
        api.clear_providers()
    assert client._closed
    rows = live.wait_rows(f"SELECT value FROM outcomes WHERE request_id = '{rid}'", 1)
    assert rows[0].value == 0.5
