"""The operations files in the repository are valid and match what Frugal exposes: the Prometheus
alert rules (promtool check + promtool's rule unit tests), the Grafana dashboard's queries, and the
Docker files (``docker-compose config`` and the wheel-only image)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from tests.harness.processes import ROOT
from tests.harness.servers import IN_CI

OPS = ROOT / "ops"
PROMQL_FUNCTIONS = {"rate", "sum", "by", "histogram_quantile", "increase", "le", "up"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed: `make system-deps` installs it (Debian package)", pytrace=False)
        pytest.skip(f"{name} not installed (make system-deps installs it; CI runs this)")
    return path


def _exposed_names() -> set[str]:
    """Every sample name Frugal's /v1/metrics and the worker's metrics port can answer."""
    from service.metrics import METRICS
    from service.prometheus import instruments

    names = set(METRICS) | {"frugal_processes"}
    for metric in vars(instruments()).values():
        base = metric._name
        kind = metric._type
        names |= {f"{base}_total"} if kind == "counter" else {f"{base}_bucket", f"{base}_count", f"{base}_sum"}
    return names


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(frugal_[a-z0-9_]+)", expr))


def _dashboard_exprs() -> list[str]:
    board = json.loads((OPS / "grafana" / "frugal.json").read_text())
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def test_alert_rules_pass_promtool_and_their_unit_tests():
    promtool = _tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=OPS / "prometheus", capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # as docs/deploy.md writes it, from the checkout's root (promtool: Debian's, wherever _tool found it)
    documented = shlex.split("promtool test rules ops/prometheus/alerts_test.yml")
    tested = subprocess.run([promtool, *documented[1:]], cwd=ROOT, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_dashboard_queries_are_valid_promql(tmp_path):
    promtool = _tool("promtool")
    exprs = _dashboard_exprs()
    assert len(exprs) >= 10
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"frugal:dashboard_{i}", "expr": e.replace("$__rate_interval", "5m")} for i, e in enumerate(exprs)]}]}
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run([promtool, "check", "rules", str(tmp_path / "dashboard.yml")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_and_alerts_only_use_metrics_frugal_exposes():
    exposed = _exposed_names()
    alerts = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    used = set()
    for expr in _dashboard_exprs() + [r["expr"] for g in alerts["groups"] for r in g["rules"]]:
        used |= _metric_names(expr)
    assert used, "no metric names found"
    assert used <= exposed, sorted(used - exposed)
    # and the dashboard shows the labelled families, not only the old totals
    assert {"frugal_model_predictions_total", "frugal_prediction_latency_seconds_bucket",
            "frugal_model_inference_seconds_bucket", "frugal_worker_tasks_total"} <= used


def test_docker_compose_config_is_valid():
    compose = _tool("docker-compose")
    done = subprocess.run([compose, "-f", str(ROOT / "docker" / "compose.yaml"), "config", "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_the_installed_wheel_and_compose_runs_real_commands():
    from click.testing import CliRunner

    from service.cli import main

    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    for needed in ("COPY pyproject.toml setup.py", "COPY migrations ./migrations", "pip wheel --no-deps", 'CMD ["frugal", "serve"]'):
        assert needed in dockerfile, needed
    runtime_stage = dockerfile.split("AS runtime", 1)[1]
    assert "COPY --chown" not in runtime_stage and "gunicorn.conf" not in dockerfile  # nothing from the source tree
    for path in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "service", "analysis", "migrations"):
        assert (ROOT / path).exists(), path
    services = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    commands = [s.get("command") for s in services.values() if s.get("image") == "frugal:latest"]
    assert [c for c in commands if c] and None in commands   # web uses the image's CMD
    for command in filter(None, commands):
        assert command[0] == "frugal"
        result = CliRunner().invoke(main, [*command[1:], "--help"])
        assert result.exit_code == 0, (command, result.output)
    volumes = {name: s.get("volumes") for name, s in services.items() if s.get("image") == "frugal:latest"}
    mounted = [v[0].split(":")[0] for v in volumes.values() if v]
    assert len(mounted) == len(set(mounted)), volumes   # no two Frugal services share a data directory
