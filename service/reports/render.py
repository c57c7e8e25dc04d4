"""HTML from Jinja2 templates (``service/templates``), PDF from that HTML with WeasyPrint.

One environment renders the stored reports, the dashboard and the login page, so every number goes
through the one ``fmt`` filter.  Nothing is built at import time.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup

from service.errors import NotImplementedHere
from service.reports.format import fmt
from service.reports.gather import ReportData

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@functools.cache
def environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["local"] = local_time
    env.globals["metric"] = metric
    env.globals["policy"] = policy
    env.globals["csrf_token"] = _csrf_token
    return env


def metric(data: ReportData, name: str) -> Markup:
    """A number from the report data, formatted, tagged with ``data-metric`` so tests and readers can find it."""
    kind = data.kinds.get(name, "number")
    return Markup('<span class="num" data-metric="{}">{}</span>').format(name, fmt(data.metrics.get(name), kind))


def policy(definition: dict[str, Any]) -> str:
    """An arm's policy in words: its model, or the cascade's two models."""
    if definition.get("kind") == "cascade":
        return f"cascade {definition['cheap']} (fallback {definition['fallback']})"
    return str(definition.get("model"))


def local_time(moment: datetime | None, tz: str, spec: str = "%a %d %b %H:%M") -> str:
    if moment is None:
        return "n/a"
    if moment.tzinfo is None:  # SQLite gives timestamps back naive; they are UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(ZoneInfo(tz)).strftime(spec)


def _csrf_token() -> str:
    from service.web.session import csrf_token

    return csrf_token()


def page(template: str, **context: Any) -> str:
    """Render one template of ``service/templates``."""
    return environment().get_template(template).render(**context)


def pareto_points(data: ReportData) -> list:
    """The experiment's two arms on the quality / cost plane (the stored analysis' means, p95 latency)."""
    from service.reports.plots import ParetoPoint

    points = []
    for arm in ("champion", "challenger"):
        quality, cost = data.metrics.get(f"quality.{arm}"), data.metrics.get(f"cost.{arm}_per_1m")
        if quality is not None and cost is not None:
            points.append(ParetoPoint(arm, float(quality), float(cost), data.metrics.get(f"latency.{arm}.p95")))
    return points


def experiment_plots(data: ReportData) -> dict[str, Markup]:
    """The plots of an experiment's report, as inline SVG (or, without data, a sentence saying what is missing)."""
    from service.reports import plots

    threshold = data.metrics.get("quality.threshold")
    end = data.analysis.created_at if data.analysis else None
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    metric_definition = data.experiment.definition.get("metric") or {}
    quality_name = str(metric_definition.get("quality") or "quality")
    higher = metric_definition.get("higher_is_better", True) is not False
    svgs = {
        "confidence": plots.confidence_sequence(data.history, threshold, since=data.since, until=data.until),
        "latency": plots.latency(data.sketches, data.metrics.get("latency.slo_threshold")),
        "traffic": plots.traffic(data.buckets, end),
        "cost": plots.cost(data.buckets),
        "pareto": plots.pareto(pareto_points(data), f"{quality_name} (mean)", higher),
    }
    return {name: Markup(plots.scoped_ids(svg, name)) for name, svg in svgs.items()}


def write_pdf(html: str, path: Path) -> Path:
    """Render ``html`` to a PDF file at ``path`` (print stylesheet applies)."""
    try:
        from weasyprint import HTML
    except ImportError:  # pragma: no cover - the pdf extra is part of every install the Makefile and Dockerfile make
        raise NotImplementedHere("PDF reports need WeasyPrint: pip install 'frugal[pdf]' (and pango)") from None

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pdf.tmp")
    log = logging.getLogger("weasyprint")
    level = log.level
    log.setLevel(logging.ERROR)  # it warns once per SVG presentation attribute that its CSS pass skips (its SVG pass draws them)
    try:
        HTML(string=html, base_url=str(TEMPLATES)).write_pdf(tmp)
    finally:
        log.setLevel(level)
    tmp.replace(path)  # readers never see half a file
    return path
