"""The Frugal client: remote predictions, local assignment, outcome and event delivery."""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import threading
import time
import uuid
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from frugal_sdk import types as t
from frugal_sdk._assignment import arm_index, bucket
from frugal_sdk._ratelimit import RateLimitedLog
from frugal_sdk.errors import ApiError, DeadlineExceeded, FrugalError, NotReady, ServiceUnavailable, UnknownExperiment
from frugal_sdk.outbox import Outbox
from frugal_sdk.ruleset import RulesetCache
from frugal_sdk.transport import Response, Transport, TransportError, Urllib3Transport

log = logging.getLogger("frugal_sdk")
WARNING_INTERVAL_S = 60.0   # at most one fallback warning per reason a minute (the rest are counted in it)

_NO_FALLBACK = object()
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_CLIENTS: "weakref.WeakSet[Client]" = weakref.WeakSet()
_HOOKS_INSTALLED = False
_HOOKS_LOCK = threading.Lock()


class Client:
    """One per process (it is thread-safe); use it as a context manager or call :meth:`close`.

    Graceful by default: ``predict`` returns your ``fallback`` (a value, or a callable given the
    features) with ``fallback_reason`` set instead of raising; ``strict=True`` raises
    :class:`~frugal_sdk.errors.FrugalError` subclasses instead.  ``local=True`` (default) fetches
    the ruleset at construction, waiting at most ``init_timeout`` seconds, so :meth:`assign` works
    in-process; with the service down it uses ``ruleset_cache`` (the last good ruleset, written on
    every fetch) or ``bootstrap`` (a dict or a JSON file), else it assigns everyone the champion.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 1.0, transport: Transport | None = None,
                 strict: bool = False, fallback: Any = _NO_FALLBACK, local: bool = True, init_timeout: float = 1.0,
                 refresh_interval: float = 30.0, refresh_jitter: float = 0.1, ruleset_cache: str | Path | None = None,
                 bootstrap: str | Path | dict | None = None, buffer_size: int = 10_000, batch_size: int = 500,
                 flush_interval: float = 1.0, spool_path: str | Path | None = None, close_timeout: float = 5.0) -> None:
        if timeout <= 0 or init_timeout < 0 or refresh_interval <= 0 or buffer_size < 1 or not 1 <= batch_size <= 1000:
            raise ValueError("timeout and refresh_interval must be > 0, init_timeout >= 0, buffer_size >= 1, "
                             "1 <= batch_size <= 1000")
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                         "User-Agent": "frugal-sdk/0.1"}
        self.timeout = timeout
        self.strict = strict
        self._fallback = fallback
        self._close_timeout = close_timeout
        self._transport: Transport = transport or Urllib3Transport()
        self._closed = False
        self._stats_lock = threading.Lock()
        self._predict_counts = {"predictions": 0, "fallbacks": 0}
        self._warnings = RateLimitedLog(log, WARNING_INTERVAL_S)
        self._outbox = Outbox(self._post_delivery, capacity=buffer_size, batch_size=batch_size,
                              interval=flush_interval, timeout=timeout, spool_path=spool_path)
        self._rules = RulesetCache(self._get_ruleset, interval=refresh_interval, jitter=refresh_jitter,
                                   timeout=timeout, cache_path=ruleset_cache, bootstrap=bootstrap)
        self._local = local
        self._assignments: dict[tuple, tuple[Any, t.Assignment]] = {}
        _register(self)
        if local:
            self._rules.start(wait=init_timeout)
        if self._outbox.pending():
            self._outbox.ensure_thread()  # deliver what an earlier run spooled

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, timeout: float | None = None) -> None:
        """Stop the refresher and flush buffered outcomes and events (at most ``timeout`` seconds)."""
        if self._closed:
            return
        self._closed = True
        self._rules.stop()
        self._outbox.close(self._close_timeout if timeout is None else timeout)

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver everything buffered now.  True when nothing is left."""
        return self._outbox.flush(timeout)

    def _after_fork(self) -> None:
        self._transport.reset()
        self._stats_lock = threading.Lock()
        self._rules.after_fork()
        self._outbox.after_fork()
        if self._local and not self._closed:
            self._rules.ensure_thread()

    def stats(self) -> dict[str, Any]:
        """Counters that make every degradation visible: fallbacks, drops, ruleset age and errors."""
        with self._stats_lock:
            counts = dict(self._predict_counts)
        return {**counts, **self._outbox.stats(), "ruleset_version": self._rules.version,
                "ruleset_source": self._rules.source, "ruleset_stale": self._rules.stale,
                "ruleset_age_s": self._rules.age_s(), "ruleset_errors": self._rules.errors,
                "ruleset_not_modified": self._rules.not_modified,
                "ruleset_last_error": self._rules.last_error}

    @property
    def ready(self) -> bool:
        """True once a ruleset came from the service (not only from a cache file or bootstrap)."""
        return self._rules.fetched_at is not None

    # -- remote mode ----------------------------------------------------------------------------
    def predict(self, experiment: str, unit_id: str, features: dict[str, Any] | Sequence[Any], *,
                request_id: str | None = None, deadline: float | None = None, fallback: Any = _NO_FALLBACK) -> t.Prediction:
        """Route one request through ``experiment`` on the service.  ``deadline`` (seconds, default the
        client's ``timeout``) bounds the whole call; past it the fallback answers."""
        request_id = request_id or uuid.uuid4().hex
        body = {"experiment": experiment, "unit_id": str(unit_id), "features": features, "request_id": request_id}
        started = time.perf_counter()
        try:
            answer = self._call("POST", "/v1/predict", body, deadline or self.timeout)
        except FrugalError as exc:
            return self._fall_back(exc, [(request_id, features)], started, fallback)[0]
        self._count(1, 0)
        return _prediction(answer, (time.perf_counter() - started) * 1000)

    def predict_batch(self, experiment: str, items: Iterable[tuple | dict[str, Any]], *, deadline: float | None = None,
                      fallback: Any = _NO_FALLBACK) -> list[t.Prediction]:
        """Many rows in one call.  ``items`` are ``(unit_id, features)`` / ``(unit_id, features, request_id)``
        tuples or dicts with those keys.  Answers come back in order."""
        rows = []
        for item in items:
            if isinstance(item, dict):
                unit_id, features, rid = item["unit_id"], item["features"], item.get("request_id")
            else:
                unit_id, features, rid = (tuple(item) + (None,))[:3]
            rows.append({"unit_id": str(unit_id), "features": features, "request_id": rid or uuid.uuid4().hex})
        started = time.perf_counter()
        try:
            answer = self._call("POST", "/v1/predict/batch", {"experiment": experiment, "items": rows},
                                deadline or self.timeout)
        except FrugalError as exc:
            return self._fall_back(exc, [(r["request_id"], r["features"]) for r in rows], started, fallback)
        self._count(len(rows), 0)
        elapsed = (time.perf_counter() - started) * 1000
        return [_prediction(a, elapsed) for a in answer["items"]]

    def _fall_back(self, exc: FrugalError, rows: list[tuple[str, Any]], started: float, fallback: Any) -> list[t.Prediction]:
        if self.strict:
            raise exc
        chosen = self._fallback if fallback is _NO_FALLBACK else fallback
        reason = ("sdk_deadline" if isinstance(exc, DeadlineExceeded) else
                  "sdk_refused" if isinstance(exc, ApiError) else "sdk_unavailable")
        self._warnings.warning(reason, "frugal predict fell back (%s): %s", reason, exc)
        out = []
        for request_id, features in rows:
            value = None if chosen is _NO_FALLBACK else chosen
            if callable(value):
                value = value(features)
            out.append(t.Prediction(request_id=request_id, arm=None, model_version=None, prediction=value,
                                    confidence=None, latency_ms=(time.perf_counter() - started) * 1000,
                                    fallback_reason=f"{reason}: {exc}", served_by="caller_fallback"))
        self._count(len(rows), len(rows))
        return out

    def _count(self, n: int, fallbacks: int) -> None:
        with self._stats_lock:
            self._predict_counts["predictions"] += n
            self._predict_counts["fallbacks"] += fallbacks

    # -- local mode -----------------------------------------------------------------------------
    def assign(self, experiment: str, unit_id: str) -> t.Assignment:
        """The arm for ``unit_id``, computed in-process from the cached ruleset (no network call)."""
        rules = self._rules
        rule = rules.rules.get(experiment)
        if rule is None:
            code = "PROVIDER_NOT_READY" if rules.version is None else "FLAG_NOT_FOUND"
            if self.strict:
                raise (NotReady if code == "PROVIDER_NOT_READY" else UnknownExperiment)(
                    f"no ruleset yet ({rules.last_error})" if code == "PROVIDER_NOT_READY"
                    else f"experiment {experiment!r} is not in ruleset {rules.version}")
            return t.Assignment(experiment, "champion", None, None, False, t.ERROR, code, rules.stale, rules.version)
        if rule.state != "running":
            return self._assignment(rule, rules, -1)
        weights = (10_000, 0) if rule.mode == "shadow" else rule.weights_bp
        index = arm_index(bucket(rule.salt, str(unit_id)), weights, rule.coverage_bp)
        return self._assignment(rule, rules, -2 if index is None else index)

    def _assignment(self, rule, rules: RulesetCache, index: int) -> t.Assignment:
        """The Assignment for (rule, outcome), built once and shared: it depends on the ruleset, not on the
        unit, so the per-call cost is the hash alone (index -1: not running, -2: outside coverage)."""
        stale, version = rules.stale, rules.version
        key = (id(rule), index, stale, version)
        cached = self._assignments.get(key)
        if cached is not None and cached[0] is rule:  # the rule is kept alive with it: its id is not reused
            return cached[1]
        if index == -1:
            arm = rule.served_arm
            a = t.Assignment(rule.name, arm, rule.policies.get(arm), rule.phase, False, t.DISABLED, None,
                             stale, version)
        elif index == -2:
            a = t.Assignment(rule.name, "champion", rule.policies.get("champion"), rule.phase, False, t.DEFAULT,
                             None, stale, version)
        else:
            arm = rule.arms[index]
            a = t.Assignment(rule.name, arm, rule.policies.get(arm), rule.phase, True, t.SPLIT, None,
                             stale, version)
        if len(self._assignments) > 4096:  # entries of old ruleset versions
            self._assignments.clear()
        self._assignments[key] = (rule, a)
        return a

    def log_prediction(self, experiment: str, unit_id: str, assignment: t.Assignment | str, model_version: str,
                       latency_ms: float, *, prediction: Any = None, confidence: float | None = None,
                       request_id: str | None = None, inference_ms: float | None = None) -> str:
        """Record a prediction your backend served itself for an assigned arm (exposure, latency,
        output).  Buffered and sent in the background; returns the request id to join outcomes to."""
        request_id = request_id or uuid.uuid4().hex
        arm = assignment.arm if isinstance(assignment, t.Assignment) else assignment
        phase = assignment.phase if isinstance(assignment, t.Assignment) else None
        problems = []
        if arm not in ("champion", "challenger"):
            problems.append(f"arm must be 'champion' or 'challenger', got {arm!r}")
        if not _REQUEST_ID.match(request_id):
            problems.append(f"request_id {request_id!r} must be 1-128 characters of A-Z a-z 0-9 . _ : @ / + = -")
        if not (isinstance(latency_ms, (int, float)) and math.isfinite(latency_ms) and latency_ms >= 0):
            problems.append(f"latency_ms must be a finite number >= 0, got {latency_ms!r}")
        if confidence is not None and not 0 <= confidence <= 1:
            problems.append(f"confidence must be in [0, 1], got {confidence!r}")
        if self._refuse(problems, "log_prediction"):
            return request_id
        event = {"request_id": request_id, "experiment": experiment, "unit_id": str(unit_id), "arm": arm,
                 "model_version": model_version, "latency_ms": float(latency_ms), "at": _now()}
        if phase is not None:
            event["phase"] = phase
        for key, value in (("prediction", prediction), ("confidence", confidence), ("inference_ms", inference_ms)):
            if value is not None:
                event[key] = value.item() if hasattr(value, "item") else value
        self._outbox.put("events", event)
        return request_id

    # -- outcomes -------------------------------------------------------------------------------
    def record_outcome(self, request_id: str, value: float, *, at: datetime | None = None) -> None:
        """Record what happened for a prediction (a label, a value, a 0/1 conversion).  Buffered,
        batched and retried in the background; never blocks on the network."""
        problems = []
        if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
            problems.append(f"request_id {request_id!r} must be 1-128 characters of A-Z a-z 0-9 . _ : @ / + = -")
        try:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"value must be a finite number, got {value!r}")
        if at is not None and at.tzinfo is None:
            problems.append("at must carry a time zone")
        if self._refuse(problems, "record_outcome"):
            return
        self._outbox.put("outcomes", {"request_id": request_id, "value": number,
                                      "at": (at or datetime.now(timezone.utc)).isoformat()})

    def _refuse(self, problems: list[str], what: str) -> bool:
        if not problems:
            return False
        if self.strict:
            raise ValueError(f"{what}: " + "; ".join(problems))
        self._outbox.count_invalid()
        log.error("frugal %s ignored an invalid item: %s", what, "; ".join(problems))
        return True

    # -- HTTP -----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any, timeout: float) -> Any:
        response = self._request(method, path, body, timeout)
        if response.status == 200:
            return json.loads(response.body)
        if response.status >= 500 or response.status == 429:
            raise ServiceUnavailable(f"{path} answered {response.status}")
        try:
            problem = json.loads(response.body)
        except ValueError:
            problem = {"detail": response.body[:200].decode("utf-8", "replace")}
        raise ApiError(response.status, problem if isinstance(problem, dict) else {"detail": str(problem)})

    def _request(self, method: str, path: str, body: Any, timeout: float, headers: dict[str, str] | None = None) -> Response:
        all_headers = dict(self._headers, **(headers or {}))
        payload = None
        if body is not None:
            payload = json.dumps(body, default=_json_default).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            return self._transport.request(method, self.base_url + path, headers=all_headers, body=payload, timeout=timeout)
        except TransportError as exc:
            raise (DeadlineExceeded if exc.timed_out else ServiceUnavailable)(str(exc)) from None

    def _get_ruleset(self, headers: dict[str, str], timeout: float) -> Response:
        try:
            return self._request("GET", "/v1/sdk/ruleset", None, timeout, headers)
        except FrugalError as exc:
            raise TransportError(str(exc)) from None

    def _post_delivery(self, kind: str, body: Any, timeout: float) -> Response:
        try:
            return self._request("POST", f"/v1/{kind}", body, timeout)
        except FrugalError as exc:
            raise TransportError(str(exc)) from None


def _prediction(answer: dict[str, Any], latency_ms: float) -> t.Prediction:
    return t.Prediction(request_id=answer["request_id"], arm=answer["arm"], model_version=answer["model_version"],
                        prediction=answer["prediction"], confidence=answer.get("confidence"),
                        latency_ms=latency_ms, fallback_reason=answer.get("fallback_reason"),
                        served_by=answer.get("served_by"), in_experiment=bool(answer.get("in_experiment")),
                        cache_hit=bool(answer.get("cache_hit")))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# -- process hooks: flush at exit, restart threads after fork -----------------------------------
def _register(client: Client) -> None:
    global _HOOKS_INSTALLED
    _CLIENTS.add(client)
    with _HOOKS_LOCK:
        if not _HOOKS_INSTALLED:
            atexit.register(_close_all)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_after_fork_all)
            _HOOKS_INSTALLED = True


def _close_all() -> None:
    for client in list(_CLIENTS):
        try:
            client.close()
        except Exception:  # noqa: BLE001 - never fail interpreter shutdown
            log.exception("frugal SDK close at exit failed")


def _after_fork_all() -> None:
    global _HOOKS_LOCK
    _HOOKS_LOCK = threading.Lock()
    for client in list(_CLIENTS):
        client._after_fork()
