"""The HTTP surface: one blueprint per concept, all registered here."""

from __future__ import annotations

from flask_openapi3 import OpenAPI


def register_blueprints(app: OpenAPI) -> None:
    from service.api import analyses, experiments, health, metrics, models, outcomes, plan, predict, sdk
    from service.app import multipart_endpoint

    for blueprint in (health.bp, models.bp, experiments.bp, analyses.bp, predict.bp, outcomes.bp, sdk.bp, metrics.bp, plan.bp):
        app.register_api(blueprint)
    multipart_endpoint("models.register_model")
