"""Operator mistakes end every command with one line saying what is wrong and what to do (never a
traceback), and a request against an unmigrated database is a 503 problem, not a 500."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.processes import ROOT
from tests.harness.servers import free_port

# Commands that need the database, with arguments that would be valid against a migrated one.
COMMANDS = [
    ["keys", "list"],
    ["keys", "create", "--scope", "admin", "--name", "x"],
    ["keys", "revoke", "1"],
    ["models", "register", "{model}", "--name", "m", "--version", "1", "--task", "binary"],
    ["models", "bench", "m"],
    ["models", "quantize", "m", "--to", "int8"],
    ["report", "--experiment", "x"],
    ["report", "--portfolio", "--pdf"],
]


def _frugal(args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRUGAL_")}
    env.update({"PYTHONPATH": str(ROOT), "FRUGAL_DATA_DIR": str(tmp_path / "data")}, **extra)
    return env


def _assert_one_line(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def model_file(demo_models) -> str:
    return str(next(iter(demo_models.values())).path)


def _args(command, model_file):
    return [a.replace("{model}", model_file) for a in command]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_database_that_is_down_is_one_line_naming_it(command, model_file, tmp_path):
    env = _env(tmp_path, FRUGAL_DATABASE_URL=f"postgresql://frugal:secret@127.0.0.1:{free_port()}/frugal")
    done = _frugal(_args(command, model_file), env, tmp_path)
    _assert_one_line(done, "postgresql://frugal:***@127.0.0.1")
    assert "secret" not in done.stderr


def test_db_upgrade_against_a_database_that_is_down_is_one_line(tmp_path):
    env = _env(tmp_path, FRUGAL_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/frugal")
    _assert_one_line(_frugal(["db", "upgrade"], env, tmp_path), "cannot use the database", "Connection refused")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_unmigrated_database_is_one_line_saying_run_db_upgrade(command, model_file, fresh_pg_empty, tmp_path):
    done = _frugal(_args(command, model_file), _env(tmp_path, FRUGAL_DATABASE_URL=fresh_pg_empty), tmp_path)
    _assert_one_line(done, "frugal db upgrade")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_missing_embedded_database_is_one_line_and_no_empty_file_is_left(command, model_file, tmp_path):
    done = _frugal(_args(command, model_file), _env(tmp_path), tmp_path)
    _assert_one_line(done, "no database at", "frugal db upgrade")
    assert not (tmp_path / "data" / "frugal.db").exists()


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["beat"], ["db", "upgrade"], ["keys", "list"]], ids=" ".join)
def test_a_bad_setting_is_one_line_naming_the_variable(command, tmp_path):
    done = _frugal(command, _env(tmp_path, FRUGAL_RULESET_TTL_S="soon"), tmp_path)
    _assert_one_line(done, "FRUGAL_RULESET_TTL_S")


def test_frugal_serve_listens_on_frugal_bind(tmp_path, sqlite_url, data_dir):
    import httpx

    from tests.harness.processes import Process

    port = free_port()
    env = _env(tmp_path, FRUGAL_DATA_DIR=str(data_dir), FRUGAL_BIND=f"127.0.0.1:{port}", FRUGAL_WEB_WORKERS="1")
    proc = Process([sys.executable, "-m", "service.cli", "serve"], env, tmp_path / "serve.log")
    try:
        import time

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.proc.poll() is None, proc.log()
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.2)
    finally:
        proc.stop()


@pytest.mark.parametrize("own_db", ["postgres", "sqlite"])
def test_a_predict_against_an_unmigrated_database_is_a_503_problem(own_db, request, app_factory, data_dir):
    url = request.getfixturevalue("fresh_pg_empty") if own_db == "postgres" else f"sqlite:///{data_dir / 'empty.db'}"
    client = app_factory(url, isolate=False).test_client()
    for path, body in (("/v1/predict", {"experiment": "x", "unit_id": "u", "features": [1.0]}),
                       ("/v1/experiments", None)):
        r = client.post(path, json=body, headers={"Authorization": "Bearer frg_0123456789abcdef0123456789abcdef"}) if body \
            else client.get(path, headers={"Authorization": "Bearer frg_0123456789abcdef0123456789abcdef"})
        assert r.status_code == 503, (path, r.status_code, r.get_data(as_text=True))
        assert r.mimetype == "application/problem+json"
        assert "frugal db upgrade" in r.get_json()["detail"]
