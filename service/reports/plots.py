"""Report plots: matplotlib (Agg, no pyplot state) to SVG strings that are inlined in the HTML.

matplotlib is imported inside the functions, so importing this module costs nothing and touches no file.
Text stays text in the SVG (``svg.fonttype = none``): it is searchable, small and prints sharply.
"""

from __future__ import annotations

import io
import math
import re
from collections import defaultdict
from datetime import datetime
from typing import Any

from service.reports.gather import ARMS, Bucket, HistoryPoint

COLORS = {"champion": "#4c6a92", "challenger": "#d9822b", "margin": "#b03a2e", "bound": "#1e7b4f"}
WIDTH, HEIGHT = 6.4, 2.6


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _svg(fig) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "frugal", "font.size": 8}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prologue and doctype: the SVG is inlined in HTML


def scoped_ids(svg: str, prefix: str) -> str:
    """Prefix every id (and every reference to one) so several SVGs can share one HTML page: matplotlib
    numbers its elements from 1 in each figure."""
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', svg)


def _style(ax, title: str) -> None:
    ax.set_title(title, loc="left", fontsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)


def _dates(ax) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def empty(message: str) -> str:
    fig, ax = _figure()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", color="#666666")
    return _svg(fig)


def confidence_sequence(points: list[HistoryPoint], threshold: float | None, *, since: datetime | None = None,
                        until: datetime | None = None) -> str:
    """The always-valid interval of the quality difference at each analysis, its lower bound against -margin."""
    shown = [p for p in points if p.lower is not None]
    if not shown:
        return empty("no quality bound yet: too few outcomes")
    fig, ax = _figure()
    x = [p.at for p in shown]
    lower = [p.lower for p in shown]
    upper = [p.upper if p.upper is not None else math.nan for p in shown]
    ax.fill_between(x, lower, upper, color=COLORS["bound"], alpha=0.12, step="post", label="confidence sequence")
    ax.step(x, lower, where="post", color=COLORS["bound"], linewidth=1.6, label="lower bound")
    estimates = [p.estimate if p.estimate is not None else math.nan for p in shown]
    ax.plot(x, estimates, "o", color="#333333", markersize=2.5, label="estimate")
    if threshold is not None:
        ax.axhline(threshold, color=COLORS["margin"], linestyle="--", linewidth=1.2, label=f"margin ({threshold:+.4f})")
    ax.axhline(0, color="#999999", linewidth=0.6)
    if since is not None and until is not None and x[0] < since:
        ax.axvspan(since, min(until, x[-1]), color="#f3f3f3", zorder=0)
    _style(ax, "Quality difference (challenger − champion) over time")
    _dates(ax)
    fig.legend(loc="outside lower center", fontsize=7, frameon=False, ncols=4)  # below the axes: never over the bound
    return _svg(fig)


def _sketch_points(sketch: dict[str, Any]) -> tuple[list[float], list[int]]:
    """(representative latency, count) per sketch bin: bin k holds (gamma^(k-1), gamma^k]."""
    accuracy = float(sketch.get("relative_accuracy") or 0.01)
    gamma = (1 + accuracy) / (1 - accuracy)
    bins = sorted((int(k), int(c)) for k, c in (sketch.get("bins") or {}).items())
    return [2 * gamma**k / (gamma + 1) for k, _ in bins], [c for _, c in bins]


def latency(sketches: dict[str, dict[str, Any]], threshold_ms: float | None) -> str:
    """Latency distribution per arm (share of requests per log-spaced bin), the SLO threshold marked."""
    if not any((s or {}).get("bins") for s in sketches.values()):
        return empty("no latency measurements yet")
    import numpy as np

    fig, ax = _figure()
    every = [v for s in sketches.values() if s for v in _sketch_points(s)[0]]
    edges = np.geomspace(max(min(every) / 1.2, 1e-3), max(every) * 1.2, 40)
    for arm in ARMS:
        values, counts = _sketch_points(sketches.get(arm) or {})
        if values:
            hist, _ = np.histogram(values, bins=edges, weights=counts)
            ax.stairs(hist / max(sum(counts), 1), edges, color=COLORS[arm], linewidth=1.4, label=arm)
    if threshold_ms is not None:
        ax.axvline(threshold_ms, color=COLORS["margin"], linestyle="--", linewidth=1.2, label=f"SLO {threshold_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of requests")
    _style(ax, "Latency distribution per arm")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def _per_arm(buckets: list[Bucket], value) -> dict[str, tuple[list[datetime], list[float]]]:
    series: dict[str, dict[datetime, float]] = {arm: defaultdict(float) for arm in ARMS}
    for b in buckets:
        series[b.arm][value(b)[0]] += value(b)[1]
    return {arm: (sorted(s), [s[k] for k in sorted(s)]) for arm, s in series.items()}


def traffic(buckets: list[Bucket]) -> str:
    """Cumulative predictions per arm (hourly roll-up buckets)."""
    if not buckets:
        return empty("no traffic yet")
    import numpy as np

    fig, ax = _figure()
    for arm, (x, y) in _per_arm(buckets, lambda b: (b.start, b.predictions)).items():
        if x:
            ax.step(x, np.cumsum(y), where="post", color=COLORS[arm], linewidth=1.6, label=arm)
    ax.set_ylabel("predictions (cumulative)")
    _style(ax, "Cumulative traffic per arm")
    _dates(ax)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def cost(buckets: list[Bucket]) -> str:
    """Cost per day per arm (USD, from the roll-ups' per-request costs)."""
    if not buckets:
        return empty("no costed predictions yet")
    fig, ax = _figure()
    daily = _per_arm(buckets, lambda b: (b.start.replace(hour=0, minute=0, second=0, microsecond=0), b.cost))
    for arm, (x, y) in daily.items():
        if x:
            ax.plot(x, y, marker="o", markersize=3, color=COLORS[arm], linewidth=1.4, label=arm)
    ax.set_ylabel("USD per day")
    ax.set_ylim(bottom=0)
    _style(ax, "Cost over time")
    _dates(ax)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)
