"""Per-request observation: a request id bound to the logs, and the HTTP request metrics."""

from __future__ import annotations

import re
import time
import uuid

from flask import Response, g, request

from service.logs import request_id
from service.prometheus import observe_request

HEADER = "X-Request-ID"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")   # a caller's id is echoed only if it cannot forge a log line


def start_request() -> None:
    given = request.headers.get(HEADER, "")
    g.request_id = given if _SANE.match(given) else uuid.uuid4().hex
    g.request_token = request_id.set(g.request_id)
    g.request_started = time.perf_counter()


def finish_request(response: Response) -> Response:
    rid = g.get("request_id")
    if rid:
        response.headers.setdefault(HEADER, rid)
    started = g.get("request_started")
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"   # bounded label values
        observe_request(request.method, route, response.status_code, time.perf_counter() - started)
    token = g.pop("request_token", None)
    if token is not None:
        request_id.reset(token)
    return response
