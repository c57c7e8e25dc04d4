"""The HTML pages for people: /login, /reports and /dashboard (server-rendered, no JavaScript).

These are not /v1 API routes and are not in the OpenAPI document.  They accept a bearer key like the
API, or a browser session opened at /login; errors still go through ``service.api.problems``.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from service.web import dashboard, reports, session

    for module in (session, reports, dashboard):
        app.register_blueprint(module.bp)
