"""Every shell command README.md and docs/ give a reader, other than ``frugal ...`` (parsed one by one
in test_documented_commands.py), is run as written by a test or by the script CI runs.  ``RUN_BY``
says where each one runs; a command the docs gain without a place that runs it fails here, and so
does a place that no longer exists.  The only commands not run are Docker's: these hosts (and CI's)
have no Docker engine; ``docker-compose config`` validates the file they use and every command in
it is run from the installed wheel instead."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.processes import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_WORDS = ("make", "pip", "docker", "docker-compose", "curl", "gunicorn", "promtool", "python", "export",
                 "open", "celery", "alembic", "psql", "kubectl", "helm", "uv", "wrk")

WHEEL = "tests/deploy/test_installed_wheel.py::test_the_installed_wheels_run_the_documented_commands_on_postgres_and_redis"
WALKTHROUGH = "tests/deploy/test_documented_commands.py::test_the_readme_walkthrough_runs_on_the_embedded_default"
NO_ENGINE = "tests/deploy/test_ops_files.py::test_docker_compose_config_is_valid"

# command as written -> where it runs (a test's node id, or .ci/run)
RUN_BY = {
    "make demo": WALKTHROUGH,
    "make test": ".ci/run",
    "pip install .": WHEEL,
    "pip install '.[pdf]'": WHEEL,
    "pip install ./sdk": WHEEL,
    "export FRUGAL_DATABASE_URL=postgresql://frugal:secret@db:5432/frugal FRUGAL_BROKER_URL=redis://redis:6379/0":
        "tests/deploy/test_documented_shell_commands.py::test_the_documented_export_line_is_a_valid_configuration",
    "open http://localhost:8000/docs": WHEEL,
    "gunicorn -c python:service.gunicorn_conf 'service.app:create_app()'": WHEEL,
    "promtool test rules ops/prometheus/alerts_test.yml":
        "tests/deploy/test_ops_files.py::test_alert_rules_pass_promtool_and_their_unit_tests",
    "docker-compose config": NO_ENGINE,
    "python -m service.inference.profile":
        "tests/inference/test_profile.py::test_a_benchmark_in_a_fresh_process_measures_the_models_own_memory_the_same_from_any_caller",
    "python benchmarks/statistics.py":
        "tests/deploy/test_documented_shell_commands.py::test_the_statistics_benchmark_runs_as_documented",
    "python benchmarks/shadow_scoring.py --jobs 5000 --repeats 2 --reference-shares 0,1":
        "tests/deploy/test_documented_shell_commands.py::test_the_scorer_benchmark_runs_as_documented",
}
# Docker commands: validated (compose file, image's commands), not run: no Docker engine here
DOCKER_ONLY = {
    "docker compose -f docker/compose.yaml up --build -d",
    "docker compose -f docker/compose.yaml run --rm migrate frugal keys create --scope admin --name ops",
    "docker compose -f docker/compose.yaml up -d --scale web=3",
}


def documented_commands() -> set[str]:
    """Shell commands in ``sh`` code blocks and in inline code, as a reader would copy them."""
    found: set[str] = set()
    words = "|".join(re.escape(w) for w in sorted(COMMAND_WORDS, key=len, reverse=True))
    starts = re.compile(rf"^(?:{words})(?:\s|$)")
    for path in DOCS:
        text = path.read_text()
        for lang, block in re.findall(r"```([a-z]*)\n(.*?)```", text, re.S):
            if lang not in ("sh", "bash", "shell", "console"):
                continue
            for line in block.replace("\\\n", " ").splitlines():
                line = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
                if line and not line.startswith(("#", "frugal ")):
                    found.add(line)
        for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
            if starts.match(span) and not span.startswith("frugal "):
                found.add(span.strip())
    return found


def test_every_documented_shell_command_has_a_place_that_runs_it():
    documented = documented_commands()
    unplaced = documented - set(RUN_BY) - DOCKER_ONLY
    assert not unplaced, f"documented commands no test runs (add a test and a RUN_BY entry): {sorted(unplaced)}"
    stale = (set(RUN_BY) | DOCKER_ONLY) - documented
    assert not stale, f"RUN_BY names commands the docs no longer give: {sorted(stale)}"


# what a test holds when it runs the command: the command itself, as a string it runs, except the
# module the benchmark spawns (its test calls the function that spawns it)
WRITTEN_AS = {"python -m service.inference.profile": "profile_in_fresh_process("}


@pytest.mark.parametrize("command", sorted(RUN_BY))
def test_the_place_that_runs_a_documented_command_exists_and_holds_it(command):
    where = RUN_BY[command]
    if where == ".ci/run":
        assert re.search(rf"^\s*{re.escape(command)}\s*$", (ROOT / ".ci" / "run").read_text(), re.M)
        return
    path, name = where.split("::")
    source = (ROOT / path).read_text()
    assert re.search(rf"^def {re.escape(name)}\(", source, re.M), f"{where} does not exist"
    if where != NO_ENGINE:
        assert WRITTEN_AS.get(command, command) in source, f"{path} does not hold {command!r} as written"


def test_the_documented_export_line_is_a_valid_configuration(tmp_path):
    """The README's production ``export`` line, in a real shell, gives settings that validate."""
    line = next(c for c in RUN_BY if c.startswith("export "))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRUGAL_")}
    env.update(PYTHONPATH=str(ROOT), FRUGAL_DATA_DIR=str(tmp_path))
    script = ("from service.settings import load_settings; s = load_settings(); "
              "print(s.database_url); print(s.broker_url)")
    done = subprocess.run(["bash", "-c", f"{line}\nexec {shlex.quote(sys.executable)} -c {shlex.quote(script)}"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["postgresql://frugal:secret@db:5432/frugal", "redis://redis:6379/0"], done.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_statistics_benchmark_runs_as_documented(tmp_path):
    """``python benchmarks/statistics.py`` as docs/statistics.md gives it (python: this venv's), with
    fewer simulations than the documented table (2,000 per cell take an hour here) and without the
    gbstats comparison (it builds its own virtualenv): the same script and functions, printing every
    row of the documented table with figures a simulation of that size can give."""
    command = next(c for c in RUN_BY if c.startswith("python benchmarks/statistics.py"))
    done = subprocess.run([*shlex.split(command), "--sims", "40", "--no-gbstats"], cwd=ROOT,
                          env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"),
                          capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (ROOT / "docs" / "statistics.md").read_text().split("`python benchmarks/statistics.py`", 1)[1]
    designs = re.findall(r"^    ((?:A/B|paired) [a-z_]+)\s", table, re.M)
    assert len(designs) == 10, designs
    for design in designs:
        row = re.search(rf"^\s*{re.escape(design)}\s+([\d,]+)\s+([\d.]+) ± ([\d.]+)", done.stdout, re.M)
        assert row, (design, done.stdout[-3000:])
        assert 0.0 <= float(row.group(2)) <= 1.0 and float(row.group(3)) > 0.0, row.group(0)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_scorer_benchmark_runs_as_documented():
    """``python benchmarks/shadow_scoring.py --jobs 5000 --repeats 2 --reference-shares 0,1`` as
    docs/models.md gives it, on this host's Postgres, with real ``frugal scorer`` processes: every queued
    job is scored into exactly one row (the script exits non-zero otherwise), and timing the champion
    beside the challenger costs the scorer throughput, as the docs say (a share-1 scorer does a
    champion run per job on top of the challenger's)."""
    command = "python benchmarks/shadow_scoring.py --jobs 5000 --repeats 2 --reference-shares 0,1"
    done = subprocess.run(shlex.split(command), cwd=ROOT,
                          env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"),
                          capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stored = re.search(r"challenger rows stored: ([\d,]+) of ([\d,]+) jobs queued, distinct request ids ([\d,]+)", done.stdout)
    assert stored and len({g.replace(",", "") for g in stored.groups()}) == 1, done.stdout[-2000:]
    ratio = re.search(r"reference share 1 / 0: ([\d.]+)x the rows per scorer CPU-second", done.stdout)
    assert ratio, done.stdout[-2000:]
    assert 0.2 < float(ratio.group(1)) < 1.0, ratio.group(0)
