"""Celery bound to the Flask app (Flask's ``examples/celery`` pattern).

Every task runs inside the Flask app context, so domain code reaches the database through the same
``Runtime`` as the web process.  Nothing here runs at import: ``make_celery`` is called by
``create_worker_app`` (the CLI) or by tests.
"""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask

from service.settings import Settings


def make_celery(app: Flask) -> Celery:
    settings: Settings = app.extensions["frugal"].settings

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=settings.resolved_broker_url,
        result_backend=settings.resolved_result_backend,
        task_default_queue=settings.task_queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,                 # tasks are idempotent: redelivery is safe
        task_reject_on_worker_lost=True,     # a killed worker's task goes back to the queue
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_time_limit=600,
        task_soft_time_limit=540,
        task_track_started=True,
        result_expires=86_400,
        broker_connection_retry_on_startup=True,
        # Redis: a task whose worker died unacknowledged comes back after this long.
        broker_transport_options={"visibility_timeout": settings.task_redelivery_s}
        if settings.resolved_broker_url.startswith(("redis://", "rediss://")) else {},
        beat_schedule=__import__("service.worker.schedule", fromlist=["beat_schedule"]).beat_schedule(settings),
        timezone=settings.report_timezone,
        worker_hijack_root_logger=False,
    )
    celery.set_default()
    app.extensions["celery"] = celery
    # Register the task modules with this app.
    __import__("service.worker.tasks")
    return celery


def create_worker_app(settings: Settings | None = None) -> Celery:
    from service.app import create_app

    return make_celery(create_app(settings))
