"""The hot path: a well-formed ``POST /v1/predict`` answered without Flask's request machinery.

``POST /v1/predict`` is the one route on every user request, and Flask's per-request work (request
and app contexts, hooks, signals, the OpenAPI view wrapper, the JSON provider) cost more CPU than
routing and inference together (benchmarks/serving.py, docs/architecture.md).  This WSGI layer
answers the happy path with the same parts the Flask view uses — the bearer-key
:class:`~service.auth.Authenticator`, the ``PredictRequest`` model, the router — and hands every
other request, *including any request it cannot answer*, to the Flask app unchanged (the body is
re-wrapped), so every error still comes from the one error handler and the one OpenAPI contract.
Nothing is recorded before the router has accepted a request, so a hand-over never logs twice.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from typing import Any, Callable, Iterable

from pydantic import ValidationError

from service.api.schemas import check_json_tree
from service.errors import FrugalError
from service.prometheus import observe_request

PATH = "/v1/predict"
log = logging.getLogger(__name__)


class PredictFastPath:
    def __init__(self, flask_wsgi: Callable, runtime: Any) -> None:
        from service.api.predict import PredictRequest, request_id_for
        from service.routing.runtime import router

        self._request_model, self._router = PredictRequest, router  # resolved once, not per request
        self._request_id_for = request_id_for
        self._next = flask_wsgi
        self._runtime = runtime
        self._lock = threading.Lock()
        self.answered = 0      # counters for tests and for docs/architecture.md's claim
        self.handed_over = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self._next(environ, start_response)
        started = time.perf_counter()
        body = self._read_body(environ)
        if body is not None:
            answer = self._answer(environ, body, started)
            if answer is not None:
                with self._lock:
                    self.answered += 1
                observe_request("POST", PATH, 200, time.perf_counter() - started)
                start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
                return [answer]
            environ["wsgi.input"] = io.BytesIO(body)  # Flask reads the same bytes and says what is wrong
        with self._lock:
            self.handed_over += 1
        return self._next(environ, start_response)

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

    def _answer(self, environ: dict[str, Any], body: bytes, started: float) -> bytes | None:
        rt = self._runtime
        try:
            key = rt.auth.authenticate(environ.get("HTTP_AUTHORIZATION"))
            rt.auth.check_scope(key, "sdk")
            data = json.loads(body)
            check_json_tree(data)  # the same edge checks as Flask's (NUL, surrogates, depth)
            request = self._request_model.model_validate(data)
            rid = self._request_id_for(rt, key, request.request_id)
            answer = self._router(rt).predict(request.experiment, [(request.unit_id, request.features, rid)], started)[0]
        except (FrugalError, ValidationError, ValueError, TypeError, RecursionError):
            return None  # 401/403/404/422...: Flask answers it, with the problem+json the API promises
        except Exception:  # noqa: BLE001 - unexpected: Flask's handler logs it and answers a problem
            log.exception("fast path could not answer; handing the request to Flask")
            return None
        return json.dumps(answer.to_dict(), default=_plain).encode()


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
