"""The prediction cache: bounded LRU, time to live, canonical keys, counted hits and misses."""

from __future__ import annotations

import threading

from service.inference.cache import PredictionCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_is_evicted_first():
    cache = PredictionCache(2, 60)
    cache.put("m", [1], "a")
    cache.put("m", [2], "b")
    assert cache.get("m", [1]) == "a"  # [2] is now the least recently used
    cache.put("m", [3], "c")
    assert cache.get("m", [2]) is None
    assert cache.get("m", [1]) == "a" and cache.get("m", [3]) == "c"
    assert len(cache) == 2
    assert (cache.stats.hits, cache.stats.misses, cache.stats.evictions) == (3, 1, 1)


def test_entries_expire_after_the_ttl():
    clock = Clock()
    cache = PredictionCache(10, 5.0, clock=clock)
    cache.put("m", {"x": 1}, (1, 0.9))
    clock.now += 4.9
    assert cache.get("m", {"x": 1}) == (1, 0.9)
    clock.now += 0.2
    assert cache.get("m", {"x": 1}) is None
    assert cache.stats.expirations == 1 and len(cache) == 0


def test_a_put_refreshes_the_ttl():
    clock = Clock()
    cache = PredictionCache(10, 5.0, clock=clock)
    cache.put("m", [1], "old")
    clock.now += 4
    cache.put("m", [1], "new")
    clock.now += 4
    assert cache.get("m", [1]) == "new"


def test_keys_are_canonical_and_per_model():
    cache = PredictionCache(10, 60)
    cache.put("m1", {"a": 1, "b": 2}, "v")
    assert cache.get("m1", {"b": 2, "a": 1}) == "v"
    assert cache.get("m2", {"a": 1, "b": 2}) is None  # another model's digest
    assert cache.get("m1", [1, 2]) is None           # a list is not guessed into names


def test_size_zero_disables_the_cache():
    cache = PredictionCache(0, 60)
    cache.put("m", [1], "v")
    assert cache.get("m", [1]) is None and len(cache) == 0


def test_concurrent_use_keeps_the_bound():
    cache = PredictionCache(50, 60)

    def worker(k: int) -> None:
        for i in range(500):
            cache.put("m", [k, i], i)
            cache.get("m", [k, i - 1])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 50
    assert cache.stats.evictions == 8 * 500 - 50
    assert cache.stats.hits + cache.stats.misses == 8 * 500
