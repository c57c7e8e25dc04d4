"""Is a derived model cheaper than its source on this host?  Both timed in one process, interleaved.

Two benchmarks run one after the other (or in two processes) on a shared host compare the host's
moments as much as the models: here a 30-tree ensemble measured dearer than the 300-tree one it was
cut from.  ``paired_cost`` runs the two sessions turn about, on the same row each round (which goes
first alternates), timing ``session.run`` in the thread's CPU time as serving does
(``service.inference.sessions.inference_clock``), and gives the ratio of mean CPU times with a 95%
interval from the rounds (delta method on the paired runs).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

WARM_RUNS = 20


@dataclass(frozen=True)
class CostRatio:
    """The derived model's mean CPU time per single-row run over its source's."""

    ratio: float
    low: float
    high: float
    rounds: int
    source_ms: float        # mean CPU ms per single-row run
    derived_ms: float

    @property
    def cheaper(self) -> bool:
        """Shown cheaper: the whole 95% interval is below 1."""
        return self.high < 1.0


def paired_cost(source: bytes, derived: bytes, source_signature: dict[str, Any], derived_signature: dict[str, Any],
                rows: list[list[float]], *, budget_s: float = 1.0, max_rounds: int = 20_000) -> CostRatio:
    """Time both models on single rows, turn about, for about ``budget_s`` seconds (at least 200 rounds)."""
    from service.inference.features import build_feed
    from service.inference.signature import load_session_from_bytes

    sessions = [load_session_from_bytes(source), load_session_from_bytes(derived)]
    feeds = [[build_feed(sig, [row]) for row in rows] for sig in (source_signature, derived_signature)]
    for k in range(WARM_RUNS):
        for s, f in zip(sessions, feeds):
            s.run(None, f[k % len(rows)])
    times: list[list[float]] = [[], []]
    clock = time.thread_time
    give_up = time.perf_counter() + budget_s
    k = 0
    while k < max_rounds and (k < 200 or time.perf_counter() < give_up):
        order = (0, 1) if k % 2 == 0 else (1, 0)
        for i in order:
            feed = feeds[i][k % len(rows)]
            started = clock()
            sessions[i].run(None, feed)
            times[i].append(clock() - started)
        k += 1
    a, b = np.asarray(times[0]), np.asarray(times[1])
    ratio = float(b.mean() / a.mean())
    se = float(np.std(b - ratio * a, ddof=1) / (math.sqrt(len(a)) * a.mean()))
    return CostRatio(ratio, ratio - 1.96 * se, ratio + 1.96 * se, len(a), float(a.mean() * 1000), float(b.mean() * 1000))
