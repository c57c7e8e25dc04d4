"""The one beat schedule table."""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import crontab

from service.settings import Settings


def beat_schedule(settings: Settings) -> dict:
    return {
        "rollup": {"task": "frugal.rollup", "schedule": timedelta(seconds=settings.rollup_interval_s)},
        "analyze-running-experiments": {"task": "frugal.analyze_all", "schedule": timedelta(seconds=settings.analysis_interval_s)},
        "retention": {"task": "frugal.retention", "schedule": crontab(minute=30, hour=settings.retention_hour)},
        "weekly-reports": {
            "task": "frugal.weekly_reports",
            "schedule": crontab(minute=0, hour=settings.report_hour, day_of_week=(settings.report_weekday + 1) % 7),
        },
    }
