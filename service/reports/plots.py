"""Report plots: matplotlib (Agg, no pyplot state) to SVG strings that are inlined in the HTML.

matplotlib is imported inside the functions, so importing this module costs nothing and touches no file.
Text stays text in the SVG (``svg.fonttype = none``): it is searchable, small and prints sharply.
"""

from __future__ import annotations

import io
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
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


MIN_SPAN = timedelta(hours=1)   # a time axis spans at least this much: one point is not stretched over years


def _dates(ax, moments: list[datetime]) -> None:
    """A date axis over ``moments`` (at least ``MIN_SPAN`` wide, centred on them when they are closer)."""
    import matplotlib.dates as mdates

    low, high = min(moments), max(moments)
    if high - low < MIN_SPAN:
        middle = low + (high - low) / 2
        low, high = middle - MIN_SPAN / 2, middle + MIN_SPAN / 2
    else:
        pad = (high - low) * 0.03
        low, high = low - pad, high + pad
    ax.set_xlim(low, high)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def empty(message: str) -> str:
    """No data, no figure: the page says ``message`` in its place (a sentence, not an empty plot)."""
    from markupsafe import escape

    return f'<p class="explain noplot">{escape(message)}.</p>'


def confidence_sequence(points: list[HistoryPoint], threshold: float | None, *, since: datetime | None = None,
                        until: datetime | None = None) -> str:
    """The always-valid interval of the quality difference at each analysis, its lower bound against -margin."""
    shown = [p for p in points if p.lower is not None]
    if not shown:
        return empty("no quality bound yet: too few outcomes")
    fig, ax = _figure()
    x = [p.at for p in shown]
    lower = [p.lower for p in shown]
    upper = [p.upper if p.upper is not None and math.isfinite(p.upper) else math.nan for p in shown]
    estimates = [p.estimate if p.estimate is not None else math.nan for p in shown]
    if len(shown) > 1:
        ax.fill_between(x, lower, upper, color=COLORS["bound"], alpha=0.12, step="post", label="confidence sequence")
        ax.step(x, lower, where="post", color=COLORS["bound"], linewidth=1.6, label="lower bound")
    else:  # one analysis: its interval as a bar (a band needs two)
        top = upper[0] if math.isfinite(upper[0]) else lower[0]
        ax.vlines(x, lower, [top], color=COLORS["bound"], linewidth=6, alpha=0.3, label="confidence interval")
        ax.plot(x, lower, "_", color=COLORS["bound"], markersize=14, markeredgewidth=2, label="lower bound")
    ax.plot(x, estimates, "o", color="#333333", markersize=2.5, label="estimate")
    if threshold is not None:
        ax.axhline(threshold, color=COLORS["margin"], linestyle="--", linewidth=1.2, label=f"margin ({threshold:+.4f})")
    ax.axhline(0, color="#999999", linewidth=0.6)
    if since is not None and until is not None and x[0] < since:
        ax.axvspan(since, min(until, x[-1]), color="#f3f3f3", zorder=0)
    _style(ax, "Quality difference (challenger − champion) over time")
    _dates(ax, x)
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


