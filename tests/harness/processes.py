"""Start real Frugal processes (gunicorn web, Celery worker) for tests, and stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.harness.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
# One Celery queue per test run: two runs on one machine share Redis but never steal each other's tasks.
TEST_QUEUE = f"frugal-test-{os.getpid()}-{os.urandom(3).hex()}"


def frugal_env(data_dir: Path, database_url: str, broker_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRUGAL_")}
    env.update({"FRUGAL_DATA_DIR": str(data_dir), "FRUGAL_DATABASE_URL": database_url, "FRUGAL_LOG_LEVEL": "WARNING",
                "FRUGAL_AUTH_CACHE_TTL_S": "0", "FRUGAL_TASK_QUEUE": TEST_QUEUE, "PYTHONPATH": str(ROOT)})
    if broker_url:
        env["FRUGAL_BROKER_URL"] = broker_url
    env.update(extra)
    return env


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the test process dies, even by SIGKILL, so a killed test
    run never leaves a worker consuming the shared Redis queue for the next run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Process:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     start_new_session=True, preexec_fn=_die_with_parent)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 30, *, group: bool = True) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code.  ``group=False`` sends the SIGTERM to
        the main process only, as ``kill PID`` or ``docker stop`` does (the SIGKILL still goes to all)."""
        if self.proc.poll() is None:
            if group:
                self.signal(signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


class WebServer(Process):
    """gunicorn on loopback with the production config."""

    def __init__(self, env: dict[str, str], log: Path, *, workers: int = 2, port: int | None = None) -> None:
        self.port = port or free_port()
        argv = [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf",
                "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), "service.app:create_app()"]
        super().__init__(argv, env, log)
        self.url = f"http://127.0.0.1:{self.port}"
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not become healthy:\n{self.log()}")


class Worker(Process):
    """A real Celery worker process (``frugal worker``)."""

    def __init__(self, env: dict[str, str], log: Path, *, concurrency: int = 1, extra: list[str] | None = None) -> None:
        argv = [sys.executable, "-m", "service.cli", "worker", f"--concurrency={concurrency}", *(extra or [])]
        super().__init__(argv, env, log)


class ScorerProcess(Process):
    """A real shadow scorer process (``frugal scorer``)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__([sys.executable, "-m", "service.cli", "scorer"], env, log)

    def scored(self) -> int:
        """How many jobs it scored, from the line it prints when it stops."""
        import re

        found = re.findall(r"stopped: (\d+) scored", self.log_path.read_text(errors="replace"))
        if not found:
            raise AssertionError(f"the scorer did not report on stopping:\n{self.log()}")
        return int(found[-1])
