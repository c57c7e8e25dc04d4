"""Browser sessions: paste an API key at /login; the key's id is kept in Flask's signed session cookie.

Every page that needs a reader goes through :func:`reader_required`: a bearer key (API clients) is
checked like on /v1 (401/403 problems); otherwise the session's key must still exist, be active and
have the read scope (admin implies it); with neither, the browser is sent to /login.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from typing import Callable
from urllib.parse import quote, urlsplit

from flask import Blueprint, Response, g, redirect, request, session
from flask.sessions import SecureCookieSessionInterface

from service.auth import deployment_secret, session_key
from service.errors import Forbidden, Unauthorized
from service.reports.render import page
from service.runtime import runtime
from service.store.keys import KeyRecord

bp = Blueprint("web_session", __name__)
SCOPE = "read"
SESSION_SECRET = "session_key"


class LazyCookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, skipped where no session can exist: the JSON API (/v1) never
    reads one, and a request without the cookie has none (Flask would build a signer per request)."""

    def get_signing_serializer(self, app):
        if not app.secret_key:
            # FRUGAL_SECRET_KEY unset: one key for the whole deployment, made once and kept in the
            # database, so a cookie signed by one replica is valid on every other.
            app.secret_key = runtime().lazy("session_secret", lambda: deployment_secret(runtime().db, SESSION_SECRET))
        return super().get_signing_serializer(app)

    def open_session(self, app, request):
        if request.path.startswith("/v1/") or self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def html(body: str, status: int = 200) -> Response:
    response = Response(body, status=status, mimetype="text/html")
    # Pages are server-rendered with inline CSS and SVG: nothing else may load or run.
    response.headers["Content-Security-Policy"] = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                                   "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def current_reader() -> KeyRecord | None:
    """The key behind this request (bearer header first, then the session), or None when there is neither."""
    rt = runtime()
    header = request.headers.get("Authorization")
    if header:
        key = rt.auth.authenticate(header)
        rt.auth.check_scope(key, SCOPE)
        return key
    key_id = session.get("key_id")
    if not isinstance(key_id, int):
        return None
    key = session_key(rt.db, key_id)
    if key is None:  # revoked or deleted since login: the session ends
        session.clear()
        return None
    rt.auth.check_scope(key, SCOPE)
    return key


def reader_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        key = current_reader()
        if key is None:
            return redirect("/login?next=" + quote(request.full_path.rstrip("?"), safe="/"))
        g.api_key = key
        return view(*args, **kwargs)

    return wrapper


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never //host or a scheme: no open redirect)."""
    if not target:
        return "/dashboard"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/dashboard"
    return target


def csrf_token() -> str:
    """This browser's CSRF token, kept in the signed session cookie: a form posted from another site
    cannot carry it, so it cannot log a browser in with someone else's key, or out."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _csrf_ok() -> bool:
    sent, kept = request.form.get("csrf") or "", session.get("csrf")
    return isinstance(kept, str) and hmac.compare_digest(sent.encode(), kept.encode())


_EXPIRED = "the form has expired or did not come from this site: reload the page and try again"


@bp.get("/login")
def login_form():
    return html(page("login.html", error=None, next=_safe_next(request.args.get("next")), reader=None, csrf=csrf_token()))


@bp.post("/login")
def login():
    secret = (request.form.get("key") or "").strip()
    target = _safe_next(request.form.get("next"))
    if not _csrf_ok():
        return html(page("login.html", error=_EXPIRED, next=target, reader=None, csrf=csrf_token()), status=403)
    try:
        key = runtime().auth.authenticate(f"Bearer {secret}" if secret else None)
        runtime().auth.check_scope(key, SCOPE)
    except (Unauthorized, Forbidden) as exc:
        return html(page("login.html", error=exc.detail, next=target, reader=None, csrf=csrf_token()), status=exc.status)
    session.clear()
    session["key_id"] = key.id
    session["csrf"] = secrets.token_urlsafe(32)  # a new token for the new session
    return redirect(target)


@bp.post("/logout")
def logout():
    """POST only, with the session's CSRF token (a link or an image on another site cannot log you out)."""
    if not _csrf_ok():
        return html(page("login.html", error=_EXPIRED, next="/dashboard", reader=None, csrf=csrf_token()), status=403)
    session.clear()
    return redirect("/login")
