"""Find or start the real servers the tests need.

Order: the URL from the environment (``FRUGAL_TEST_DATABASE_URL`` / ``FRUGAL_TEST_REDIS_URL``);
else the default local server; else, if the binaries are installed, a throwaway server in a
temporary directory.  With ``CI=true`` a missing server fails the run; elsewhere the tests that
need it skip with one loud line.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import sqlalchemy as sa

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class Unavailable(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class ThrowawayPostgres:
    """A private Postgres cluster in a temp dir (also used by the durability test to kill it)."""

    def __init__(self, port: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="frugal-pg-"))
        self.port = port or free_port()
        initdb, self.pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not initdb or not self.pg_ctl:
            raise Unavailable("PostgreSQL binaries (initdb, pg_ctl) not installed")
        self._as_user = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres")
        self._run([initdb, "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"])

    def _run(self, cmd: list[str]) -> None:
        subprocess.run(self._as_user + cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
        self._run([self.pg_ctl, "-D", str(self.dir / "data"), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"])

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(self._as_user + [self.pg_ctl, "-D", str(self.dir / "data"), "-m", mode, "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class ThrowawayRedis:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise Unavailable("redis-server not installed")
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise Unavailable("throwaway redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/15"

    def destroy(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _pg_answers(url: str) -> bool:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def postgres_server() -> tuple[str, object | None]:
    """(admin URL of a reachable server, throwaway handle or None)."""
    url = os.environ.get("FRUGAL_TEST_DATABASE_URL") or DEFAULT_PG
    if _pg_answers(url):
        return url, None
    if os.environ.get("FRUGAL_TEST_DATABASE_URL"):
        raise Unavailable(f"FRUGAL_TEST_DATABASE_URL={url} does not answer")
    server = ThrowawayPostgres()
    server.start()
    print(f"\n[frugal tests] no Postgres at {DEFAULT_PG}: started a throwaway one on port {server.port}", file=sys.stderr)
    return server.url, server


def create_database(admin_url: str) -> str:
    """Create a fresh, uniquely named database and return its URL."""
    name = f"frugal_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg2://", 1), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    parsed = urlparse(admin_url)
    return parsed._replace(path=f"/{name}").geturl()


def drop_database(admin_url: str, url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    engine = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg2://", 1), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def redis_server() -> tuple[str, object | None]:
    url = os.environ.get("FRUGAL_TEST_REDIS_URL") or DEFAULT_REDIS
    parsed = urlparse(url)
    if port_open(parsed.hostname or "127.0.0.1", parsed.port or 6379):
        return url, None
    if os.environ.get("FRUGAL_TEST_REDIS_URL"):
        raise Unavailable(f"FRUGAL_TEST_REDIS_URL={url} does not answer")
    server = ThrowawayRedis()
    print(f"\n[frugal tests] no Redis at {DEFAULT_REDIS}: started a throwaway one on port {server.port}", file=sys.stderr)
    return server.url, server