def traffic(buckets: list[Bucket], end: datetime | None = None) -> str:
    """Cumulative predictions per arm (hourly roll-up buckets), drawn up to ``end`` (the analysis)."""
    if not buckets:
        return empty("no traffic yet")
    import numpy as np

    fig, ax = _figure()
    moments: list[datetime] = []
    for arm, (x, y) in _per_arm(buckets, lambda b: (b.start, b.predictions)).items():
        if x:
            total = list(np.cumsum(y))
            last = max(end or x[-1], x[-1])
            ax.step(x + [last], total + total[-1:], where="post", color=COLORS[arm], linewidth=1.6, label=arm)
            moments += x + [last]
    ax.set_ylabel("predictions (cumulative)")
    ax.set_ylim(bottom=0)
    _style(ax, "Cumulative traffic per arm")
    _dates(ax, moments)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def cost(buckets: list[Bucket]) -> str:
    """Cost per 1M predictions per arm over time (USD, the roll-ups' per-request costs): per hour, or per day
    once the data spans three days."""
    costed = [b for b in buckets if b.predictions > 0]
    if not costed:
        return empty("no costed predictions yet")
    fig, ax = _figure()
    daily = max(b.start for b in costed) - min(b.start for b in costed) >= timedelta(days=3)
    key = (lambda b: b.start.replace(hour=0, minute=0, second=0, microsecond=0)) if daily else (lambda b: b.start)
    moments: list[datetime] = []
    for arm in ARMS:
        sums: dict[datetime, list[float]] = defaultdict(lambda: [0.0, 0])
        for b in costed:
            if b.arm == arm:
                sums[key(b)][0] += b.cost
                sums[key(b)][1] += b.predictions
        x = sorted(sums)
        if x:
            ax.plot(x, [sums[k][0] / sums[k][1] * 1e6 for k in x], marker="o", markersize=3, color=COLORS[arm],
                    linewidth=1.4, label=arm)
            moments += x
    ax.set_ylabel("USD per 1M predictions")
    ax.set_ylim(bottom=0)
    _style(ax, f"Cost per 1M predictions, per {'day' if daily else 'hour'}")
    _dates(ax, moments)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


@dataclass(frozen=True)
class ParetoPoint:
    """One model (or arm) on the quality / cost plane, with its p95 latency."""

    label: str
    quality: float
    cost_per_1m: float
    p95_ms: float | None


def frontier(points: list[ParetoPoint], higher_is_better: bool = True) -> set[str]:
    """Labels of the points no other point beats on both quality and cost (cheaper)."""
    sign = 1.0 if higher_is_better else -1.0
    return {p.label for p in points
            if not any(sign * q.quality >= sign * p.quality and q.cost_per_1m <= p.cost_per_1m
                       and (sign * q.quality > sign * p.quality or q.cost_per_1m < p.cost_per_1m) for q in points)}


def pareto(points: list[ParetoPoint], quality_name: str = "quality", higher_is_better: bool = True) -> str:
    """Quality against cost per 1M predictions (log scale), each point labelled with its p95 latency; the
    frontier (no point both better and cheaper) joined by a line."""
    shown = [p for p in points if math.isfinite(p.quality) and p.cost_per_1m > 0]
    if not shown:
        return empty("no model with both a quality and a cost yet")
    fig, ax = _figure()
    best = frontier(shown, higher_is_better)
    line = sorted((p for p in shown if p.label in best), key=lambda p: p.cost_per_1m)
    if len(line) > 1:
        ax.plot([p.cost_per_1m for p in line], [p.quality for p in line], color="#999999", linewidth=1, zorder=1,
                label="frontier")
    palette = ["#4c6a92", "#d9822b", "#1e7b4f", "#b03a2e", "#7a5195", "#555555"]
    for i, p in enumerate(shown):
        color = COLORS.get(p.label.split(" ")[0], palette[i % len(palette)])
        ax.scatter([p.cost_per_1m], [p.quality], s=36, color=color, zorder=2,
                   edgecolors="black" if p.label in best else "none")
        latency = f", p95 {p.p95_ms:.2f} ms" if p.p95_ms is not None else ""
        ax.annotate(f"{p.label}{latency}", (p.cost_per_1m, p.quality), textcoords="offset points", xytext=(6, 4),
                    fontsize=7)
    ax.set_xscale("log")
    costs = [p.cost_per_1m for p in shown]
    ax.set_xlim(min(costs) / 2.5, max(costs) * 4)   # room for the labels
    qualities = [p.quality for p in shown]
    spread = max(max(qualities) - min(qualities), 0.01)
    ax.set_ylim(min(qualities) - spread * 0.5, max(qualities) + spread * 0.5)
    ax.set_xlabel("USD per 1M predictions (log scale)")
    ax.set_ylabel(quality_name)
    _style(ax, "Quality against cost (outlined: on the frontier)")
    return _svg(fig)
