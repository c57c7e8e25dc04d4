"""What an experiment is: the validated definition an experimenter submits.

These pydantic models are the wire schema of ``POST /v1/experiments`` (and so appear in the
OpenAPI document) and the JSON stored in ``experiments.definition``.  Rules that need the database
(models exist, signatures match) live in :mod:`service.experiments`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

BUCKETS = 10_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelPolicy(Strict):
    """One model answers."""

    kind: Literal["model"] = "model"
    model: str = Field(description="'name:version' of a registered model", examples=["credit-gbm:1"])


class CascadePolicy(Strict):
    """The cheap model answers unless its confidence is below ``threshold``; then ``fallback`` answers."""

    kind: Literal["cascade"]
    cheap: str = Field(description="'name:version' of the cheap model")
    fallback: str = Field(description="'name:version' of the model used when the cheap one is unsure")
    threshold: float = Field(gt=0, lt=1, description="minimum confidence for the cheap model's answer")


Policy = Annotated[Union[ModelPolicy, CascadePolicy], Field(discriminator="kind")]


class Metric(Strict):
    """The primary quality metric and the non-inferiority margin."""

    kind: Literal["binary", "continuous"] = "binary"
    quality: Literal["accuracy", "outcome", "absolute_error", "squared_error"] = Field(
        default="accuracy",
        description="per-request value: accuracy = prediction equals the outcome label; outcome = the "
        "outcome itself (e.g. a conversion); absolute/squared_error for regression",
    )
    higher_is_better: bool = True
    margin: float = Field(gt=0, description="non-inferiority margin (> 0)")
    margin_type: Literal["absolute", "relative"] = "absolute"

    @model_validator(mode="after")
    def _consistent(self) -> "Metric":
        if self.quality in ("absolute_error", "squared_error"):
            if self.kind != "continuous":
                raise ValueError(f"quality {self.quality!r} needs kind 'continuous'")
            if self.higher_is_better:
                raise ValueError(f"quality {self.quality!r} is better when lower: set higher_is_better false")
        if self.quality == "accuracy" and self.kind != "binary":
            raise ValueError("quality 'accuracy' is a binary metric: set kind 'binary'")
        if self.margin_type == "relative" and self.margin >= 1:
            raise ValueError("a relative margin must be below 1 (e.g. 0.02 for 2%)")
        return self


class LatencySLO(Strict):
    """Share of requests slower than ``threshold_ms`` must be at most ``max_share``."""

    threshold_ms: float = Field(gt=0)
    max_share: float = Field(gt=0, lt=1)


class FailureGuardrail(Strict):
    """Share of challenger requests that may fail or overrun ``challenger_deadline_ms`` (the champion
    answers them); tested sequentially, it must be shown below ``max_share`` before a promotion."""

    max_share: float = Field(default=0.01, gt=0, lt=1)


class Guardrails(Strict):
    latency: LatencySLO | None = None
    failures: FailureGuardrail | None = Field(default_factory=FailureGuardrail,
                                              description="challenger failure-rate guardrail; null turns it off")
    cost_must_be_lower: bool = True


class RampStep(Strict):
    coverage: float = Field(gt=0, le=1, description="share of units in the experiment at this step")
    min_duration_s: int = Field(default=0, ge=0)
    min_sample: int = Field(default=0, ge=0, description="predictions per arm before moving on")


class Design(Strict):
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    power: float = Field(default=0.8, ge=0.5, lt=1)
    planned_n_per_arm: int = Field(default=20_000, ge=100, description="planned horizon per arm")
    method: Literal["asymptotic_cs", "msprt", "gsd_obf", "gsd_pocock", "fixed"] = "asymptotic_cs"


class Automation(Strict):
    ramp: bool = Field(default=False, description="advance the ramp when guardrails hold")
    promote: bool = Field(default=False, description="promote on PROMOTE without a person")
    rollback: bool = Field(default=False, description="roll back on REJECT or a guardrail alarm")
    futile: Literal["none", "stop", "rollback"] = Field(
        default="none", description="on FUTILE: keep running (none), stop the experiment, or roll back")


class Caching(Strict):
    champion: bool = False
    challenger: bool = False


class ExperimentDefinition(Strict):
    """Everything an experiment needs.  Weights are fractions; they are stored in basis points."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$", description="unique, lowercase, used by the SDK")
    description: str = Field(default="", max_length=2000)
    mode: Literal["ab", "shadow"]
    champion: Policy
    challenger: Policy
    unit: Literal["unit_id", "request"] = Field(default="unit_id", description="what assignment sticks to")
    weights: tuple[float, float] = Field(default=(0.5, 0.5), description="champion, challenger share (A/B)")
    coverage: float = Field(default=1.0, ge=0, le=1, description="share of units in the experiment")
    shadow_sample: float = Field(default=1.0, gt=0, le=1, description="share of in-experiment requests the challenger scores (shadow)")
    ramp: list[RampStep] = Field(default_factory=list, max_length=20)
    metric: Metric
    guardrails: Guardrails = Field(default_factory=Guardrails)
    design: Design = Field(default_factory=Design)
    automation: Automation = Field(default_factory=Automation)
    cache: Caching = Field(default_factory=Caching)
    challenger_deadline_ms: float | None = Field(default=None, gt=0, le=60_000)
    webhook_url: HttpUrl | None = None

    @field_validator("weights")
    @classmethod
    def _weights_sum_to_one(cls, value: tuple[float, float]) -> tuple[float, float]:
        if any(w < 0 for w in value):
            raise ValueError("weights must be >= 0")
        if abs(sum(value) - 1.0) > 1e-9:
            raise ValueError(f"weights must sum to 1, got {sum(value):g}")
        return value

    @field_validator("ramp")
    @classmethod
    def _ramp_increases(cls, steps: list[RampStep]) -> list[RampStep]:
        for before, after in zip(steps, steps[1:]):
            if after.coverage <= before.coverage:
                raise ValueError("ramp coverage must strictly increase from step to step")
        return steps

    @property
    def weights_bp(self) -> list[int]:
        champion = round(self.weights[0] * BUCKETS)
        return [champion, BUCKETS - champion]

    @property
    def initial_coverage_bp(self) -> int:
        return round((self.ramp[0].coverage if self.ramp else self.coverage) * BUCKETS)


class DefinitionPatch(Strict):
    """Fields that may change while the experiment is still a draft (all optional)."""

    description: str | None = Field(default=None, max_length=2000)
    champion: Policy | None = None
    challenger: Policy | None = None
    unit: Literal["unit_id", "request"] | None = None
    weights: tuple[float, float] | None = None
    coverage: float | None = Field(default=None, ge=0, le=1)
    shadow_sample: float | None = Field(default=None, gt=0, le=1)
    ramp: list[RampStep] | None = None
    metric: Metric | None = None
    guardrails: Guardrails | None = None
    design: Design | None = None
    automation: Automation | None = None
    cache: Caching | None = None
    challenger_deadline_ms: float | None = Field(default=None, gt=0, le=60_000)
    webhook_url: HttpUrl | None = None


def policy_models(policy: ModelPolicy | CascadePolicy) -> list[str]:
    """Model refs a policy uses, the primary (scoring) model first."""
    return [policy.model] if isinstance(policy, ModelPolicy) else [policy.cheap, policy.fallback]
