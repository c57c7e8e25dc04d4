"""The ruleset for local assignment: fetched at start with a bounded wait, refreshed in the
background (ETag / 304, jittered interval, stale-while-error), with a bootstrap for cold starts.

Assignment never makes a network call: it reads the last good ruleset from memory.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from frugal_sdk.transport import Response, TransportError

log = logging.getLogger("frugal_sdk")


@dataclass(frozen=True)
class Rule:
    name: str
    state: str
    mode: str
    unit: str
    phase: int
    salt: str
    coverage_bp: int
    arms: tuple[str, ...]
    weights_bp: tuple[int, ...]
    policies: dict[str, dict[str, Any]]
    served_arm: str

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> "Rule":
        arms = raw["arms"]
        return cls(name=raw["name"], state=raw["state"], mode=raw["mode"], unit=raw.get("unit", "unit"),
                   phase=int(raw["phase"]), salt=raw["salt"], coverage_bp=int(raw["coverage_bp"]),
                   arms=tuple(a["name"] for a in arms), weights_bp=tuple(int(a["weight_bp"]) for a in arms),
                   policies={a["name"]: a["policy"] for a in arms}, served_arm=raw.get("served_arm", "champion"))


def parse(body: dict[str, Any]) -> tuple[str, dict[str, Rule]]:
    """Validate a ruleset document; raises ValueError naming what is wrong."""
    try:
        version = str(body["version"])
        rules = {r.name: r for r in (Rule.from_wire(e) for e in body["experiments"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a Frugal ruleset: {type(exc).__name__}: {exc}") from None
    return version, rules


class RulesetCache:
    """Holds the current rules; a daemon thread keeps them fresh."""

    def __init__(self, fetch: Callable[[dict[str, str], float], Response], *, interval: float, jitter: float,
                 timeout: float, cache_path: str | Path | None, bootstrap: str | Path | dict | None) -> None:
        self._fetch = fetch
        self._interval, self._jitter, self._timeout = interval, jitter, timeout
        self._cache_path = Path(cache_path) if cache_path else None
        self._bootstrap = bootstrap
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.version: str | None = None
        self.etag: str | None = None
        self.rules: dict[str, Rule] = {}
        self.source = "none"          # "service", "cache_file", "bootstrap" or "none"
        self.stale = False
        self.fetched_at: float | None = None
        self.errors = 0
        self.not_modified = 0
        self.last_error: str | None = None
        self.ready = threading.Event()
        self._failing_since: float | None = None
        self._last_warned = 0.0

    # -- start and refresh ----------------------------------------------------------------------
    def start(self, wait: float) -> None:
        """Fetch once, waiting at most ``wait`` seconds; then fall back to the cache file or bootstrap."""
        if not self.refresh(timeout=wait):
            self._load_cold_start()
        self.ensure_thread()

    def ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="frugal-sdk-ruleset", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None  # threads do not survive a fork: the next call restarts it

    def _loop(self) -> None:
        while not self._stop.wait(self._interval * (1 + random.uniform(-self._jitter, self._jitter))):
            self.refresh(timeout=self._timeout)

    def refresh(self, timeout: float) -> bool:
        """One conditional GET.  True when the rules are current; on failure the old rules stay."""
        headers = {"If-None-Match": self.etag} if self.etag else {}
        try:
            response = self._fetch(headers, timeout)
            if response.status == 304:
                self.not_modified += 1
                self._mark_fresh()
                return True
            if response.status != 200:
                raise TransportError(f"ruleset request answered {response.status}: {response.body[:200]!r}")
            body = json.loads(response.body)
            version, rules = parse(body)
        except (TransportError, ValueError) as exc:
            with self._lock:
                self.errors += 1
                self.last_error = str(exc)
                self.stale = self.version is not None
                first = self._failing_since is None
                if first:
                    self._failing_since = time.monotonic()
            if first or time.monotonic() - self._last_warned > 300:  # once per outage, then every 5 minutes
                self._last_warned = time.monotonic()
                log.warning("frugal ruleset refresh failed (%s); keeping %s", exc,
                            f"version {self.version} from {self.source}" if self.version else "defaults")
            return False
        with self._lock:
            self.version, self.rules, self.source = version, rules, "service"
            self.etag = response.headers.get("etag")
        self._mark_fresh()
        self._save(body)
        return True

    def _mark_fresh(self) -> None:
        if self._failing_since is not None:
            log.warning("frugal ruleset refresh works again after %.0f s", time.monotonic() - self._failing_since)
        with self._lock:
            self._failing_since = None
            self.stale = False
            self.fetched_at = time.monotonic()
        self.ready.set()

    # -- cold start -----------------------------------------------------------------------------
    def _load_cold_start(self) -> None:
        candidates: list[tuple[str, Any]] = []
        if self._cache_path is not None and self._cache_path.exists():
            candidates.append(("cache_file", self._cache_path))
        if self._bootstrap is not None:
            candidates.append(("bootstrap", self._bootstrap))
        for source, value in candidates:
            try:
                body = value if isinstance(value, dict) else json.loads(Path(value).read_text())
                version, rules = parse(body)
            except (OSError, ValueError) as exc:
                log.warning("frugal ruleset %s %s unusable: %s", source, value if source != "bootstrap" else "", exc)
                continue
            with self._lock:
                if self.version is None:  # a refresh may have won the race meanwhile
                    self.version, self.rules, self.source, self.stale = version, rules, source, True
            self.ready.set()
            log.warning("frugal service unreachable at start: assigning from the %s ruleset (version %s)", source, version)
            return
        log.warning("frugal service unreachable at start and no bootstrap: every assignment is the champion until it answers")

    def _save(self, body: dict[str, Any]) -> None:
        if self._cache_path is None:
            return
        try:  # atomic replace: a crash never leaves half a file for the next cold start
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._cache_path.parent, prefix=".ruleset-")
            with os.fdopen(fd, "w") as f:
                json.dump(body, f)
            os.replace(tmp, self._cache_path)
        except OSError as exc:
            log.warning("cannot write the ruleset cache %s: %s", self._cache_path, exc)

    def age_s(self) -> float | None:
        return None if self.fetched_at is None else time.monotonic() - self.fetched_at
