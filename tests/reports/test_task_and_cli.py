"""The weekly beat task (in process, and on a live worker) and ``frugal report``."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from click.testing import CliRunner

from service.cli import main as cli
from tests.conftest import make_settings
from tests.harness.processes import Worker, frugal_env


def _reports(db, week: str) -> list:
    from service.store import reports as report_store

    with db.unit_of_work() as session:
        return report_store.page(session, limit=100, offset=0, week=week)[0]


def test_the_weekly_task_renders_every_experiment_of_last_week_and_the_portfolio(app_factory, seeded, monkeypatch):
    from service.worker import tasks

    app = app_factory(seeded["url"], report_webhook_url="http://127.0.0.1:9/hook")
    queued = []
    monkeypatch.setattr(tasks.notify_reports, "delay", lambda *args: queued.append(args))
    task = app.extensions["celery"].tasks["frugal.weekly_reports"]
    result = task()  # no week: the last complete week in the report time zone, which the seed filled
    assert result["week"] == seeded["week"].label
    stored = _reports(app.extensions["frugal"].db, seeded["week"].label)
    assert {r.experiment_name for r in stored} == {seeded["name"], None}
    assert sorted(result["reports"]) == sorted(r.id for r in stored)
    for record in stored:
        assert record.pdf_path and record.pdf_path.endswith(".pdf")
    portfolio = next(r for r in stored if r.experiment_name is None)
    assert portfolio.title == f"Portfolio: week {seeded['week'].label}"

    again = task(seeded["week"].label)  # idempotent: the same rows are replaced, none added
    assert sorted(again["reports"]) == sorted(result["reports"])

    (week, links), = queued[:1]
    assert week == seeded["week"].label
    assert {link["url"] for link in links} == {f"http://127.0.0.1:8000/reports/{r.id}" for r in stored}


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_report_links_are_posted_to_the_webhook(app_factory, seeded):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # the receiver is on this host: private addresses are refused unless allowed
        app = app_factory(seeded["url"], report_webhook_url=f"http://127.0.0.1:{server.server_port}/hook",
                          webhook_allow_private="true")
        links = [{"experiment": "x", "title": "x: week 2026-W47", "url": "http://h/reports/1", "pdf": "http://h/reports/1.pdf"}]
        result = app.extensions["celery"].tasks["frugal.notify_reports"]("2026-W47", links)
    finally:
        server.shutdown()
        server.server_close()
    assert result == {"sent": True, "status": 204}
    assert _Hook.received[-1] == {"event": "weekly_reports", "week": "2026-W47", "reports": links}


@pytest.mark.worker
def test_a_live_worker_renders_the_weekly_reports(seeded, redis_url, data_dir, tmp_path):
    from service.app import create_app
    from service.store.database import Database
    from service.worker.celery_app import make_celery

    app = create_app(make_settings(data_dir, database_url=seeded["url"], broker_url=redis_url))
    celery = make_celery(app)
    queue = f"reports-{uuid.uuid4().hex[:8]}"  # its own queue: workers of other test runs on this Redis never take it
    worker = Worker(frugal_env(data_dir, seeded["url"], redis_url), tmp_path / "worker.log", extra=["-Q", queue])
    try:
        result = celery.send_task("frugal.weekly_reports", args=[seeded["week"].label], queue=queue).get(timeout=240)
    finally:
        worker.stop()
        app.extensions["frugal"].close()
    assert result["week"] == seeded["week"].label
    db = Database(seeded["url"])
    try:
        stored = {r.id: r for r in _reports(db, seeded["week"].label)}
    finally:
        db.dispose()
    assert set(result["reports"]) <= set(stored)
    assert all(stored[i].pdf_path for i in result["reports"])


def _env(seeded, data_dir) -> dict[str, str]:
    return {"FRUGAL_DATA_DIR": str(data_dir), "FRUGAL_DATABASE_URL": seeded["url"], "FRUGAL_LOG_LEVEL": "WARNING",
            "FRUGAL_PUBLIC_URL": "https://frugal.example"}


def test_frugal_report_renders_stores_and_prints_the_url(seeded, data_dir):
    result = CliRunner().invoke(cli, ["report", "--experiment", seeded["name"], "--week", seeded["week"].label, "--pdf"],
                                env=_env(seeded, data_dir))
    assert result.exit_code == 0, result.output
    first, second = result.output.strip().splitlines()
    assert first.startswith("report ") and f"({seeded['name']}: week {seeded['week'].label})" in first
    assert first.split(": ")[-1].startswith("https://frugal.example/reports/")
    assert second == f"pdf: {data_dir / 'reports' / seeded['week'].label / (seeded['name'] + '.pdf')}"
    assert (data_dir / "reports" / seeded["week"].label / f"{seeded['name']}.pdf").stat().st_size > 1000


def test_frugal_report_defaults_to_last_week_and_renders_the_portfolio(seeded, data_dir):
    from service.reports.weeks import IsoWeek

    result = CliRunner().invoke(cli, ["report", "--portfolio"], env=_env(seeded, data_dir))
    assert result.exit_code == 0, result.output
    assert f"(Portfolio: week {IsoWeek.previous(datetime.now(timezone.utc), 'UTC').label})" in result.output


@pytest.mark.parametrize("args, message", [
    (["--experiment", "x", "--week", "2026-47"], "invalid week '2026-47' (422 Validation failed)\n  week: must look like 2026-W47"),
    (["--experiment", "no-such-experiment"], "no experiment 'no-such-experiment' (404 Not found)"),
    ([], "give --experiment NAME or --portfolio"),
])
def test_frugal_report_explains_what_is_wrong(seeded, data_dir, args, message):
    result = CliRunner().invoke(cli, ["report", *args], env=_env(seeded, data_dir))
    assert result.exit_code != 0
    assert message in result.output
