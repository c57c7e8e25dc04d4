"""Route-level scope declarations.  Every /v1 view is wrapped by :func:`requires`."""

from __future__ import annotations

import functools
from typing import Callable

from flask import g, request

from service.runtime import runtime

BEARER = [{"bearer": []}]


def requires(scope: str) -> Callable:
    """Authenticate the bearer key and require ``scope`` (admin implies every scope)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            rt = runtime()
            key = rt.auth.authenticate(request.headers.get("Authorization"))
            rt.auth.check_scope(key, scope)
            g.api_key = key
            return view(*args, **kwargs)

        wrapper.required_scope = scope  # read by the auth-matrix test and docs
        return wrapper

    return decorate


def actor() -> str:
    key = getattr(g, "api_key", None)
    return f"key:{key.prefix}" if key else "anonymous"
