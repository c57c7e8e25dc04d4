"""What a stakeholder sees first, in Chromium: the dashboard page and the report's first page of an experiment ten
minutes old and of one with a week of (synthetic) data, saved as screenshots in test-artifacts/ and checked
for the money on them.

Every figure is recomputed here from the stored analysis by the formulas docs/reports.md#money states, and the
page must show exactly that: non-zero cost per 1M predictions for both arms, a savings interval of non-zero
width, savings to date, and a monthly projection only for the experiment with more than a day of traffic.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from service.reports.format import fmt
from tests.harness.processes import WebServer, frugal_env
from tests.reports.test_browser import ARTIFACTS, CHROMIUM, _browser_or_skip

CARDS = ("cost.champion_per_1m", "cost.challenger_per_1m", "cost.savings_share", "cost.savings_low", "cost.savings_high",
         "cost.savings_to_date", "cost.monthly_savings")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def expected_money(results: dict, analysed_at: datetime, traffic_start: datetime) -> dict[str, str]:
    """The cards' money, from the stored analysis (A/B: savings on the challenger's requests, volume both arms')."""
    cost, arms = results["components"]["cost"], results["inputs"]["arms"]
    champion = cost["per_request"]["champion"]["mean"]
    challenger = cost["per_request"]["challenger"]["mean"]
    share, (low, high) = cost["savings_share"]["estimate"], cost["savings_share"]["ci"]
    span_s = (analysed_at - traffic_start).total_seconds()
    served = arms["champion"]["predictions"] + arms["challenger"]["predictions"]
    monthly = champion * share * served / span_s * 86_400 * 30 if span_s >= 86_400 else None
    return {"cost.champion_per_1m": fmt(champion * 1e6, "usd_sig"), "cost.challenger_per_1m": fmt(challenger * 1e6, "usd_sig"),
            "cost.savings_share": fmt(share, "percent"), "cost.savings_low": fmt(low, "percent"),
            "cost.savings_high": fmt(high, "percent"),
            "cost.savings_to_date": fmt(champion * share * arms["challenger"]["predictions"], "usd_sig"),
            "cost.monthly_savings": fmt(monthly, "usd_sig")}


@pytest.fixture
def two_served(seeded_two, data_dir, tmp_path):
    """gunicorn on a database holding both experiments, each one's report rendered for its default week."""
    from service.auth import create_key
    from service.reports import weekly
    from service.store import analyses as analysis_store
    from service.store import rollups as rollup_store
    from service.store.database import Database
    from tests.conftest import make_settings

    settings = make_settings(data_dir, database_url=seeded_two["url"])
    db = Database(seeded_two["url"])
    cases = {}
    try:
        for kind, info in (("10-minutes", seeded_two["fresh"]), ("week", seeded_two["week_old"])):
            week = weekly.default_week(db, settings, info["name"])
            record = weekly.render_experiment(db, settings, info["name"], week, pdf=False)
            with db.unit_of_work() as session:
                analysis = analysis_store.latest(session, info["experiment_id"])
                first_bucket = _aware(rollup_store.buckets_for(session, info["experiment_id"], 1)[0].bucket_start)
            start = max(first_bucket, info["started"]) if "started" in info else first_bucket
            cases[kind] = {"name": info["name"], "report_id": record.id, "week": week,
                           "expected": expected_money(analysis.results, _aware(analysis.created_at), start)}
        key = create_key(db, name="stakeholder", scope="read")
    finally:
        db.dispose()
    server = WebServer(frugal_env(data_dir, seeded_two["url"]), tmp_path / "web.log", workers=1)
    yield {"url": server.url, "secret": key.secret, "cases": cases}
    server.stop()


def _figures(page) -> dict[str, str]:
    return {name: page.inner_text(f'.card [data-metric="{name}"]') for name in CARDS}


def test_the_first_screen_of_the_dashboard_and_the_report_shows_the_money(two_served):
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    base, problems = two_served["url"], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(f"{base}/login")
            page.fill("#key", two_served["secret"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/dashboard")
            for kind, case in two_served["cases"].items():
                want = case["expected"]
                for where, url in (("dashboard", f"/dashboard/experiments/{case['name']}"), ("report", f"/reports/{case['report_id']}")):
                    page.goto(base + url)
                    page.screenshot(path=str(ARTIFACTS / f"{where}-{kind}.png"))   # the first screen, as one opens it
                    shown = _figures(page)
                    assert shown == want, f"{where} of the {kind} experiment: {shown} != {want}"
                    assert all(shown[f"cost.{arm}_per_1m"] not in ("$0.00", "n/a") for arm in ("champion", "challenger"))
                    assert shown["cost.savings_low"] != shown["cost.savings_high"], "a savings interval of non-zero width"
                    note = page.inner_text('.card [data-metric="cost.projection_note"]')
                    if kind == "10-minutes":
                        assert shown["cost.monthly_savings"] == "n/a" and "10 min has been observed" in note, note
                    else:
                        assert shown["cost.monthly_savings"].startswith("$") and note.startswith("projected from the 5.1 days")
                    # every plot drawn (no empty figure, no "no data" sentence in its place)
                    assert page.locator(".plot svg").count() == 5 and page.locator(".noplot").count() == 0
                    ticks = page.inner_text("#plot-traffic")
                    assert not any(str(year) in ticks for year in (2025, 2027, 2028, 2029)), "one point, years of axis"
        finally:
            browser.close()
    assert not problems, problems


def test_a_ten_minute_old_experiments_default_report_week_is_this_week(seeded_two, data_dir):
    from service.reports import weekly
    from service.reports.weeks import IsoWeek
    from service.store.database import Database
    from tests.conftest import make_settings

    settings = make_settings(data_dir, database_url=seeded_two["url"])
    db = Database(seeded_two["url"])
    try:
        week = weekly.default_week(db, settings, seeded_two["fresh"]["name"])
        old = weekly.default_week(db, settings, seeded_two["week_old"]["name"])
    finally:
        db.dispose()
    assert week == IsoWeek.containing(datetime.now(timezone.utc) - timedelta(minutes=1), settings.report_timezone)
    assert old == seeded_two["week_old"]["week"]   # its latest analysis is in last week
