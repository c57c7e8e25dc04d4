"""Per-process runtime: the objects a request needs, built once per (forked) worker process.

``create_app`` builds a :class:`Runtime` holding only cheap, connection-free objects; the database
engine connects on first use, onnxruntime sessions and background threads start lazily, so
gunicorn can fork after the app is created without sharing a socket, a thread or a session.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from flask import current_app

from service.auth import Authenticator
from service.settings import Settings
from service.store.database import Database


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.resolved_database_url)
        self.auth = Authenticator(self.db, ttl_s=settings.auth_cache_ttl_s, revoked_dir=settings.data_dir / "revoked",
                                  stale_max_s=settings.auth_stale_max_s)
        self._lazy: dict[str, Any] = {}
        self._lock = threading.RLock()  # a factory may build another lazy object
        self._pid = os.getpid()
        self._closers: list[Callable[[], None]] = []

    def lazy(self, name: str, factory: Callable[[], Any]) -> Any:
        """Return the per-process singleton ``name``, creating it on first use after a fork."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    # Forked: forget the parent's objects (threads and sessions do not survive).
                    self._lazy.clear()
                    self._closers.clear()
                    self.db.engine.dispose(close=False)
                    self._pid = os.getpid()
        try:
            return self._lazy[name]
        except KeyError:
            with self._lock:
                if name not in self._lazy:
                    self._lazy[name] = factory()
                return self._lazy[name]

    def peek(self, name: str) -> Any:
        """The per-process object ``name`` if this process has created it, else None."""
        if self._pid != os.getpid():
            return None
        return self._lazy.get(name)

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        """Flush and stop background work (gunicorn worker exit, test teardown)."""
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()
        self._lazy.clear()
        self.db.dispose()


def runtime() -> Runtime:
    return current_app.extensions["frugal"]
