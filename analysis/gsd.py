"""Group sequential designs: Lan–DeMets error spending with boundaries from recursive integration.

The z statistics at looks k = 1..K with information fractions t_k follow the canonical joint
distribution (Jennison & Turnbull 2000, ch. 3): Z_k = S_k / sqrt(t_k) where S is a Brownian motion
with drift theta, so Z_k ~ N(theta sqrt(t_k), 1) and Cov(Z_j, Z_k) = sqrt(t_j / t_k).  Crossing
probabilities come from the Armitage–McPherson–Rowe recursion: the sub-density of Z_k on the
continuation region is propagated look to look by numerical integration (Simpson's rule on a fine
grid), and each boundary is solved so that the probability of first crossing at look k equals the
alpha the spending function releases there.  A two-sided design of total alpha spends alpha/2 per side with the one-sided function (the
convention of gsDesign and rpact).  Any information fractions are allowed, and the
boundary at a look depends only on the looks before it, so unplanned look times are fine.

Spending functions (cumulative alpha at fraction t):

* ``obf``    Lan–DeMets O'Brien–Fleming type: 2 (1 - Phi(Phi^-1(1 - a/2) / sqrt(t))).
* ``pocock`` Lan–DeMets Pocock type: a ln(1 + (e - 1) t).
* ``power``  a t^rho (Kim & DeMets; rho = 2 is Spotify's default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np
from scipy import optimize, stats

__all__ = ["spent", "GroupSequentialDesign", "design", "constant_boundaries", "crossing_probabilities",
           "drift_for_power", "planned_fractions"]

Spending = Literal["obf", "pocock", "power"]

_GRID = 801          # Simpson points per look (odd)
_TAIL = 9.0          # z-scale truncation of an open side
_MAX_Z = 40.0


def spent(kind: Spending, alpha: float, t: float | np.ndarray, rho: float = 2.0) -> np.ndarray | float:
    """Cumulative alpha spent at information fraction t (capped at alpha for t >= 1)."""
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        if kind == "obf":
            out = np.where(t > 0, 2 * stats.norm.sf(stats.norm.isf(alpha / 2) / np.sqrt(np.maximum(t, 1e-300))), 0.0)
        elif kind == "pocock":
            out = alpha * np.log1p((math.e - 1) * t)
        elif kind == "power":
            out = alpha * t**rho
        else:
            raise ValueError(f"unknown spending function {kind!r}")
    out = np.where(t >= 1, alpha, out)
    return out if out.ndim else float(out)


def _simpson_weights(m: int, h: float) -> np.ndarray:
    w = np.ones(m)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return w * h / 3


class _Recursion:
    """Sub-density of the current look's Z on its continuation region, on a Simpson grid."""

    def __init__(self, drift: float, grid: int = _GRID) -> None:
        self.grid = grid
        self.drift = drift  # theta with the final information normalised to 1: E[Z_k] = drift sqrt(t_k)
        self.t: float | None = None
        self.z = self.w = self.g = None

    def _moments(self, t_next: float) -> tuple[np.ndarray, float, float]:
        """For each grid point u: mean of Z_next * sqrt(t_next), and the increment's sd."""
        delta = t_next - self.t
        return self.z * math.sqrt(self.t) + self.drift * delta, math.sqrt(delta), math.sqrt(t_next)

    def cross_upper(self, b: float, t_next: float) -> float:
        if self.t is None:
            return float(stats.norm.sf(b - self.drift * math.sqrt(t_next)))
        mean, sd, st = self._moments(t_next)
        return float(np.dot(self.w * self.g, stats.norm.sf((b * st - mean) / sd)))

    def cross_lower(self, a: float, t_next: float) -> float:
        if self.t is None:
            return float(stats.norm.cdf(a - self.drift * math.sqrt(t_next)))
        mean, sd, st = self._moments(t_next)
        return float(np.dot(self.w * self.g, stats.norm.cdf((a * st - mean) / sd)))

    def advance(self, a: float, b: float, t_next: float) -> None:
        centre = self.drift * math.sqrt(t_next)
        lo, hi = max(a, centre - _TAIL), min(b, centre + _TAIL)
        if hi <= lo:
            hi = lo + 1e-9
        z = np.linspace(lo, hi, self.grid)
        w = _simpson_weights(self.grid, (hi - lo) / (self.grid - 1))
        if self.t is None:
            g = stats.norm.pdf(z - centre)
        else:
            mean, sd, st = self._moments(t_next)
            x = (z[:, None] * st - mean[None, :]) / sd
            kernel = np.exp(-0.5 * x * x) * (st / (sd * math.sqrt(2 * math.pi)))
            g = kernel @ (self.w * self.g)
        self.t, self.z, self.w, self.g = t_next, z, w, g


