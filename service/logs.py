"""Logging: JSON lines to stderr (one object per record), configured by create_app."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from service.settings import Settings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "experiment", "task_id"):
            if hasattr(record, key):
                payload[key] = getattr(record, key)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger("frugal")
    root.setLevel(settings.log_level)
    if not any(getattr(h, "_frugal", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if settings.log_json else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._frugal = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
