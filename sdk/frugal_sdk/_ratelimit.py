"""Rate-limited warnings: during an outage every request falls back, and one warning per request
would flood the caller's logs.  The first occurrence of each kind is logged at once; later ones are
counted and summed into one line per ``interval`` seconds."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval: float = 60.0, clock=time.monotonic) -> None:
        self._log, self._interval, self._clock = logger, interval, clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was logged less than ``interval`` ago; True if logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            skipped = self._suppressed.pop(key, 0)
        if skipped:
            self._log.warning(message + " (and %d more like it in the last %.0f s)", *args, skipped, self._interval)
        else:
            self._log.warning(message, *args)
        return True
