"""ISO weeks in the report time zone."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from service.errors import ValidationFailed
from service.reports.format import fmt
from service.reports.weeks import IsoWeek


def test_a_week_parses_and_prints_back():
    assert IsoWeek.parse("2026-W47") == IsoWeek(2026, 47)
    assert IsoWeek(2026, 3).label == "2026-W03"


@pytest.mark.parametrize("text", ["2026-47", "2026W47", "2026-W4", "2026-W00", "2025-W53", "W47", "", "2026-w47"])
def test_a_bad_week_is_a_validation_problem_naming_the_field(text):
    with pytest.raises(ValidationFailed) as raised:
        IsoWeek.parse(text)
    assert raised.value.status == 422
    assert raised.value.errors[0]["field"] == "week"


def test_week_53_exists_only_in_long_years():
    assert IsoWeek.parse("2026-W53") == IsoWeek(2026, 53)  # 2026 starts on a Thursday


def test_bounds_are_local_midnights_and_a_dst_week_is_shorter():
    start, end = IsoWeek.parse("2026-W44").bounds("Europe/Berlin")  # Monday 26 October, winter time (UTC+1)
    assert start == datetime(2026, 10, 25, 23, 0, tzinfo=timezone.utc)
    assert end - start == timedelta(days=7)
    start, end = IsoWeek.parse("2026-W43").bounds("Europe/Berlin")
    assert start == datetime(2026, 10, 18, 22, 0, tzinfo=timezone.utc)
    assert end - start == timedelta(days=7, hours=1)  # summer time ends on Sunday 25 October


def test_the_previous_week_depends_on_the_time_zone():
    moment = datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)  # Monday 04:00 in Berlin, Sunday 22:00 in New York
    assert IsoWeek.previous(moment, "Europe/Berlin") == IsoWeek(2026, 47)
    assert IsoWeek.previous(moment, "America/New_York") == IsoWeek(2026, 46)
    assert IsoWeek(2026, 1).shift(-1) == IsoWeek(2025, 52)


@pytest.mark.parametrize("value, kind, shown", [
    (0.95123, "number", "0.9512"), (-0.01104, "signed", "-0.0110"), (0.8, "percent", "80.0%"), (18.66, "ms", "18.7 ms"),
    (1234.5, "usd", "$1,234.50"), (-3.0, "usd", "-$3.00"), (0.2, "usd_small", "$0.2000"), (180000.4, "count", "180,000"),
    (0.0312, "p", "0.031"), (0.0000412, "p", "4.1e-05"), (3.44, "days", "3.4 days"), (None, "percent", "n/a"),
    (float("nan"), "number", "n/a"), ("PROMOTE", "text", "PROMOTE")])
def test_the_one_formatting_filter(value, kind, shown):
    assert fmt(value, kind) == shown
