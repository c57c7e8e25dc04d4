"""The predict routes, answered without Flask's request machinery.

``POST /v1/predict`` is the one route on every user request, and Flask's per-request work (request
and app contexts, hooks, signals, the OpenAPI view wrapper, the JSON provider) cost more CPU than
routing and inference together (benchmarks/serving.py, docs/architecture.md).  This WSGI layer
answers ``POST /v1/predict`` and ``POST /v1/predict/batch`` whole, success or error: the bearer-key
:class:`~service.auth.Authenticator`, the edge checks (``check_json_tree``), the request models and
the one function per route (``service.api.predict.answer_one`` / ``answer_batch``, which the Flask
views call too), and errors rendered by the one error mapping (``service.api.problems``), so a
problem is the same whichever entry answered it.  Nothing runs twice: the only requests handed to
Flask are those whose body it cannot read or parse (not application/json, chunked, too large,
malformed JSON), which Flask refuses before any view runs.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import uuid
from http import HTTPStatus
from typing import Any, Callable, Iterable

from pydantic import ValidationError

from service.api.problems import PROBLEM_JSON, problem_headers, problem_json, unexpected_error, validation_failed
from service.api.schemas import check_json_tree
from service.errors import FrugalError
from service.prometheus import observe_request

PATH = "/v1/predict"
BATCH_PATH = "/v1/predict/batch"
REQUEST_ID_HEADER = "HTTP_X_REQUEST_ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")   # as service.api.observe: echoed only if it cannot forge a log line
log = logging.getLogger(__name__)


class PredictFastPath:
    def __init__(self, flask_wsgi: Callable, runtime: Any) -> None:
        from service.api.predict import BatchRequest, PredictRequest, answer_batch, answer_one

        # resolved once, not per request: path -> (request model, the route's one function)
        self._routes = {PATH: (PredictRequest, answer_one), BATCH_PATH: (BatchRequest, answer_batch)}
        self._next = flask_wsgi
        self._runtime = runtime
        self._lock = threading.Lock()
        self.answered = 0      # counters for tests and for docs/architecture.md's claim
        self.handed_over = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        route = self._routes.get(path) if environ.get("REQUEST_METHOD") == "POST" else None
        if route is None:
            return self._next(environ, start_response)
        started = time.perf_counter()
        body = self._read_body(environ)
        data = _parse(body) if body is not None else None
        if data is None:
            if body is not None:
                environ["wsgi.input"] = io.BytesIO(body)  # Flask reads the same bytes and says what is wrong
            with self._lock:
                self.handed_over += 1
            return self._next(environ, start_response)
        status, payload, headers = self._respond(environ, route, data[0], started)
        given = environ.get(REQUEST_ID_HEADER, "")
        headers.append(("X-Request-ID", given if _SANE_ID.match(given) else uuid.uuid4().hex))
        headers.append(("Content-Length", str(len(payload))))
        with self._lock:
            self.answered += 1
        observe_request("POST", path, status, time.perf_counter() - started)
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [payload]

    def _read_body(self, environ: dict[str, Any]) -> bytes | None:
        """The JSON body when it can be read here; None hands the request over untouched."""
        if environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower() != "application/json":
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None
        if not 0 < length <= self._runtime.settings.max_request_bytes or environ.get("HTTP_TRANSFER_ENCODING"):
            return None
        return environ["wsgi.input"].read(length)

    def _respond(self, environ: dict[str, Any], route, data: Any,
                 started: float) -> tuple[int, bytes, list[tuple[str, str]]]:
        """(status, body, headers): the route's answer, or its problem, in the order Flask checks:
        the key (401/403) before the body, then the edge checks, the model, the route itself."""
        model, answer = route
        rt = self._runtime
        try:
            key = rt.auth.authenticate(environ.get("HTTP_AUTHORIZATION"))
            rt.auth.check_scope(key, "sdk")
            check_json_tree(data)  # the same edge checks as Flask's (NUL, surrogates, depth)
            try:
                request = model.model_validate(data)
            except ValidationError as exc:
                raise validation_failed(exc, where="body") from None
            return 200, json.dumps(answer(rt, key, request, started), default=_plain).encode(), \
                [("Content-Type", "application/json")]
        except FrugalError as exc:
            error = exc
        except Exception:  # noqa: BLE001 - unexpected: logged, and answered as Flask's handler would
            log.exception("unhandled error on POST %s", environ.get("PATH_INFO"))
            error = unexpected_error()
        return error.status, problem_json(error, environ.get("PATH_INFO")), \
            [("Content-Type", PROBLEM_JSON), *problem_headers(error)]


def _parse(body: bytes) -> tuple[Any] | None:
    """(the JSON value,), or None when it does not parse (Flask answers that 400 with its own words)."""
    try:
        return (json.loads(body),)
    except (ValueError, RecursionError):
        return None


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
