"""A bounded LRU cache of predictions with a time to live, keyed by (model digest, canonical row).

A hit is recorded on the event (``cache_hit``) and costs nothing.  Rows are canonicalised by JSON
with sorted keys, so ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}`` are the same key; a list and an
object with the same values are not (the cache never guesses feature order).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0


class PredictionCache:
    """Thread-safe LRU with a TTL; ``size`` 0 disables it (every get misses without counting)."""

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._clock = clock
        self._items: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    @staticmethod
    def key(digest: str, row: Any) -> tuple[str, str]:
        return digest, json.dumps(row, sort_keys=True, separators=(",", ":"))

    def get(self, digest: str, row: Any) -> Any | None:
        """The cached value for this model and row, or None (absent or expired)."""
        if self.size <= 0:
            return None
        key = self.key(digest, row)
        now = self._clock()
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.stats.misses += 1
                return None
            expires, value = found
            if expires <= now:
                del self._items[key]
                self.stats.expirations += 1
                self.stats.misses += 1
                return None
            self._items.move_to_end(key)
            self.stats.hits += 1
            return value

    def put(self, digest: str, row: Any, value: Any) -> None:
        """Store a value (never None), evicting the least recently used entries beyond ``size``."""
        if self.size <= 0:
            return
        key = self.key(digest, row)
        with self._lock:
            self._items[key] = (self._clock() + self.ttl_s, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
                self.stats.evictions += 1

    def __len__(self) -> int:
        return len(self._items)