def _validate_fractions(fractions: Sequence[float]) -> np.ndarray:
    t = np.asarray(fractions, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise ValueError("need at least one information fraction")
    if np.any(t <= 0) or np.any(t > 1 + 1e-12) or np.any(np.diff(t) <= 0):
        raise ValueError("information fractions must be increasing in (0, 1]")
    return np.minimum(t, 1.0)


def crossing_probabilities(upper: Sequence[float], fractions: Sequence[float], lower: Sequence[float] | None = None,
                           drift: float = 0.0, grid: int = _GRID) -> tuple[np.ndarray, np.ndarray]:
    """Probability of first crossing the upper (and lower) boundary at each look.

    ``lower=None`` means no lower boundary (one-sided).  ``drift`` = theta sqrt(I_max).  ``grid``
    (odd) is the Simpson points per look; a coarser grid serves many-look power calculations.
    """
    t = _validate_fractions(fractions)
    b = np.asarray(upper, dtype=float)
    a = np.full_like(b, -np.inf) if lower is None else np.asarray(lower, dtype=float)
    rec = _Recursion(drift, grid)
    up, down = np.zeros(t.size), np.zeros(t.size)
    for k in range(t.size):
        up[k] = rec.cross_upper(b[k], t[k])
        down[k] = rec.cross_lower(a[k], t[k]) if np.isfinite(a[k]) else 0.0
        rec.advance(a[k], b[k], t[k])
    return up, down


@dataclass(frozen=True)
class GroupSequentialDesign:
    fractions: tuple[float, ...]
    upper: tuple[float, ...]            # efficacy boundary on the z scale
    lower: tuple[float, ...] | None     # -upper for two-sided designs, futility bounds, or None
    alpha: float
    sides: int
    spending: str
    cumulative_alpha: tuple[float, ...]
    futility: bool = False

    def to_dict(self) -> dict:
        return {"fractions": list(self.fractions), "upper": list(self.upper),
                "lower": None if self.lower is None else list(self.lower), "alpha": self.alpha, "sides": self.sides,
                "spending": self.spending, "cumulative_alpha": list(self.cumulative_alpha), "futility": self.futility}


def _solve(f, target: float) -> float:
    if target <= 1e-15:
        return _MAX_Z
    if f(0.0) <= target:
        return 0.0
    return float(optimize.brentq(lambda x: f(x) - target, 0.0, _MAX_Z, xtol=1e-10))


def design(fractions: Sequence[float], alpha: float = 0.025, spending: Spending = "obf", *, sides: int = 1,
           rho: float = 2.0, beta: float | None = None, drift: float | None = None,
           beta_spending: Spending | None = None) -> GroupSequentialDesign:
    """See :func:`_design` (memoised: the decision asks for the same few designs again and again)."""
    return _design(tuple(float(f) for f in fractions), alpha, spending, sides, rho, beta, drift, beta_spending)


@lru_cache(maxsize=4096)
def _design(fractions: tuple[float, ...], alpha: float, spending: Spending, sides: int, rho: float,
            beta: float | None, drift: float | None, beta_spending: Spending | None) -> GroupSequentialDesign:
    """Efficacy boundaries for ``alpha`` (one-sided: upper only; two-sided: symmetric, alpha total).

    Fractions are of the *planned maximum* information: alpha (and beta) are spent over the planned
    maximum, so a design built from the looks reached so far (t < 1) has the same bounds at those looks
    as the full design; only a look at t >= 1 is final.

    With ``beta`` (and the alternative's ``drift`` = theta sqrt(I_max)) it adds non-binding futility
    bounds from beta spending (one-sided designs): efficacy bounds ignore futility, so stopping for
    futility never inflates alpha, and the futility bounds give P(stop for futility at or before
    look k | theta) = beta(t_k).  Only at the final look (t >= 1) is the futility bound the
    efficacy bound; an interim look keeps its beta-spending bound, below the efficacy bound.
    """
    if sides not in (1, 2):
        raise ValueError("sides must be 1 or 2")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    t = _validate_fractions(fractions)
    # two-sided: each side spends alpha/2 by the one-sided function (the gsDesign / rpact convention)
    per_side = np.asarray(spent(spending, alpha / sides, t, rho), dtype=float)
    cum = per_side * sides
    rec = _Recursion(0.0)
    upper: list[float] = []
    for k in range(t.size):
        target = per_side[k] - (per_side[k - 1] if k else 0.0)
        b = _solve(lambda x: rec.cross_upper(x, t[k]), target)
        upper.append(b)
        rec.advance(-b if sides == 2 else -np.inf, b, t[k])
    lower: list[float] | None = [-b for b in upper] if sides == 2 else None
    with_futility = beta is not None
    if with_futility:
        if sides != 1 or drift is None:
            raise ValueError("futility bounds need a one-sided design and the alternative's drift")
        beta_cum = np.asarray(spent(beta_spending or spending, beta, t, rho), dtype=float)
        alt = _Recursion(drift)
        lower = []
        for k in range(t.size):
            increment = beta_cum[k] - (beta_cum[k - 1] if k else 0.0)
            if t[k] >= 1.0 - 1e-12:
                a = upper[k]
            elif increment <= 1e-15:
                a = -_MAX_Z
            else:
                f = lambda x: alt.cross_lower(x, t[k])  # noqa: E731
                a = float(optimize.brentq(lambda x: f(x) - increment, -_MAX_Z, upper[k], xtol=1e-10)) \
                    if f(upper[k]) > increment else upper[k]
            a = min(a, upper[k])
            lower.append(a)
            alt.advance(a, upper[k], t[k])
    return GroupSequentialDesign(tuple(float(x) for x in t), tuple(upper), None if lower is None else tuple(lower),
                                 alpha, sides, spending, tuple(float(c) for c in cum), with_futility)


def planned_fractions(looks: int) -> tuple[float, ...]:
    """Equally spaced planned looks k / K."""
    if looks < 1:
        raise ValueError("need at least one look")
    return tuple(k / looks for k in range(1, looks + 1))


def _power(fractions: tuple[float, ...], alpha: float, spending: Spending, power: float, drift: float,
           futility: bool) -> float:
    if futility:
        d = design(fractions, alpha, spending, sides=1, beta=1 - power, drift=drift)
    else:
        d = design(fractions, alpha, spending, sides=1)
    up, _ = crossing_probabilities(d.upper, fractions, d.lower, drift=drift)
    return float(up.sum())


@lru_cache(maxsize=256)
def drift_for_power(fractions: tuple[float, ...], alpha: float, spending: Spending, power: float, *,
                    futility: bool = True) -> float:
    """The drift theta sqrt(I_max) at which the design reaches ``power``.

    With ``futility`` the design's non-binding futility bounds (beta spending at that same drift)
    are counted as stops, as the decision applies them: a run that crosses a futility bound first
    does not show non-inferiority, even if it would have crossed the efficacy bound later.  The
    planner sizes the maximum sample from this drift and the decision builds its futility bounds
    from it, so the two agree.
    """
    fixed = float(stats.norm.isf(alpha) + stats.norm.isf(1 - power))
    f = lambda x: _power(tuple(fractions), alpha, spending, power, x, futility) - power  # noqa: E731
    hi = fixed + 1.0
    while f(hi) < 0:
        hi += 1.0
    return float(optimize.brentq(f, fixed - 0.5, hi, xtol=1e-7))


def constant_boundaries(fractions: Sequence[float], alpha: float, *, sides: int = 2,
                        kind: Literal["pocock", "obf"] = "pocock") -> tuple[float, np.ndarray]:
    """Classical Pocock (c_k = C) or O'Brien–Fleming (c_k = C sqrt(t_K / t_k)) boundaries whose
    overall type I error is alpha; returns C and the boundaries."""
    t = _validate_fractions(fractions)
    shape = np.ones(t.size) if kind == "pocock" else np.sqrt(t[-1] / t)

    def level(c: float) -> float:
        bounds = c * shape
        up, down = crossing_probabilities(bounds, t, -bounds if sides == 2 else None)
        return float(up.sum() + down.sum())

    c = float(optimize.brentq(lambda c: level(c) - alpha, 0.5, 10.0, xtol=1e-10))
    return c, c * shape
