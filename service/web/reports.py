"""/reports: the stored weekly reports as HTML pages and PDF downloads."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from service.errors import ValidationFailed, field_error
from service.reports import weekly
from service.reports.render import page
from service.runtime import runtime
from service.web.session import html, reader_required

bp = Blueprint("web_reports", __name__)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationFailed(f"invalid {name}", errors=[field_error(f"query.{name}", f"must be an integer from {low} to {high}")])
    return int(raw)


@bp.get("/reports")
@reader_required
def report_list():
    """Stored reports, newest week first; ?experiment=NAME and ?week=2026-W47 filter."""
    limit, offset = _int_arg("limit", 50, 1, 500), _int_arg("offset", 0, 0, 10**9)
    experiment, week = request.args.get("experiment") or None, request.args.get("week") or None
    try:
        items, total = weekly.page(runtime().db, limit=limit, offset=offset, experiment=experiment, week=week)
    except ValidationFailed as exc:
        exc.errors = [field_error("query.week", e["message"]) for e in exc.errors]
        raise
    return html(page("reports.html", items=items, total=total, limit=limit, offset=offset, experiment=experiment,
                     week=week, reader=g.api_key))


@bp.get("/reports/<int:report_id>")
@reader_required
def report_html(report_id: int):
    _, body = weekly.get(runtime().db, report_id)
    return html(body)


@bp.get("/reports/<int:report_id>.pdf")
@reader_required
def report_pdf(report_id: int):
    rt = runtime()
    record, path = weekly.pdf(rt.db, rt.settings, report_id)
    name = f"frugal-{record.experiment_name or 'portfolio'}-{record.week}.pdf"
    response = Response(path.read_bytes(), mimetype="application/pdf")  # small: no file handle left to the server
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-cache"
    return response
