"""A mergeable latency sketch with bounded relative error (the DDSketch idea).

Values fall in logarithmic buckets ``(gamma^(i-1), gamma^i]`` with ``gamma = (1+a)/(1-a)``: any
quantile read from the sketch is within relative error ``a`` of the true order statistic of the same
rank (Masson, Rim & Lee, "DDSketch", VLDB 2019).  Two sketches add exactly (bucket counts add), so
hourly roll-ups merge into a phase total without losing the guarantee.

Intervals for a quantile use the distribution-free order-statistic interval (ranks from the
binomial distribution), widened to the outer edges of the buckets that hold those ranks, so the
interval is conservative despite the bucketing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from scipy import stats

__all__ = ["LatencySketch", "QuantileEstimate"]

DEFAULT_RELATIVE_ACCURACY = 0.01
MIN_VALUE = 1e-6  # values at or below this (ms) are counted in the zero bucket


@dataclass(frozen=True, slots=True)
class QuantileEstimate:
    q: float
    value: float
    lower: float
    upper: float
    n: int

    def to_dict(self) -> dict[str, float | list[float] | int]:
        return {"q": self.q, "value": self.value, "ci": [self.lower, self.upper], "n": self.n}


@dataclass
class LatencySketch:
    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    zero: int = 0
    bins: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.relative_accuracy < 1:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {self.relative_accuracy}")

    @property
    def gamma(self) -> float:
        return (1 + self.relative_accuracy) / (1 - self.relative_accuracy)

    @property
    def count(self) -> int:
        return self.zero + sum(self.bins.values())

    def _index(self, value: float) -> int:
        return math.ceil(math.log(value) / math.log(self.gamma))

    def add(self, value: float, count: int = 1) -> None:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"latency must be finite and >= 0, got {value}")
        if value <= MIN_VALUE:
            self.zero += count
        else:
            i = self._index(value)
            self.bins[i] = self.bins.get(i, 0) + count

    def add_many(self, values: Iterable[float] | np.ndarray) -> None:
        arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
        if arr.size == 0:
            return
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError("latencies must be finite and >= 0")
        small = arr <= MIN_VALUE
        self.zero += int(small.sum())
        idx = np.ceil(np.log(arr[~small]) / math.log(self.gamma)).astype(np.int64)
        keys, counts = np.unique(idx, return_counts=True)
        for k, c in zip(keys.tolist(), counts.tolist()):
            self.bins[k] = self.bins.get(k, 0) + c

    def __add__(self, other: "LatencySketch") -> "LatencySketch":
        if not isinstance(other, LatencySketch):
            return NotImplemented
        if not math.isclose(self.relative_accuracy, other.relative_accuracy):
            raise ValueError("cannot merge sketches with different relative accuracy")
        bins = dict(self.bins)
        for k, c in other.bins.items():
            bins[k] = bins.get(k, 0) + c
        return LatencySketch(self.relative_accuracy, self.zero + other.zero, bins)

    # -- reading -------------------------------------------------------------------------------

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.array(sorted(self.bins), dtype=np.int64)
        counts = np.array([self.bins[k] for k in keys.tolist()], dtype=np.int64)
        return keys, counts

    def _bucket_of_rank(self, rank: int) -> int | None:
        """Bucket index holding the ``rank``-th smallest value (1-based); None for the zero bucket."""
        if rank <= self.zero:
            return None
        keys, counts = self._sorted()
        pos = int(np.searchsorted(np.cumsum(counts), rank - self.zero))
        return int(keys[min(pos, keys.size - 1)])

    def _value(self, bucket: int | None) -> float:
        return 0.0 if bucket is None else 2 * self.gamma**bucket / (self.gamma + 1)

    def value_at_rank(self, rank: int) -> float:
        return self._value(self._bucket_of_rank(rank))

    def quantile(self, q: float) -> float:
        """The q-quantile (lower order statistic of rank ceil(q n)), within the relative accuracy."""
        n = self.count
        if n == 0:
            return math.nan
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1], got {q}")
        return self.value_at_rank(max(1, math.ceil(q * n)))

    def quantile_interval(self, q: float, confidence: float = 0.95) -> QuantileEstimate:
        """The quantile with a distribution-free interval (order statistics, binomial ranks)."""
        n = self.count
        if n == 0:
            return QuantileEstimate(q, math.nan, math.nan, math.nan, 0)
        a = 1 - confidence
        lo_rank = int(stats.binom.ppf(a / 2, n, q))
        hi_rank = int(stats.binom.ppf(1 - a / 2, n, q)) + 1
        lo_rank, hi_rank = max(lo_rank, 1), min(hi_rank, n)
        lo_bucket, hi_bucket = self._bucket_of_rank(lo_rank), self._bucket_of_rank(hi_rank)
        lower = 0.0 if lo_bucket is None else self.gamma ** (lo_bucket - 1)
        upper = MIN_VALUE if hi_bucket is None else self.gamma**hi_bucket
        return QuantileEstimate(q, self.quantile(q), lower, upper, n)

    def share_above(self, threshold: float) -> float:
        """Share of values above ``threshold`` (exact except within the threshold's own bucket)."""
        n = self.count
        if n == 0:
            return math.nan
        cut = self._index(threshold) if threshold > MIN_VALUE else None
        above = sum(c for k, c in self.bins.items() if cut is None or k > cut)
        return above / n

    # -- storage -------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"relative_accuracy": self.relative_accuracy, "zero": self.zero,
                "bins": {str(k): c for k, c in sorted(self.bins.items())}}

    @classmethod
    def from_dict(cls, data: dict) -> "LatencySketch":
        return cls(float(data.get("relative_accuracy", DEFAULT_RELATIVE_ACCURACY)), int(data.get("zero", 0)),
                   {int(k): int(v) for k, v in (data.get("bins") or {}).items()})
