"""/v1/metrics adds up the counters of every process on a data directory (a real gunicorn's two web
workers and a shadow scorer, ``frugal scorer``), and its totals survive a restart."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.harness.processes import ScorerProcess, WebServer, frugal_env
from tests.routing.conftest import seed


def _parse(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def _metrics(web: WebServer, headers: dict[str, str]) -> dict[str, float]:
    r = httpx.get(web.url + "/v1/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    # every sample line is "name value" with a HELP and TYPE line before it
    for match in re.finditer(r"^(frugal_\w+) ", r.text, re.M):
        assert f"# TYPE {match.group(1)} " in r.text
    return _parse(r.text)


def _wait_for(web, headers, condition, timeout_s: float = 30.0) -> dict[str, float]:
    give_up = time.monotonic() + timeout_s
    while True:
        values = _metrics(web, headers)
        if condition(values) or time.monotonic() > give_up:
            return values
        time.sleep(0.2)


@pytest.mark.postgres
@pytest.mark.slow
def test_metrics_add_up_every_process_and_survive_a_restart(pg_admin_url, demo_models, tmp_path):
    from service.auth import create_key
    from service.runtime import Runtime
    from tests.conftest import make_settings
    from tests.harness import servers

    url = servers.create_database(pg_admin_url)
    data_dir = tmp_path / "data"
    s = seed(url, data_dir, demo_models, mode="shadow", shadow_sample=1.0)
    rt = Runtime(make_settings(data_dir, database_url=url))
    read = {"Authorization": "Bearer " + create_key(rt.db, name="r", scope="read").secret}
    rt.close()
    env = frugal_env(data_dir, url, FRUGAL_METRICS_INTERVAL_S="0.2")
    web = WebServer(env, tmp_path / "web.log", workers=2)
    scorer = ScorerProcess(env, tmp_path / "scorer.log")
    n = 120
    try:
        assert httpx.get(web.url + "/v1/metrics", timeout=10).status_code == 401
        assert httpx.get(web.url + "/v1/metrics", headers=s.sdk, timeout=10).status_code == 403
        with httpx.Client(base_url=web.url, timeout=10) as client:
            for k in range(n):
                r = client.post("/v1/predict", headers=s.sdk,
                                json={"experiment": s.experiment, "unit_id": f"m-{k}", "features": s.features})
                assert r.status_code == 200
        done = _wait_for(web, read, lambda v: v["frugal_shadow_scored_total"] == n and v["frugal_shadow_backlog"] == 0)
        assert done["frugal_predictions_total"] == n
        assert done["frugal_shadow_sampled_total"] == n and done["frugal_shadow_scored_total"] == n
        assert done["frugal_shadow_dropped_total"] == 0 and done["frugal_shadow_failed_total"] == 0
        assert done["frugal_shadow_backlog"] == 0
        assert done["frugal_eventlog_written_total"] >= 2 * n          # served rows + their shadow jobs
        assert done["frugal_eventlog_recorded_total"] == 2 * n
        assert done["frugal_processes"] >= 2                          # a web worker and the scorer, at least
        scorer.stop()
        web.stop()

        web = WebServer(env, tmp_path / "web2.log", workers=2)
        after = _metrics(web, read)
        assert after["frugal_predictions_total"] == n                 # retired, not reset
        assert after["frugal_shadow_scored_total"] == n
        assert after["frugal_eventlog_recorded_total"] == 2 * n
    finally:
        scorer.stop()
        web.stop()
        servers.drop_database(pg_admin_url, url)


def test_a_dead_process_counts_are_kept_its_gauges_are_not(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from service.metrics import collect, exposition

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / f"{gone.pid}.aaaa.json").write_text(json.dumps({"frugal_predictions_total": 7, "frugal_eventlog_queued": 3}))
    (directory / f"{os.getpid()}.bbbb.json").write_text(json.dumps({"frugal_predictions_total": 5, "frugal_eventlog_queued": 2}))
    totals, live = collect(directory)
    assert live == 1 and totals["frugal_predictions_total"] == 12 and totals["frugal_eventlog_queued"] == 2
    assert not (directory / f"{gone.pid}.aaaa.json").exists()
    assert json.loads((directory / "retired.json").read_text()) == {"frugal_predictions_total": 7}
    text = exposition(totals, live)
    assert "frugal_predictions_total 12\n" in text and "frugal_processes 1\n" in text
    assert "frugal_shadow_dropped_total 0\n" in text   # every metric is present, zero until counted
