"""Every number on a weekly report is the stored analysis' number, formatted by the one shared filter; the
PDF renders to real pages."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from service.reports.format import fmt
from tests.conftest import make_settings
from tests.harness import servers

ARMS = ("champion", "challenger")

# What each figure on the page must equal: (path in the stored analysis' results, format).  Written out
# here, independently of service.reports.gather, so a wrong path there fails this test.
EXPECTED_FROM_RESULTS = {
    "decision": ("decision", "text"),
    "quality.champion": ("components.quality.champion_mean", "number"),
    "quality.challenger": ("components.quality.challenger_mean", "number"),
    "quality.estimate": ("components.quality.estimate", "signed"),
    "quality.lower_bound": ("components.quality.ci.0", "signed"),
    "quality.upper_bound": ("components.quality.ci.1", "signed"),
    "quality.status": ("components.quality.status", "text"),
    "quality.information_n": ("components.quality.information_n", "count"),
    "quality.information_fraction": ("components.quality.information_fraction", "percent"),
    **{f"latency.{arm}.{q}": (f"components.latency.quantiles.{arm}.{q}.value", "ms") for arm in ARMS for q in ("p50", "p95", "p99")},
    "latency.slo_threshold": ("components.latency.slo.threshold_ms", "ms"),
    "latency.slo_max_share": ("components.latency.slo.max_share", "percent"),
    "latency.challenger_slow_share": ("components.latency.slo.share", "percent"),
    "latency.champion_slow_share": ("components.latency.champion_slow_share", "percent"),
    "latency.status": ("components.latency.status", "text"),
    "failures.failed": ("components.failures.failed", "count"),
    "failures.predictions": ("components.failures.predictions", "count"),
    "failures.share": ("components.failures.share", "percent"),
    "failures.max_share": ("components.failures.max_share", "percent"),
    "failures.status": ("components.failures.status", "text"),
    "cost.savings_share": ("components.cost.savings_share.estimate", "percent"),
    "cost.savings_low": ("components.cost.savings_share.ci.0", "percent"),
    "cost.savings_high": ("components.cost.savings_share.ci.1", "percent"),
    "cost.status": ("components.cost.status", "text"),
    "health.status": ("components.health.status", "text"),
    "health.srm_p": ("components.health.srm.p_chi2", "p"),
    "health.srm_p_sequential": ("components.health.srm.p_sequential", "p"),
    **{f"health.coverage.{arm}": (f"components.health.outcome_coverage.{arm}", "percent") for arm in ARMS},
    **{f"traffic.{arm}.{what}": (f"inputs.arms.{arm}.{what}", "count") for arm in ARMS for what in ("exposures", "predictions")},
}


class Figures(HTMLParser):
    """Collect the text of every element carrying data-metric (several elements may show the same figure)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, set[str]] = {}
        self._open: list[str | None] = []
        self._text: dict[int, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        name = dict(attrs).get("data-metric")
        self._open.append(name)
        if name:
            self._text[len(self._open)] = []

    def handle_endtag(self, tag):
        depth = len(self._open)
        name = self._open.pop() if self._open else None
        if name:
            self.found.setdefault(name, set()).add("".join(self._text.pop(depth)).strip())

    def handle_data(self, data):
        for depth in self._text:
            self._text[depth].append(data)


def figures(html: str) -> dict[str, set[str]]:
    parser = Figures()
    parser.feed(html)
    return parser.found


def at(results: dict, path: str):
    value = results
    for step in path.split("."):
        value = value[int(step)] if step.isdigit() else value.get(step)
        if value is None:
            return None
    return value


@pytest.fixture
def rendered(seeded, data_dir):
    """The seeded experiment's report of last week, rendered and stored, with the stored analyses."""
    from service.reports import weekly
    from service.store import analyses as analysis_store
    from service.store.database import Database

    settings = make_settings(data_dir, database_url=seeded["url"])
    db = Database(seeded["url"])
    record = weekly.render_experiment(db, settings, seeded["name"], seeded["week"], pdf=True)
    _, html = weekly.get(db, record.id)
    with db.unit_of_work() as session:
        history = [analysis_store.get(session, i) for i in seeded["analysis_ids"]]
    yield {"record": record, "html": html, "history": history, "settings": settings, "db": db}
    db.dispose()


def test_every_number_on_the_report_equals_the_stored_analysis(rendered):
    history = rendered["history"]
    stored = history[-1].results  # the week's last analysis is the one the report shows
    on_page = figures(rendered["html"])

    expected = {name: fmt(at(stored, path), kind) for name, (path, kind) in EXPECTED_FROM_RESULTS.items()}
    # Derived figures, recomputed here from the stored numbers by the formulas docs/reports.md#money states.
    cost = at(stored, "components.cost")
    mean = {arm: cost["per_request"][arm]["mean"] for arm in ARMS}
    share, (low, high) = cost["savings_share"]["estimate"], cost["savings_share"]["ci"]
    predictions = {arm: at(stored, f"inputs.arms.{arm}.predictions") for arm in ARMS}
    for arm in ARMS:
        expected[f"cost.{arm}_per_1m"] = fmt(mean[arm] * 1e6, "usd_sig")
        expected[f"cost.{arm}_per_1m_low"] = fmt(cost["per_request"][arm]["ci"][0] * 1e6, "usd_sig")
        expected[f"cost.{arm}_per_1m_high"] = fmt(cost["per_request"][arm]["ci"][1] * 1e6, "usd_sig")
        expected[f"cost.{arm}_to_date"] = fmt(mean[arm] * predictions[arm], "usd_sig")
    expected["quality.threshold"] = fmt(-at(stored, "components.quality.margin"), "signed")
    # the seeded traffic starts Monday 08:00 (its phase and first roll-up bucket); volume: both arms (A/B)
    start = min(a.created_at for a in history) - timedelta(hours=3)
    span_s = (history[-1].created_at - start).total_seconds()
    served = sum(predictions.values())
    per_day = served / span_s * 86_400
    expected["cost.observed_span"] = fmt(span_s, "duration")
    expected["cost.rate_per_day"] = fmt(per_day, "count")
    expected["cost.monthly_volume"] = fmt(30 * per_day, "count")
    for arm in ARMS:
        expected[f"cost.{arm}_monthly"] = fmt(mean[arm] * 30 * per_day, "usd_sig")
    basis = predictions["challenger"]
    expected["cost.savings_basis"] = fmt(basis, "count")
    for name, x in (("", share), ("_low", low), ("_high", high)):
        expected[f"cost.savings_to_date{name}"] = fmt(mean["champion"] * x * basis, "usd_sig")
        expected[f"cost.monthly_savings{name}"] = fmt(mean["champion"] * 30 * per_day * x, "usd_sig")
    expected["cost.direction"] = "challenger cheaper per prediction"
    expected["cost.projection_note"] = f"projected from the {fmt(span_s, 'duration')} of traffic observed"
    quality = {arm: at(stored, f"components.quality.{arm}_mean") for arm in ARMS}
    for arm, other in (("champion", "challenger"), ("challenger", "champion")):
        beaten = quality[other] >= quality[arm] and mean[other] <= mean[arm]   # (higher accuracy is better)
        expected[f"pareto.{arm}"] = f"beaten by the {other} (better and cheaper)" if beaten else "on the frontier"

    assert set(on_page) == set(expected), f"unchecked: {set(on_page) - set(expected)}, missing: {set(expected) - set(on_page)}"
    for name, want in expected.items():
        assert on_page.get(name) == {want}, f"{name}: page shows {on_page.get(name)}, stored analysis gives {want}"
    assert stored["decision"] == "PROMOTE"  # the seeded challenger is as good and five times cheaper
    assert "n/a" not in {v for values in on_page.values() for v in values}, "the seeded report should be complete"


def test_the_report_says_what_the_decision_means_and_when_one_is_due(rendered):
    html = rendered["html"]
    assert "It is safe to switch." in html
    assert "Time to a decision at the current traffic" in html and "decided" in html


def test_the_report_lists_the_weeks_audit_trail(rendered):
    html = rendered["html"]
    assert "Audit trail this week" in html
    assert "ramp to 50.0%" in html and "guardrails hold: next ramp step" in html


def test_the_report_inlines_four_svg_plots(rendered):
    html = rendered["html"]
    for plot in ("confidence", "latency", "traffic", "cost"):
        start = html.index(f'id="plot-{plot}"')
        assert html[start:start + 400].count("<svg") == 1, plot
    assert "Quality difference (challenger − champion) over time" in html


def test_the_pdf_renders_to_non_trivial_pages(rendered, tmp_path):
    if not shutil.which("pdftoppm"):
        if servers.IN_CI:
            pytest.fail("pdftoppm (poppler-utils) is missing: make system-deps installs it")
        pytest.skip("pdftoppm (poppler-utils) not installed: make system-deps")
    pdf = rendered["record"].pdf_path
    assert pdf and pdf.endswith(".pdf")
    subprocess.run(["pdftoppm", "-png", "-r", "50", pdf, str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page*.png"))
    assert pages, "no page rendered"
    assert pages[0].stat().st_size > 10_000, "the first page is (nearly) blank"


def test_a_week_without_analyses_says_so_honestly(seeded, data_dir):
    from service.reports import weekly
    from service.store.database import Database

    settings = make_settings(data_dir, database_url=seeded["url"])
    db = Database(seeded["url"])
    try:
        record = weekly.render_experiment(db, settings, seeded["name"], seeded["week"].shift(-2), pdf=False)
        _, html = weekly.get(db, record.id)
    finally:
        db.dispose()
    assert "NOT ANALYSED" in html and "has not been analysed yet" in html
    assert not re.search(r"<[^>]*\sdata-metric=", html)   # no figure on the page (the stylesheet names the attribute)


def test_days_to_a_decision_come_from_the_planned_horizon_and_the_current_rate(seeded):
    """Mid-week the experiment was still CONTINUE: the page gives days left at the rate between analyses."""
    from service.reports import render
    from service.reports.gather import gather
    from service.store import analyses as analysis_store
    from service.store import experiments as experiment_store
    from service.store.database import Database

    db = Database(seeded["url"])
    try:
        with db.unit_of_work() as session:
            history = [analysis_store.get(session, i) for i in seeded["analysis_ids"]]
            undecided = [a for a in history if a.decision == "CONTINUE"]
            assert len(undecided) >= 2, [a.decision for a in history]
            shown = undecided[-1]
            record = experiment_store.get(session, experiment_id=seeded["experiment_id"])
            data = gather(session, record, until=shown.created_at + timedelta(minutes=1))
    finally:
        db.dispose()
    window = [a for a in history if a.created_at <= shown.created_at]
    first = window[0]
    n0, n1 = (at(a.results, "components.quality.information_n") for a in (first, shown))
    per_day = (n1 - n0) / ((shown.created_at - first.created_at).total_seconds() / 86_400)
    fraction = at(shown.results, "components.quality.information_fraction")
    horizon = n1 / fraction if fraction else at(shown.results, "parameters.planned_n_per_arm")
    html = render.page("_scorecard.html", data=data, plots={k: "" for k in ("confidence", "latency", "traffic", "cost")})
    assert figures(html)["decision.days_left"] == {fmt(max(horizon - n1, 0) / per_day, "days")}


def test_reports_render_on_the_embedded_sqlite_default(sqlite_url, data_dir):
    """The embedded default (SQLite gives timestamps back naive) renders the same week and the same numbers."""
    from service.reports import weekly
    from service.store import analyses as analysis_store
    from service.store.database import Database
    from tests.reports.conftest import seed

    settings = make_settings(data_dir, database_url=sqlite_url)
    info = seed(sqlite_url, settings)
    db = Database(sqlite_url)
    try:
        records = weekly.render_week(db, settings, info["week"])
        _, html = weekly.get(db, records[0].id)
        with db.unit_of_work() as session:
            stored = analysis_store.get(session, info["analysis_ids"][-1]).results
    finally:
        db.dispose()
    assert [r.experiment_name for r in records] == [info["name"], None]
    on_page = figures(html)
    for name in ("decision", "quality.lower_bound", "cost.savings_share", "latency.challenger.p95"):
        path, kind = EXPECTED_FROM_RESULTS[name]
        assert on_page[name] == {fmt(at(stored, path), kind)}, name
    assert "ramp to 50.0%" in html
