"""OpenFeature provider (extra ``openfeature``): an experiment's arm as a string flag.

    from openfeature import api
    from frugal_sdk.openfeature import FrugalProvider
    api.set_provider_and_wait(FrugalProvider(client))   # set_provider initializes on a thread: see Lifecycle
    arm = api.get_client().get_string_value("ranker-v2", "champion", EvaluationContext(targeting_key=user_id))

The flag key is the experiment name, the targeting key is the unit id, the value and variant are the
arm ("champion" or "challenger"); the policy and phase are in ``flag_metadata``.  Evaluation never
raises: errors return the caller's default with an OpenFeature reason and error code.

Lifecycle: ``initialize`` (called by ``set_provider_and_wait``; ``set_provider`` runs it on a thread,
and OpenFeature answers the default with PROVIDER_NOT_READY until it returns) waits up to ``init_timeout`` for the client's
first ruleset from the service: READY when it came, ERROR (PROVIDER_NOT_READY) when the service did
not answer; then a watcher emits PROVIDER_READY / PROVIDER_STALE as refreshes fail and recover.
``shutdown`` stops the watcher and closes the client (flushing its outcomes) unless
``close_client=False``.  ``track(name, ctx, TrackingEventDetails(value, {"request_id": rid}))``
records ``value`` (default 1.0) as the outcome of the prediction ``rid`` (from ``predict`` or
``log_prediction``); without a request id there is nothing to join it to, so it is ignored with a
(rate-limited) warning.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from frugal_sdk._ratelimit import RateLimitedLog
from frugal_sdk.client import Client
from frugal_sdk.types import ERROR

log = logging.getLogger("frugal_sdk.openfeature")

_TYPE_MISMATCH = "Frugal flags are strings (the arm name); use get_string_value"


class FrugalProvider(AbstractProvider):
    def __init__(self, client: Client, *, init_timeout: float = 5.0, watch_interval: float = 1.0,
                 close_client: bool = True) -> None:
        super().__init__()
        self._client = client
        self._init_timeout, self._watch_interval, self._close_client = init_timeout, watch_interval, close_client
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._warnings = RateLimitedLog(log)

    # -- lifecycle ------------------------------------------------------------------------------
    def _healthy(self) -> bool:
        return self._client.ready and not self._client.stats()["ruleset_stale"]

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        self._stop.clear()
        deadline = time.monotonic() + self._init_timeout
        while not self._client.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        self._watcher = threading.Thread(target=self._watch, args=(self._client.ready,), name="frugal-openfeature",
                                         daemon=True)
        self._watcher.start()
        if not self._client.ready:
            raise ProviderNotReadyError(f"no ruleset from {self._client.base_url} within {self._init_timeout} s; "
                                        "assignments use the cached or bootstrap ruleset, else the champion")

    def _watch(self, was_healthy: bool) -> None:
        healthy = was_healthy
        while not self._stop.wait(self._watch_interval):
            now = self._healthy()
            if now and not healthy:
                self.emit_provider_ready(ProviderEventDetails(message="ruleset refreshed from the service"))
            elif healthy and not now:
                self.emit_provider_stale(ProviderEventDetails(
                    message=f"ruleset refresh failing: {self._client.stats()['ruleset_last_error']}"))
            healthy = now

    def shutdown(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None
        if self._close_client:
            self._client.close()

    def track(self, tracking_event_name: str, evaluation_context: EvaluationContext | None = None,
              tracking_event_details: TrackingEventDetails | None = None) -> None:
        attributes = (tracking_event_details.attributes if tracking_event_details else None) or {}
        request_id = attributes.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            self._warnings.warning("track-no-request-id", "frugal: track(%r) ignored: give the prediction's request id "
                                   "as TrackingEventDetails(attributes={'request_id': ...})", tracking_event_name)
            return
        value = tracking_event_details.value if tracking_event_details and tracking_event_details.value is not None else 1.0
        try:
            self._client.record_outcome(request_id, float(value))
        except Exception as exc:  # noqa: BLE001 - tracking never raises into the caller
            self._warnings.warning("track-failed", "frugal: track(%r) failed: %s", tracking_event_name, exc)

    def get_metadata(self) -> Metadata:
        return Metadata(name="frugal")

    def resolve_string_details(self, flag_key: str, default_value: str,
                               evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[str]:
        unit = evaluation_context.targeting_key if evaluation_context else None
        if not unit:
            return FlagResolutionDetails(default_value, ErrorCode.TARGETING_KEY_MISSING,
                                         "set the unit id as the evaluation context's targeting_key", Reason.ERROR)
        try:
            a = self._client.assign(flag_key, unit)
        except Exception as exc:  # noqa: BLE001 - strict clients raise; a provider must not
            return FlagResolutionDetails(default_value, ErrorCode.GENERAL, str(exc), Reason.ERROR)
        if a.reason == ERROR:
            return FlagResolutionDetails(default_value, ErrorCode(a.error_code), f"{flag_key}: {a.error_code}", Reason.ERROR)
        metadata: dict[str, Any] = {"in_experiment": a.in_experiment}
        if a.phase is not None:
            metadata["phase"] = a.phase
        if a.ruleset_version:
            metadata["ruleset_version"] = a.ruleset_version
        if a.policy:
            metadata["policy"] = a.policy.get("model") or a.policy.get("cheap") or ""
        reason = Reason.STALE if a.stale else Reason(a.reason)
        return FlagResolutionDetails(a.arm, reason=reason, variant=a.arm, flag_metadata=metadata)

    def _mismatch(self, default_value: Any) -> FlagResolutionDetails:
        return FlagResolutionDetails(default_value, ErrorCode.TYPE_MISMATCH, _TYPE_MISMATCH, Reason.ERROR)

    def resolve_boolean_details(self, flag_key, default_value, evaluation_context=None):
        return self._mismatch(default_value)

    def resolve_integer_details(self, flag_key, default_value, evaluation_context=None):
        return self._mismatch(default_value)

    def resolve_float_details(self, flag_key, default_value, evaluation_context=None):
        return self._mismatch(default_value)

    def resolve_object_details(self, flag_key, default_value, evaluation_context=None):
        return self._mismatch(default_value)
