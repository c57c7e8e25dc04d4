"""Route-level scope declarations.  Every /v1 view is wrapped by :func:`requires`.

Authentication runs in :func:`authenticate_request`, a ``before_request`` hook, so a request without
a valid key is answered 401/403 before its body is parsed or validated (an anonymous caller learns
nothing about the route's schema).  The wrapper re-checks, in case a view is ever called otherwise."""

from __future__ import annotations

import functools
from typing import Callable

from flask import current_app, g, request

from service.runtime import runtime

BEARER = [{"bearer": []}]


def requires(scope: str) -> Callable:
    """Authenticate the bearer key and require ``scope`` (admin implies every scope)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if getattr(g, "api_scope_checked", None) != scope:
                _check(scope)
            return view(*args, **kwargs)

        wrapper.required_scope = scope  # read by the auth-matrix test and docs
        return wrapper

    return decorate


def _check(scope: str) -> None:
    rt = runtime()
    key = rt.auth.authenticate(request.headers.get("Authorization"))
    rt.auth.check_scope(key, scope)
    g.api_key = key
    g.api_scope_checked = scope


def authenticate_request() -> None:
    """``before_request``: authenticate routes that declare a scope, before anything else."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    scope = getattr(view, "required_scope", None)
    if scope is not None:
        _check(scope)


def actor() -> str:
    key = getattr(g, "api_key", None)
    return f"key:{key.prefix}" if key else "anonymous"
