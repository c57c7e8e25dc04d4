"""The dashboard's use cases: every experiment with its current decision; one experiment as of now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from service.reports.gather import Prices, ReportData, gather
from service.store import analyses as analysis_store
from service.store import experiments as experiment_store
from service.store import reports as report_store
from service.store.analyses import AnalysisRecord
from service.store.database import Database
from service.store.experiments import ExperimentRecord
from service.store.reports import ReportRecord


@dataclass(frozen=True)
class OverviewRow:
    experiment: ExperimentRecord
    analysis: AnalysisRecord | None


@dataclass(frozen=True)
class ExperimentView:
    data: ReportData
    reports: list[ReportRecord]


def overview(db: Database) -> list[OverviewRow]:
    with db.unit_of_work() as session:
        return [OverviewRow(record, analysis_store.latest(session, record.id))
                for record in experiment_store.all_records(session)]


def experiment(db: Database, ref: str, prices: Prices | None = None) -> ExperimentView:
    """The experiment's latest analysis with its history, recent audit events and its weekly reports."""
    from service.experiments import resolve

    until = datetime.now(timezone.utc) + timedelta(seconds=1)
    with db.unit_of_work() as session:
        record = resolve(session, ref)
        data = gather(session, record, until=until, prices=prices)
        reports, _ = report_store.page(session, limit=52, offset=0, experiment_id=record.id)
    return ExperimentView(data, reports)
