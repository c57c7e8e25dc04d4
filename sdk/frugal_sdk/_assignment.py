"""The assignment rule, byte for byte the service's (pinned by shared/vectors/assignment.json).

``bucket = int.from_bytes(sha256(utf8(salt + ':' + unit_id)).digest()[:8], 'big') % 10000``; arm
``i`` owns buckets ``[S_i, S_i + coverage_bp * w_i // 10000)`` with ``S_i`` the sum of the earlier
weights.  A bucket in no range is outside the experiment: the champion, and not an exposure.
"""

from __future__ import annotations

from hashlib import sha256

BUCKETS = 10_000


def bucket(salt: str, unit_id: str) -> int:
    return int.from_bytes(sha256(f"{salt}:{unit_id}".encode("utf-8")).digest()[:8], "big") % BUCKETS


def arm_index(b: int, weights_bp: tuple[int, ...], coverage_bp: int) -> int | None:
    start = 0
    for index, weight in enumerate(weights_bp):
        if start <= b < start + coverage_bp * weight // BUCKETS:
            return index
        start += weight
    return None
