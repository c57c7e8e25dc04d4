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
    ``ms`` 12.3 ms · ``usd`` $1,234.56 (``usd_small`` $0.0123 for per-unit costs; ``usd_sig`` money of any size:
    cents from $1 up, below $1 three significant digits, $0.000562, so a small amount never reads $0.00) ·
    ``count`` 12,345 · ``p`` a p-value (0.032, 4.1e-05) · ``days`` 3.5 days · ``duration`` seconds in words
    (45 s, 12 min, 5.2 h, 3.1 days) · ``mb`` 1.25 MB · ``text`` as is.  None or non-finite → "n/a".
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
    if kind == "usd_sig":
        sign, a = ("-" if x < 0 else ""), abs(x)
        if a == 0 or a >= 1:
            return f"{sign}${a:,.2f}"
        decimals = max(2, 2 - math.floor(math.log10(a)))  # three significant digits
        return f"{sign}${a:.{decimals}f}"
    if kind == "duration":
        if x < 90:
            return f"{x:.0f} s"
        if x < 90 * 60:
            return f"{x / 60:.0f} min"
        if x < 36 * 3600:
            return f"{x / 3600:.1f} h"
        return f"{x / 86_400:.1f} days"
    if kind == "mb":
        return f"{x:.2f} MB" if x < 100 else f"{x:,.0f} MB"
    if kind == "count":
        return f"{round(x):,}"
    if kind == "p":
        return f"{x:.2g}" if x < 0.001 else f"{x:.3f}"
    if kind == "days":
        return f"{x:.1f} days"
    raise ValueError(f"unknown format kind {kind!r}")
