"""OpenFeature provider (extra ``openfeature``): an experiment's arm as a string flag.

    from openfeature import api
    from frugal_sdk.openfeature import FrugalProvider
    api.set_provider(FrugalProvider(client))
    arm = api.get_client().get_string_value("ranker-v2", "champion", EvaluationContext(targeting_key=user_id))

The flag key is the experiment name, the targeting key is the unit id, the value and variant are the
arm ("champion" or "challenger"); the policy and phase are in ``flag_metadata``.  Evaluation never
raises: errors return the caller's default with an OpenFeature reason and error code.
"""

from __future__ import annotations

from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from frugal_sdk.client import Client
from frugal_sdk.types import ERROR

_TYPE_MISMATCH = "Frugal flags are strings (the arm name); use get_string_value"


class FrugalProvider(AbstractProvider):
    def __init__(self, client: Client) -> None:
        super().__init__()
        self._client = client

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
