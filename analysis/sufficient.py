"""Sufficient statistics that add.

Every test in :mod:`analysis` works on these summaries rather than on raw rows, so the same
code serves a 100-row unit test and a roll-up of 10^8 predictions (the approach of GrowthBook's
gbstats).  Adding two summaries gives the summary of the union of their samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = ["Moments"]


@dataclass(frozen=True, slots=True)
class Moments:
    """Count, sum and sum of squares of a sample.

    A binary metric is the special case where every value is 0 or 1 (then ``sum == sum_sq``).
    A paired comparison stores the moments of the per-request differences.
    """

    n: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        if not (math.isfinite(self.sum) and math.isfinite(self.sum_sq)):
            raise ValueError("sum and sum_sq must be finite")
        if self.sum_sq < 0:
            raise ValueError(f"sum_sq must be >= 0, got {self.sum_sq}")

    @classmethod
    def from_values(cls, values: Iterable[float] | np.ndarray) -> "Moments":
        """Summarise an array of observations."""
        arr = np.asarray(values, dtype=float)
        if arr.ndim != 1:
            raise ValueError("values must be one-dimensional")
        if not np.all(np.isfinite(arr)):
            raise ValueError("values must be finite")
        return cls(int(arr.size), float(arr.sum()), float(np.dot(arr, arr)))

    @classmethod
    def from_binary(cls, successes: int, n: int) -> "Moments":
        """Summarise ``successes`` ones among ``n`` binary observations."""
        if not 0 <= successes <= n:
            raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
        return cls(int(n), float(successes), float(successes))

    def __add__(self, other: "Moments") -> "Moments":
        if not isinstance(other, Moments):
            return NotImplemented
        return Moments(self.n + other.n, self.sum + other.sum, self.sum_sq + other.sum_sq)

    @property
    def mean(self) -> float:
        """Sample mean (NaN when empty)."""
        return self.sum / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """Unbiased sample variance (ddof=1); NaN with fewer than two observations."""
        if self.n < 2:
            return math.nan
        # Clamp tiny negative values from floating-point cancellation.
        return max((self.sum_sq - self.sum * self.sum / self.n) / (self.n - 1), 0.0)

    @property
    def population_variance(self) -> float:
        """Variance with ddof=0 (the MLE); for a binary metric this is p(1-p)."""
        if self.n < 1:
            return math.nan
        return max(self.sum_sq / self.n - self.mean**2, 0.0)

    def to_dict(self) -> dict[str, float]:
        return {"n": self.n, "sum": self.sum, "sum_sq": self.sum_sq}

    @classmethod
    def from_dict(cls, data: dict) -> "Moments":
        return cls(int(data["n"]), float(data["sum"]), float(data["sum_sq"]))
