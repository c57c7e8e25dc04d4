"""The one formatting filter every number on a report and the dashboard goes through.

Templates call ``value|fmt(kind)``; the report tests format the stored analysis with this same function and
compare strings, so a number on the page is exactly the stored one, rounded one documented way.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

MISSING = "n/a"


def fmt(value: Any, kind: str = "number") -> str:
    """Format ``value`` as ``kind``:

    ``number`` 0.9512 (4 decimals) · ``signed`` +0.0031 · ``percent`` 12.3% (value is a share) ·
    ``ms`` 12.3 ms · ``usd`` $1,234.56 (``usd_small`` $0.0123 for per-unit costs) · ``count`` 12,345 ·
    ``p`` a p-value (0.032, 4.1e-05) · ``days`` 3.5 days · ``text`` as is.  None or non-finite → "n/a".
    """
    if value is None:
        return MISSING
    if kind == "text":
        return str(value)
    if kind == "datetime":
        return value.strftime("%Y-%m-%d %H:%M %Z").strip() if isinstance(value, datetime) else str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(x):
        return MISSING
    if kind == "number":
        return f"{x:.4f}"
    if kind == "signed":
        return f"{x:+.4f}"
    if kind == "percent":
        return f"{100 * x:.1f}%"
    if kind == "ms":
        return f"{x:.1f} ms"
    if kind == "usd":
        return f"-${-x:,.2f}" if x < 0 else f"${x:,.2f}"
    if kind == "usd_small":
        return f"-${-x:,.4f}" if x < 0 else f"${x:,.4f}"
    if kind == "count":
        return f"{round(x):,}"
    if kind == "p":
        return f"{x:.2g}" if x < 0.001 else f"{x:.3f}"
    if kind == "days":
        return f"{x:.1f} days"
    raise ValueError(f"unknown format kind {kind!r}")
