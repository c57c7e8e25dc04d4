"""Money reads as money at any size, and the plots of a brand-new experiment draw without a warning."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone

import pytest

from service.reports.format import fmt


@pytest.mark.parametrize("value, shown", [(0.000562, "$0.000562"), (0.0123456, "$0.0123"), (1.5, "$1.50"),
                                          (11241.0, "$11,241.00"), (-0.00000196, "-$0.00000196"), (0.0, "$0.00"),
                                          (None, "n/a")])
def test_small_amounts_of_money_keep_three_significant_digits(value, shown):
    assert fmt(value, "usd_sig") == shown


@pytest.mark.parametrize("seconds, shown", [(12, "12 s"), (600, "10 min"), (3 * 3600, "3.0 h"), (5.1 * 86_400, "5.1 days")])
def test_a_span_reads_in_words(seconds, shown):
    assert fmt(seconds, "duration") == shown


def test_one_analysis_and_one_bucket_draw_every_plot_on_a_time_axis_of_about_an_hour():
    from service.reports import plots
    from service.reports.gather import Bucket, HistoryPoint

    now = datetime(2026, 12, 4, 3, 40, tzinfo=timezone.utc)
    bucket = now.replace(minute=0)
    buckets = [Bucket(bucket, "champion", 600, 0.6), Bucket(bucket, "challenger", 600, 0.12)]
    points = [HistoryPoint(now, -0.01, -0.13, 0.11)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # any matplotlib warning fails the test
        svgs = [plots.confidence_sequence(points, -0.02), plots.traffic(buckets, now), plots.cost(buckets),
                plots.pareto([plots.ParetoPoint("champion", 0.92, 1000.0, 85.0), plots.ParetoPoint("challenger", 0.91, 200.0, 18.0)])]
    for svg in svgs:
        assert svg.startswith("<svg") and "noplot" not in svg
        assert not any(str(year) in svg for year in (2025, 2027, 2028, 2029)), "one point stretched over years"
    assert plots.traffic([], now).startswith('<p class="explain noplot">')   # no data: a sentence, not an empty plot


def test_the_frontier_keeps_what_nothing_beats_on_both_quality_and_cost():
    from service.reports.plots import ParetoPoint, frontier

    points = [ParetoPoint("a", 0.95, 100.0, None), ParetoPoint("b", 0.90, 10.0, None), ParetoPoint("c", 0.89, 50.0, None)]
    assert frontier(points) == {"a", "b"}
    assert frontier([ParetoPoint("rmse-low", 1.0, 100.0, None), ParetoPoint("rmse-high", 2.0, 100.0, None)],
                    higher_is_better=False) == {"rmse-low"}
