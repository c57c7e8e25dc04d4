"""The wheels as an operator installs them: both wheels built from a copy of the source, then the
package installed into a fresh venv outside the checkout with the documented ``pip install`` commands
(no PYTHONPATH, another working directory), then the documented commands on Postgres and Redis:
``frugal db upgrade``, ``frugal keys create``, ``frugal serve`` (bound through FRUGAL_BIND), the docs
page, ``frugal worker``, ``frugal models register``; an experiment created and started over HTTP,
predictions and outcomes through the installed SDK, README's SDK snippet, the by-hand gunicorn
command, and an analysis run by the worker.

It installs every dependency into the new venv (from pip's cache on a warm host), so it is slow: one
test, marked ``slow``; ``make test`` runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.harness.processes import TEST_QUEUE, _die_with_parent
from tests.harness.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.timeout(1500)]

_COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", ".frugal", "build", "dist", "*.egg-info", "__pycache__",
                                      ".pytest_cache", "tests", "benchmarks")


# the documented commands this module runs as written
INSTALL_COMMANDS = ("pip install .", "pip install '.[pdf]'", "pip install ./sdk")
BY_HAND = "gunicorn -c python:service.gunicorn_conf 'service.app:create_app()'"
OPEN_DOCS = "open http://localhost:8000/docs"     # a browser's GET of the docs page, on this test's port


def _run(argv, *, env, cwd, timeout=600, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv outside the checkout with the frugal and frugal-sdk wheels (and their dependencies)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_COPY_IGNORE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("FRUGAL_")}
    wheels = base / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source), str(source / "sdk")],
         env=env, cwd=base)
    built = sorted(p.name for p in wheels.glob("*.whl"))
    assert len(built) == 2 and any(n.startswith("frugal-") for n in built) and any(n.startswith("frugal_sdk-") for n in built), built
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env=env, cwd=base)
    # installed as README.md and docs/deploy.md write it, from the source's root, with the venv's pip first on PATH
    in_venv = dict(env, PATH=f"{venv / 'bin'}:{env['PATH']}", PIP_DISABLE_PIP_VERSION_CHECK="1")
    for command in INSTALL_COMMANDS:
        _run(["bash", "-c", f"{command} --quiet"], env=in_venv, cwd=source, timeout=1200)
    shutil.rmtree(source)  # nothing may be read from a source tree from here on
    return venv, base, env


def test_the_installed_wheels_run_the_documented_commands_on_postgres_and_redis(
        installed, fresh_pg_empty, redis_url, demo_models, tmp_path):
    venv, base, clean_env = installed
    frugal = str(venv / "bin" / "frugal")
    work = tmp_path / "operator"          # a working directory with no source tree in it
    work.mkdir()
    port = free_port()
    env = dict(clean_env, FRUGAL_DATABASE_URL=fresh_pg_empty, FRUGAL_BROKER_URL=redis_url, FRUGAL_TASK_QUEUE=TEST_QUEUE,
               FRUGAL_DATA_DIR=str(work / "data"), FRUGAL_BIND=f"127.0.0.1:{port}", FRUGAL_WEB_WORKERS="1",
               FRUGAL_LOG_LEVEL="WARNING", FRUGAL_RULESET_TTL_S="0.2")

    # the package really is the installed one
    where = _run([str(venv / "bin" / "python"), "-c", "import service, frugal_sdk; print(service.__file__, frugal_sdk.__file__)"],
                 env=env, cwd=work).stdout
    assert str(ROOT) not in where and "site-packages" in where, where

    upgraded = _run([frugal, "db", "upgrade"], env=env, cwd=work)
    assert "database at revision" in upgraded.stdout and "(head " in upgraded.stdout, upgraded.stdout
    admin_key = _run([frugal, "keys", "create", "--scope", "admin", "--name", "ops"], env=env, cwd=work).stdout.strip()
    sdk_key = _run([frugal, "keys", "create", "--scope", "sdk", "--name", "backend"], env=env, cwd=work).stdout.strip()
    admin = {"Authorization": f"Bearer {admin_key}"}

    models = {m.role: m for m in demo_models.values() if getattr(m, "role", None)}
    for m in models.values():
        registered = _run([frugal, "models", "register", str(m.path), "--name", m.name, "--version", m.version,
                           "--task", m.task], env=env, cwd=work)
        assert registered.stdout.startswith(f"registered {m.name}:{m.version}"), registered.stdout

    logs = []
    procs = []
    try:
        for name, argv in (("web", [frugal, "serve"]), ("worker", [frugal, "worker", "--concurrency", "1"])):
            log = open(tmp_path / f"{name}.log", "wb")
            logs.append(log)
            procs.append(subprocess.Popen(argv, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, preexec_fn=_die_with_parent))
        url = f"http://127.0.0.1:{port}"   # FRUGAL_BIND, not the default 8000
        _wait(lambda: httpx.get(url + "/readyz", timeout=2).status_code == 200, 90, lambda: _tail(tmp_path / "web.log"))
        docs = httpx.get(url + urlsplit(OPEN_DOCS.split()[1]).path, follow_redirects=True, timeout=30)
        assert docs.status_code == 200 and "swagger" in docs.text.lower(), (docs.status_code, docs.text[:500])
        assert httpx.get(url + "/openapi.json", timeout=30).json()["paths"]["/v1/predict"]

        champion, challenger = (f"{models[r].name}:{models[r].version}" for r in ("champion", "challenger"))
        body = {"name": "wheel", "mode": "ab", "unit": "unit_id", "champion": {"kind": "model", "model": champion},
                "challenger": {"kind": "model", "model": challenger}, "metric": {"kind": "binary", "margin": 0.05},
                "design": {"alpha": 0.05, "power": 0.8, "planned_n_per_arm": 500, "method": "asymptotic_cs"}}
        created = httpx.post(url + "/v1/experiments", json=body, headers=admin, timeout=30)
        assert created.status_code == 201, created.text
        started = httpx.post(url + "/v1/experiments/wheel/start", json={"reason": "ci"}, headers=admin, timeout=30)
        assert started.status_code == 200, started.text

        # predictions and outcomes through the installed SDK (its own venv, its own process)
        rows = _rows(models["champion"])
        script = textwrap.dedent(f"""
            import json, sys
            from frugal_sdk import Client
            rows = json.loads(sys.stdin.read())
            with Client({url!r}, {sdk_key!r}, timeout=10, strict=True) as c:
                arms = {{}}
                for k, row in enumerate(rows):
                    p = c.predict("wheel", f"u{{k}}", row)
                    arms[p.arm] = arms.get(p.arm, 0) + 1
                    c.record_outcome(p.request_id, float(p.prediction))
                assert c.flush(timeout=30)
            print(json.dumps(arms))
        """)
        sdk_run = subprocess.run([str(venv / "bin" / "python"), "-c", script], input=json.dumps(rows), env=env, cwd=work,
                                 capture_output=True, text=True, timeout=300)
        assert sdk_run.returncode == 0, sdk_run.stderr[-3000:]
        arms = json.loads(sdk_run.stdout)
        assert set(arms) == {"champion", "challenger"} and sum(arms.values()) == len(rows), arms

        # README's SDK snippet as written, its placeholders bound (the server's address, this experiment)
        snippet = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
        snippet = snippet.replace("http://frugal:8000", url).replace("ranker-v2", "wheel")
        prelude = (f"sdk_key = {sdk_key!r}; user_id = 'readme-user'; features = {rows[0]!r}; clicked = 1.0\n"
                   "def my_local_model(features):\n    return 0.0\n")
        epilogue = "\nassert frugal.flush(timeout=30)\nprint(p.served_by, p.arm, arm)\n"
        readme_run = subprocess.run([str(venv / "bin" / "python"), "-c", prelude + snippet + epilogue], env=env, cwd=work,
                                    capture_output=True, text=True, timeout=120)
        assert readme_run.returncode == 0, readme_run.stderr[-3000:]
        served_by, p_arm, assigned = readme_run.stdout.split()
        assert assigned in ("champion", "challenger") and (p_arm == assigned or served_by == "caller_fallback"), readme_run.stdout
        expected_outcomes = len(rows) + (served_by != "caller_fallback")   # the snippet's outcome, if the service answered

        # the gunicorn command docs/deploy.md gives for running it by hand, from the venv, on another port
        hand_port = free_port()
        hand_log = open(tmp_path / "by-hand.log", "wb")
        logs.append(hand_log)
        procs.append(subprocess.Popen(["bash", "-c", f"exec {BY_HAND}"], env=dict(env, FRUGAL_BIND=f"127.0.0.1:{hand_port}",
                                      PATH=f"{venv / 'bin'}:{env['PATH']}"), cwd=work, stdout=hand_log,
                                      stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent))
        hand = f"http://127.0.0.1:{hand_port}"
        _wait(lambda: httpx.get(hand + "/readyz", timeout=2).status_code == 200, 90, lambda: _tail(tmp_path / "by-hand.log"))
        ruleset = httpx.get(hand + "/v1/sdk/ruleset", headers={"Authorization": f"Bearer {sdk_key}"}, timeout=30)
        assert ruleset.status_code == 200 and "wheel" in ruleset.text, ruleset.text[:500]   # same database, same experiment

        # the analysis, run by the worker from the wheel
        def analysed():
            task = httpx.post(url + "/v1/experiments/wheel/analyze", headers=admin, timeout=30)
            assert task.status_code == 202, task.text
            task_id = task.json()["task_id"]
            _wait(lambda: httpx.get(f"{url}/v1/tasks/{task_id}", headers=admin, timeout=10).json()["state"] in ("SUCCESS", "FAILURE"),
                  180, lambda: _tail(tmp_path / "worker.log"))
            state = httpx.get(f"{url}/v1/tasks/{task_id}", headers=admin, timeout=10).json()
            assert state["state"] == "SUCCESS", (state, _tail(tmp_path / "worker.log"))
            result = httpx.get(url + "/v1/experiments/wheel/results", headers=admin, timeout=30)
            assert result.status_code == 200, result.text
            return result.json()

        # outcomes reach the database through the event log; the analysis counts them once they are rolled up
        deadline = time.monotonic() + 120
        while True:
            result = analysed()
            n = sum(a["outcomes"] for a in result["inputs"]["decision_inputs"]["arms"].values())
            if n >= expected_outcomes or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert result["decision"] in ("PROMOTE", "CONTINUE", "REJECT", "FUTILE", "UNHEALTHY"), result
        assert n == expected_outcomes, result
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        for log in logs:
            log.close()


def _rows(model, n: int = 200) -> list[list[float]]:
    import csv

    with open(model.path.parent / "test.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [[float(r[name]) for name in model.feature_names] for r in reader]
    return [rows[k % len(rows)] for k in range(n)]


def _wait(condition, timeout: float, why) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s:\n{why()}")


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"
