"""Deterministic, sticky assignment of a unit to an arm.

The rule is shared with the SDK and pinned by ``shared/vectors/assignment.json``:
``bucket = int.from_bytes(sha256(utf8(salt + ':' + unit_id)).digest()[:8], 'big') % 10000``; arm
``i`` owns buckets ``[S_i, S_i + coverage_bp * w_i // 10000)`` with ``S_i`` the sum of the earlier
weights.  Raising coverage only adds buckets to each arm, so nobody already assigned moves;
changing weights or the salt re-buckets everyone, which is why it starts a new phase.
"""

from __future__ import annotations

from hashlib import sha256

BUCKETS = 10_000


def bucket(salt: str, unit_id: str) -> int:
    """The unit's bucket in [0, 10000)."""
    return int.from_bytes(sha256(f"{salt}:{unit_id}".encode("utf-8")).digest()[:8], "big") % BUCKETS


def arm_ranges(weights_bp: list[int] | tuple[int, ...], coverage_bp: int) -> list[tuple[int, int]]:
    """Each arm's half-open bucket range at this coverage."""
    ranges, start = [], 0
    for weight in weights_bp:
        ranges.append((start, start + coverage_bp * weight // BUCKETS))
        start += weight
    return ranges


def arm_for_bucket(b: int, weights_bp: list[int] | tuple[int, ...], coverage_bp: int) -> int | None:
    """Index of the arm owning bucket ``b``, or None when the bucket is outside the experiment."""
    start = 0
    for index, weight in enumerate(weights_bp):
        if start <= b < start + coverage_bp * weight // BUCKETS:
            return index
        start += weight
    return None


def assign(salt: str, unit_id: str, weights_bp: list[int] | tuple[int, ...], coverage_bp: int) -> int | None:
    """Arm index for ``unit_id``, or None (outside coverage: the default policy, not an exposure)."""
    return arm_for_bucket(bucket(salt, unit_id), weights_bp, coverage_bp)


def validate_weights(weights_bp: list[int]) -> None:
    if any(w < 0 for w in weights_bp) or sum(weights_bp) != BUCKETS:
        raise ValueError(f"weights_bp must be non-negative integers summing to {BUCKETS}, got {weights_bp}")
