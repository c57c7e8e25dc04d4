"""A person's path through the real service: gunicorn on loopback, headless system Chromium (Playwright).

Logs in with a read key, opens the dashboard, the experiment page and last week's report, finds the key
figures (decision, quality bound, savings) equal to the stored analysis, and sees no console error.
Screenshots go to test-artifacts/ (gitignored).  Never downloads a browser: it uses /usr/bin/chromium.
"""

from __future__ import annotations

import os
import shutil

import pytest

from service.reports.format import fmt
from tests.harness import servers
from tests.harness.processes import ROOT, WebServer, frugal_env

CHROMIUM = os.environ.get("FRUGAL_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"


def _browser_or_skip():
    missing = []
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
        sync_playwright = None
    if missing:
        message = "browser test needs " + " and ".join(missing) + ": run make system-deps"
        if servers.IN_CI:
            pytest.fail(message + " (CI=true requires it)", pytrace=False)
        pytest.skip(message)
    return sync_playwright


@pytest.fixture
def served(seeded, data_dir, tmp_path):
    """gunicorn on the seeded database, last week's report rendered, and a read key."""
    from service.auth import create_key
    from service.reports import weekly
    from service.store import analyses as analysis_store
    from service.store.database import Database
    from tests.conftest import make_settings

    settings = make_settings(data_dir, database_url=seeded["url"])
    db = Database(seeded["url"])
    try:
        record = weekly.render_experiment(db, settings, seeded["name"], seeded["week"], pdf=False)
        key = create_key(db, name="stakeholder", scope="read")
        with db.unit_of_work() as session:
            stored = analysis_store.get(session, seeded["analysis_ids"][-1])
    finally:
        db.dispose()
    server = WebServer(frugal_env(data_dir, seeded["url"]), tmp_path / "web.log", workers=1)
    yield {**seeded, "url": server.url, "report_id": record.id, "secret": key.secret, "analysis": stored}
    server.stop()


def test_a_stakeholder_logs_in_and_reads_the_dashboard_and_the_report(served):
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    results = served["analysis"].results
    decision = results["decision"]
    bound = fmt(results["components"]["quality"]["ci"][0], "signed")
    margin = fmt(-results["components"]["quality"]["margin"], "signed")
    savings = fmt(results["components"]["cost"]["savings_share"]["estimate"], "percent")
    base, problems = served["url"], []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)

            page.goto(f"{base}/dashboard")
            assert page.url.startswith(f"{base}/login"), "an anonymous browser is sent to /login"
            page.fill("#key", served["secret"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/dashboard")
            assert page.inner_text(f'[data-decision="{served["name"]}"]') == decision
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            page.click(f'text={served["name"]}')
            page.wait_for_url(f"{base}/dashboard/experiments/{served['name']}")
            assert page.inner_text('.decision [data-metric="decision"]') == decision
            assert page.locator("#plot-confidence svg").count() == 1
            page.screenshot(path=str(ARTIFACTS / "experiment.png"), full_page=True)

            page.click(f'a[href="/reports/{served["report_id"]}"]')
            page.wait_for_url(f"{base}/reports/{served['report_id']}")
            assert page.inner_text('.decision [data-metric="decision"]') == decision
            assert page.inner_text('.card [data-metric="quality.lower_bound"]') == bound
            assert page.inner_text('.card [data-metric="quality.threshold"]') == margin
            assert page.inner_text('.card [data-metric="cost.savings_share"]') == savings
            assert page.inner_text('.card [data-metric="cost.monthly_savings"]').startswith("$")
            assert page.locator(".plot svg").count() == 5
            assert page.is_visible("text=Audit trail this week")
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)

            download = page.request.get(f"{base}/reports/{served['report_id']}.pdf")
            assert download.status == 200 and download.body().startswith(b"%PDF")
        finally:
            browser.close()
    assert not problems, problems
