"""Logging: JSON lines to stderr (one object per record) for every process: the web app (configured by
create_app), gunicorn's own loggers (``gunicorn_logconfig``, used by service.gunicorn_conf) and the
Celery worker and beat (``configure_logging`` takes over Celery's loggers too).

A request id is bound for the length of each HTTP request (the caller's ``X-Request-ID`` when it
sends a sane one, else a new one; returned in the response's ``X-Request-ID``) and added to every
record logged while it is handled; inside a Celery task the task's id is added the same way.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from service.settings import Settings

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("frugal_request_id", default=None)
task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("frugal_task_id", default=None)



class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        bound = {"request_id": request_id.get(), "task_id": task_id.get()}
        for key in ("request_id", "experiment", "task_id"):
            value = getattr(record, key, None) or bound.get(key)
            if value:
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def _handler(settings_json: bool) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings_json else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._frugal = True  # type: ignore[attr-defined]
    return handler


def configure_logging(settings: Settings) -> None:
    """Frugal's and Celery's loggers at FRUGAL_LOG_LEVEL, kombu's, amqp's and alembic's at WARNING or
    above, all in one format (JSON lines unless FRUGAL_LOG_JSON=false)."""
    quiet = max(logging.getLevelName(settings.log_level), logging.WARNING)
    levels = {"frugal": settings.log_level, "celery": settings.log_level, "kombu": quiet, "amqp": quiet, "alembic": quiet}
    for name, level in levels.items():   # gunicorn.error is configured by gunicorn_logconfig
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(getattr(h, "_frugal", False) for h in logger.handlers):
            for h in list(logger.handlers):
                logger.removeHandler(h)
            logger.addHandler(_handler(settings.log_json))
        logger.propagate = False


def gunicorn_logconfig(level: str, *, json_lines: bool = True) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its error log (start-up, worker boots and exits) as JSON lines."""
    formatter = {"()": "service.logs.JsonFormatter"} if json_lines else {"format": "%(levelname)s %(name)s: %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"frugal": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "frugal", "stream": "ext://sys.stderr"}},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
        },
        "root": {"level": "WARNING", "handlers": ["stderr"]},
    }
