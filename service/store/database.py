"""The database handle: engine, session factory and the unit of work.

Stores never commit; :meth:`Database.unit_of_work` commits or rolls back, and turns a lost
connection into :class:`~service.errors.ServiceUnavailable` (503) instead of a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
import threading
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.errors import ServiceUnavailable


def normalize_url(url: str) -> str:
    """Pin the psycopg2 driver: SQLAlchemy 2.1 otherwise assumes psycopg 3 for postgresql://."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """Create an engine with the settings each backend needs.  Connects lazily."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5, "application_name": "frugal"},
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the event writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


NOT_MIGRATED = "the database schema is not at this release's revision: run 'frugal db upgrade'"
# SQLSTATE undefined_table / undefined_column (Postgres); SQLite says it in words.
_SCHEMA_CODES = {"42P01", "42703"}


def schema_missing(exc: DBAPIError) -> bool:
    """Whether ``exc`` says a table or column does not exist: an unmigrated (or older) schema."""
    if getattr(exc.orig, "pgcode", None) in _SCHEMA_CODES:
        return True
    text = str(exc.orig)
    return text.startswith(("no such table", "no such column")) or " has no column named " in text


class Database:
    """One engine and session factory per process (created after gunicorn forks)."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._bound_lock: threading.RLock | None = None

    def bind_to(self, connection: sa.Connection) -> None:
        """Run every unit of work inside ``connection``'s open transaction, as savepoints.

        Tests use this to roll a whole test back (SQLAlchemy's "joining a session into an external
        transaction" recipe); production code never calls it.
        """
        self._sessions = sessionmaker(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint")
        self._bound_lock = threading.RLock()  # one connection: background writers take turns with the test


    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """Yield a session; commit on success, roll back on any exception."""
        if self._bound_lock is not None:
            with self._bound_lock:
                with self._unit_of_work() as session:
                    yield session
            return
        with self._unit_of_work() as session:
            yield session

    @contextmanager
    def _unit_of_work(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except (OperationalError, DBAPIError) as exc:
            session.rollback()
            if schema_missing(exc):
                raise ServiceUnavailable(NOT_MIGRATED) from exc
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                raise ServiceUnavailable("the database is unreachable; retry shortly") from exc
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
