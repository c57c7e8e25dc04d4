"""Celery tasks: thin, explicitly named wrappers around domain functions.  They take ids and ISO
timestamps, never ORM objects, and are idempotent (a state guard or a unique key on their output)."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone

from celery import shared_task

from service.errors import ServiceUnavailable
from service.runtime import runtime

log = logging.getLogger("frugal.tasks")
TRANSIENT = (ServiceUnavailable, ConnectionError, TimeoutError)
ROLLUP_BUDGET_S = 180.0  # stop starting roll-up batches well inside the task's 240 s soft limit


@shared_task(name="frugal.ping")
def ping(payload: str) -> dict:
    """Round trip through a worker process: proves the broker, the worker and the app context."""
    rt = runtime()
    with rt.db.engine.connect() as conn:
        dialect = conn.dialect.name
    return {"echo": payload, "pid": os.getpid(), "database": dialect}


@shared_task(name="frugal.rollup", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5, soft_time_limit=240, time_limit=300)
def rollup() -> dict:
    """Roll new events up (idempotent: each batch locks its experiment's watermarks and advances them
    in the transaction that adds to the buckets; experiments another worker holds are left to it)."""
    from service.analytics.rollup import run_rollup

    return run_rollup(runtime().db, max_seconds=ROLLUP_BUDGET_S).to_dict()


@shared_task(name="frugal.retention", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3, soft_time_limit=3300,
             time_limit=3600)
def retention() -> dict:
    """Delete raw events older than FRUGAL_RETENTION_DAYS that the roll-up has read (idempotent)."""
    from service.retention import run_retention

    rt = runtime()
    result = run_retention(rt.db, days=rt.settings.retention_days, batch=rt.settings.retention_batch)
    return {"cutoff": result.cutoff.isoformat() if result.cutoff else None, "predictions": result.predictions_deleted,
            "outcomes": result.outcomes_deleted, "batches": result.batches}


@shared_task(name="frugal.analyze_all", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def analyze_all(slot: str | None = None) -> dict:
    """Beat: roll up, then analyse every running experiment for this slot (one analysis per slot)."""
    from service.analytics.rollup import run_rollup
    from service.store import experiments as experiment_store

    rt = runtime()
    slot = slot or _slot(rt.settings.analysis_interval_s)
    run_rollup(rt.db, max_seconds=ROLLUP_BUDGET_S)
    with rt.db.unit_of_work() as session:
        running = [r.id for r in experiment_store.all_records(session) if r.state == "running"]
    for experiment_id in running:
        analyze_experiment.delay(experiment_id, slot, False)
    from service.store import outbox

    with rt.db.unit_of_work() as session:  # webhooks a dead worker or a refused receiver left behind
        undelivered = [r.analysis_id for r in outbox.pending(session) if r.attempts < 20
                       and not (r.last_error or "").startswith("refused")]
    for analysis_id in undelivered:
        notify_decision.delay(analysis_id)
    return {"slot": slot, "experiments": running, "webhooks_pending": len(undelivered)}


@shared_task(name="frugal.analyze", bind=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5,
             soft_time_limit=240, time_limit=300)
def analyze_experiment(self, experiment_id: int, slot: str | None = None, rollup_first: bool = True) -> dict:
    """Analyse one experiment (roll up first on demand), store the analysis, act if allowed."""
    from service.analytics import actions
    from service.analytics.analyze import analyze
    from service.analytics.rollup import run_rollup

    rt = runtime()
    if rollup_first:  # this experiment caught up, waiting for a batch another worker is running on it
        run_rollup(rt.db, experiment_ids=[experiment_id], wait=True)
    slot = slot or f"task:{self.request.id}"
    analysis, created = analyze(rt.db, experiment_id, slot, public_url=rt.settings.public_url)
    # every time, not only when created: a worker killed after storing the analysis left its action
    # undone; the actions are guarded by state, so a second run changes nothing that was done
    taken = actions.act(rt.db, analysis)
    notify_decision.delay(analysis.id)  # a no-op unless its outbox row is still undelivered
    return {"analysis_id": analysis.id, "decision": analysis.decision, "created": created,
            "actions": [a.kind for a in taken]}


def webhook_policy(settings):
    from service.analytics.webhooks import WebhookPolicy

    return WebhookPolicy(secret=settings.webhook_secret, allow_private=settings.webhook_allow_private)


@shared_task(name="frugal.notify_decision", bind=True, max_retries=8)
def notify_decision(self, analysis_id: int) -> dict:
    """Deliver the analysis's outbox row (written with the analysis when its decision changed):
    signed, saying what automation did; retried with backoff until delivered."""
    from service.analytics import webhooks
    from service.store import experiments as experiment_store
    from service.store import outbox

    rt = runtime()
    with rt.db.unit_of_work() as session:
        row = outbox.for_analysis(session, analysis_id)
        if row is None:
            return {"sent": False, "reason": "no webhook for this analysis (decision unchanged, or no URL)"}
        if row.delivered_at is not None:
            return {"sent": False, "reason": "already delivered"}
        events, _ = experiment_store.events(session, row.experiment_id, limit=1000, offset=0)
    automation = [{"action": e.kind, "actor": e.actor, "at": e.at.isoformat(), "data": e.data}
                  for e in events if e.analysis_id == analysis_id]
    message = {**row.message, "automation": automation}
    now = datetime.now(timezone.utc)
    try:
        status = webhooks.post(row.url, message, webhook_policy(rt.settings), message_id=f"msg_analysis_{analysis_id}")
    except webhooks.WebhookRefused as exc:
        with rt.db.unit_of_work() as session:
            outbox.attempted(session, row.id, error=f"refused: {exc}", now=now)
        log.warning("webhook for analysis %s refused: %s", analysis_id, exc)
        return {"sent": False, "reason": f"refused: {exc}"}
    except webhooks.WebhookFailed as exc:
        with rt.db.unit_of_work() as session:
            outbox.attempted(session, row.id, error=str(exc), now=now)
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 300))
    with rt.db.unit_of_work() as session:
        outbox.attempted(session, row.id, error=None, now=now)
    return {"sent": True, "status": status, "automation": [a["action"] for a in automation]}


@shared_task(name="frugal.weekly_reports", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5,
             soft_time_limit=1500, time_limit=1800)
def weekly_reports(week: str | None = None) -> dict:
    """Beat (Monday morning): render last week's report of every experiment that ran in it, then the portfolio.

    Idempotent: a report is unique per (experiment, week) and rendering again replaces it.  ``week``
    ("2026-W47") re-renders a past week.
    """
    from service.reports import weekly
    from service.reports.weeks import IsoWeek

    rt = runtime()
    tz = rt.settings.report_timezone
    target = IsoWeek.parse(week) if week else IsoWeek.previous(datetime.now(timezone.utc), tz)
    records = weekly.render_week(rt.db, rt.settings, target)
    links = [{"experiment": r.experiment_name, "title": r.title, "url": weekly.report_url(rt.settings, r),
              "pdf": weekly.report_url(rt.settings, r, pdf=True)} for r in records]
    if rt.settings.report_webhook_url:
        notify_reports.delay(target.label, links)
    return {"week": target.label, "reports": [r.id for r in records]}


@shared_task(name="frugal.notify_reports", bind=True, max_retries=8)
def notify_reports(self, week: str, links: list[dict]) -> dict:
    """POST the week's report links to settings.report_webhook_url; retried with backoff."""
    from service.analytics import webhooks

    url = runtime().settings.report_webhook_url
    if not url:
        return {"sent": False, "reason": "no webhook"}
    message = {"event": "weekly_reports", "week": week, "reports": links}
    try:
        status = webhooks.post(url, message, webhook_policy(runtime().settings))
    except webhooks.WebhookRefused as exc:
        log.warning("report webhook refused: %s", exc)
        return {"sent": False, "reason": f"refused: {exc}"}
    except webhooks.WebhookFailed as exc:
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 300))
    return {"sent": True, "status": status}


def _slot(interval_s: float) -> str:
    now = datetime.now(timezone.utc).timestamp()
    start = int(now // interval_s * interval_s)
    return "sched:" + datetime.fromtimestamp(start, timezone.utc).isoformat()
