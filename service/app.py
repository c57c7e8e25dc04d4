"""The application factory: the only place the Flask app is assembled."""

from __future__ import annotations

import json

from flask import Flask, Response, redirect, request
from flask_openapi3 import Info, OpenAPI
from werkzeug.exceptions import BadRequest

from service import __version__
from service.api import problems
from service.api.schemas import MAX_JSON_DEPTH, check_json_tree
from service.errors import BadRequest as BadRequestError
from service.errors import MalformedJSON, UnsupportedMediaType
from service.logs import configure_logging
from service.runtime import Runtime
from service.settings import Settings, load_settings

_BODY_METHODS = {"POST", "PUT", "PATCH"}


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app.  Settings are read and validated here, once; nothing connects yet."""
    settings = settings or load_settings()
    configure_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    app = OpenAPI(
        "service",
        info=Info(title="Frugal", version=__version__, description=_DESCRIPTION),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "description": "A Frugal API key"}},
        validation_error_status=422,
        validation_error_callback=problems.openapi_validation_callback,
        doc_prefix="/docs",
        doc_url="/openapi.json",
    )
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        SECRET_KEY=settings.secret_key,  # unset: the deployment's key from the database, on first use (web/session.py)
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_NAME="frugal_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
    )
    app.extensions["frugal"] = Runtime(settings)
    from service.web.session import LazyCookieSessions

    app.session_interface = LazyCookieSessions()

    from service.worker.celery_app import make_celery

    make_celery(app)  # configures the client side only: nothing connects until a task is sent
    problems.register(app)
    from service.api.auth import authenticate_request

    from service.api.observe import finish_request, start_request

    app.before_request(start_request)         # request id and timer first: every answer is counted and logged with it
    app.after_request(finish_request)
    app.before_request(_check_url)
    app.before_request(authenticate_request)  # 401/403 before the body is even looked at
    app.before_request(_check_body)
    _register_routes(app)
    _document_problems(app)
    app.add_url_rule("/openapi.json", "openapi_json", lambda: Response(json.dumps(app.api_doc), mimetype="application/json"))
    app.add_url_rule("/docs", "docs_root", lambda: redirect("/docs/swagger"))
    from service.api.fastpath import PredictFastPath

    app.wsgi_app = PredictFastPath(app.wsgi_app, app.extensions["frugal"])  # the hot route (see its docstring)
    return app


def _register_routes(app: OpenAPI) -> None:
    from service.api import register_blueprints

    register_blueprints(app)
    from service import web

    web.register(app)  # the HTML pages for people (/login, /reports, /dashboard): not in the OpenAPI document


def _document_problems(app: OpenAPI) -> None:
    generate = app.generate_spec_json

    def generate_with_problems() -> None:
        generate()
        problems.document_problems(app.spec_json)

    app.generate_spec_json = generate_with_problems


def _check_body() -> None:
    """Refuse a body that is not JSON where JSON is expected, before any view runs."""
    if request.method not in _BODY_METHODS or not request.path.startswith("/v1/"):
        return
    if not request.content_length and not request.headers.get("Transfer-Encoding"):
        return  # no body: actions such as /start take an optional one
    mimetype = request.mimetype
    if mimetype == "multipart/form-data" and request.endpoint in _MULTIPART_ENDPOINTS:
        request.max_content_length = runtime_settings().max_upload_bytes
        return
    if mimetype != "application/json":
        raise UnsupportedMediaType(
            f"send the body as application/json (got {mimetype or 'no Content-Type'})"
        )
    try:  # parsed once here and cached on the request: the view's validation reuses it
        data = request.get_json(force=True, cache=True)
    except BadRequest as exc:
        raise MalformedJSON(f"the body is not valid JSON: {exc.description}") from None
    except RecursionError:
        raise MalformedJSON(f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    check_json_tree(data)


def _check_url() -> None:
    """A NUL character in the path or the query is no name, id or value anything stores: 400."""
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
        raise BadRequestError("the URL contains a NUL character (%00); remove it")


_MULTIPART_ENDPOINTS: set[str] = set()


def multipart_endpoint(endpoint: str) -> None:
    """Mark an endpoint as taking multipart uploads (and the larger upload size limit)."""
    _MULTIPART_ENDPOINTS.add(endpoint)


def runtime_settings() -> Settings:
    from service.runtime import runtime

    return runtime().settings


_DESCRIPTION = """Frugal proves a cheaper ML model is good enough, then ships it.

Authenticate with `Authorization: Bearer <key>` (create keys with `frugal keys create`).
Errors are RFC 9457 `application/problem+json`."""
