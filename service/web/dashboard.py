"""/dashboard: every experiment with its state and current decision; one experiment's latest analysis."""

from __future__ import annotations

from flask import Blueprint, g, redirect

from service.reports import dashboard as domain
from service.reports import weekly
from service.reports.render import experiment_plots, page
from service.runtime import runtime
from service.web.session import html, reader_required

bp = Blueprint("web_dashboard", __name__)


@bp.get("/")
def home():
    return redirect("/dashboard")


@bp.get("/dashboard")
@reader_required
def overview():
    from service.reports.gather import MEANING

    return html(page("dashboard.html", rows=domain.overview(runtime().db), meaning=MEANING, reader=g.api_key))


@bp.get("/dashboard/experiments/<ref>")
@reader_required
def experiment(ref: str):
    rt = runtime()
    view = domain.experiment(rt.db, ref, weekly.prices(rt.settings))
    return html(page("experiment.html", data=view.data, reports=view.reports, plots=experiment_plots(view.data),
                     tz=rt.settings.report_timezone, reader=g.api_key))
