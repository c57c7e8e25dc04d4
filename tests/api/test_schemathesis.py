"""A schemathesis run over the live OpenAPI document of a real gunicorn on Postgres: every operation,
with an admin key and with an sdk key, checks not_a_server_error, response_schema_conformance,
content_type_conformance and status_code_conformance, and a short stateful phase: 0 failures.

Bounded: a fixed seed and a few examples per operation (FRUGAL_FUZZ_EXAMPLES, default 8; raise it to
fuzz harder by hand), benchmarks capped at 0.5 s (FRUGAL_BENCHMARK_MAX_S), and a hard 15-minute
timeout on the run.  One worker: CPython 3.11's ast module is not thread-safe (gh-106905), and
hypothesis parses lambdas with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.processes import WebServer, frugal_env
from tests.routing.conftest import seed

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance"


def _schemathesis() -> list[str]:
    found = Path(sys.executable).with_name("schemathesis")
    if found.exists():
        return [str(found)]
    if shutil.which("schemathesis"):
        return ["schemathesis"]
    pytest.fail("schemathesis is not installed: it is in the dev extras (make install)")


@pytest.mark.parametrize("scope", ["admin", "sdk"])
def test_schemathesis_finds_no_failure(pg_admin_url, demo_models, tmp_path, scope):
    from tests.harness import servers

    url = servers.create_database(pg_admin_url)
    data_dir = tmp_path / "data"
    s = seed(url, data_dir, demo_models)
    web = WebServer(frugal_env(data_dir, url, FRUGAL_AUTH_CACHE_TTL_S="0.5", FRUGAL_BENCHMARK_MAX_S="0.5"), tmp_path / "web.log", workers=2)
    key = (s.admin if scope == "admin" else s.sdk)["Authorization"]
    report = tmp_path / f"schemathesis-{scope}.json"
    try:
        result = subprocess.run(
            [*_schemathesis(), "run", f"{web.url}/openapi.json", "--checks", CHECKS,
             "--phases", "examples,coverage,fuzzing,stateful", "--header", f"Authorization: {key}",
             "--max-examples", os.environ.get("FRUGAL_FUZZ_EXAMPLES", "8"), "--seed", "15", "--workers", "1",
             "--request-timeout", "30", "--generation-database", "none", "--no-color",
             "--suppress-health-check", "all", "--report", "json", "--report-json-path", str(report)],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
        summary = result.stdout[-6000:]
        print(f"\nschemathesis ({scope} key):", " | ".join(line.strip() for line in summary.splitlines()
                                                       if "generated" in line or "Scenarios" in line or "API Links" in line))
        assert result.returncode == 0, summary + "\n" + result.stderr[-2000:] + "\n" + web.log()[-3000:]
    finally:
        web.stop()
        servers.drop_database(pg_admin_url, url)
