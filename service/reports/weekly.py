"""The weekly report use cases: render an experiment's or the portfolio's week, store it, find its PDF.

Rendering is idempotent: a report is unique per (experiment, ISO week) and rendering again replaces it.
The PDF is written under ``settings.reports_dir``; a web process that does not find the file (another
host rendered it) renders it again from the stored HTML.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from service.errors import NotFound
from service.reports import render
from service.reports.gather import Prices, ReportData, gather
from service.reports.weeks import IsoWeek
from service.settings import Settings
from service.store import reports as report_store
from service.store.database import Database
from service.store.reports import ReportRecord

log = logging.getLogger("frugal.reports")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def prices(settings: Settings) -> Prices:
    return Prices(settings.price_per_core_hour, settings.price_per_gb_hour)


def report_url(settings: Settings, record: ReportRecord, *, pdf: bool = False) -> str:
    return f"{settings.public_url.rstrip('/')}/reports/{record.id}{'.pdf' if pdf else ''}"


def pdf_file(settings: Settings, week: str, name: str | None) -> Path:
    return settings.reports_dir / week / f"{name or 'portfolio'}.pdf"


def _context(settings: Settings, week: IsoWeek) -> dict:
    since, until = week.bounds(settings.report_timezone)
    first, last = week.days()
    return {"week": week.label, "first_day": first, "last_day": last, "tz": settings.report_timezone,
            "since": since, "until": until, "generated_at": _now(), "public_url": settings.public_url.rstrip("/")}


def experiment_html(settings: Settings, data: ReportData, week: IsoWeek) -> str:
    return render.page("report.html", data=data, plots=render.experiment_plots(data), **_context(settings, week))


def default_week(db: Database, settings: Settings, experiment_ref: str | int) -> IsoWeek:
    """The week a report of the experiment covers when none is asked for: the one holding its latest
    analysis (a new experiment's data is in this week, not the last complete one), else this week."""
    from service.experiments import resolve
    from service.store import analyses as analysis_store

    with db.unit_of_work() as session:
        latest = analysis_store.latest(session, resolve(session, str(experiment_ref)).id)
    moment = latest.created_at if latest else _now()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return IsoWeek.containing(moment, settings.report_timezone)


def render_experiment(db: Database, settings: Settings, experiment_ref: str | int, week: IsoWeek, *,
                      pdf: bool = True) -> ReportRecord:
    """Render and store one experiment's report of ``week`` (and its PDF when ``pdf``)."""
    from service.experiments import resolve

    since, until = week.bounds(settings.report_timezone)
    with db.unit_of_work() as session:
        experiment = resolve(session, str(experiment_ref))
        data = gather(session, experiment, since=since, until=until, prices=prices(settings))
    html = experiment_html(settings, data, week)
    path = render.write_pdf(html, pdf_file(settings, week.label, experiment.name)) if pdf else None
    with db.unit_of_work() as session:
        return report_store.upsert(session, experiment_id=experiment.id, week=week.label,
                                   title=f"{experiment.name}: week {week.label}", html=html,
                                   pdf_path=str(path) if path else None, now=_now())


@dataclass(frozen=True)
class PortfolioRow:
    data: ReportData
    report_id: int | None


def render_portfolio(db: Database, settings: Settings, week: IsoWeek, *, pdf: bool = True,
                     report_ids: dict[int, int] | None = None) -> ReportRecord:
    """Render and store the week's summary across every experiment that ran in it."""
    from service.store import experiments as experiment_store

    since, until = week.bounds(settings.report_timezone)
    with db.unit_of_work() as session:
        ids = report_store.experiments_active_between(session, since, until)
        rows = []
        for experiment_id in ids:
            experiment = experiment_store.get(session, experiment_id=experiment_id)
            rows.append(PortfolioRow(gather(session, experiment, since=since, until=until, prices=prices(settings)),
                                     (report_ids or {}).get(experiment_id)))
    html = render.page("portfolio.html", rows=rows, **_context(settings, week))
    path = render.write_pdf(html, pdf_file(settings, week.label, None)) if pdf else None
    with db.unit_of_work() as session:
        return report_store.upsert(session, experiment_id=None, week=week.label, title=f"Portfolio: week {week.label}",
                                   html=html, pdf_path=str(path) if path else None, now=_now())


def render_week(db: Database, settings: Settings, week: IsoWeek) -> list[ReportRecord]:
    """Every experiment that ran during ``week``, then the portfolio linking to them (the portfolio is last).
    Without WeasyPrint the HTML reports are still stored; their PDF download answers 501."""
    since, until = week.bounds(settings.report_timezone)
    with db.unit_of_work() as session:
        ids = report_store.experiments_active_between(session, since, until)
    pdf = _pdf_available()
    records = [render_experiment(db, settings, experiment_id, week, pdf=pdf) for experiment_id in ids]
    portfolio = render_portfolio(db, settings, week, pdf=pdf, report_ids={r.experiment_id: r.id for r in records})
    return records + [portfolio]


def _pdf_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("weasyprint") is None:
        log.warning("WeasyPrint is not installed: weekly reports are stored without PDFs (pip install 'frugal[pdf]')")
        return False
    return True


def get(db: Database, report_id: int) -> tuple[ReportRecord, str]:
    with db.unit_of_work() as session:
        record = report_store.get(session, report_id)
        html = report_store.html(session, report_id) if record else None
    if record is None or html is None:
        raise NotFound(f"no report {report_id}")
    return record, html


def pdf(db: Database, settings: Settings, report_id: int) -> tuple[ReportRecord, Path]:
    """The report's PDF file, rendered now from the stored HTML when this host does not have it."""
    record, html = get(db, report_id)
    if record.pdf_path and Path(record.pdf_path).is_file():
        return record, Path(record.pdf_path)
    path = render.write_pdf(html, pdf_file(settings, record.week, record.experiment_name))
    with db.unit_of_work() as session:
        report_store.set_pdf_path(session, record.id, str(path))
    return record, path


def page(db: Database, *, limit: int, offset: int, experiment: str | None = None,
         week: str | None = None) -> tuple[list[ReportRecord], int]:
    """Stored reports, newest week first; ``week`` is validated (a 422 names the field)."""
    from service.experiments import resolve

    label = IsoWeek.parse(week).label if week else None
    with db.unit_of_work() as session:
        experiment_id = resolve(session, experiment).id if experiment else None
        return report_store.page(session, limit=limit, offset=offset, experiment_id=experiment_id, week=label)
