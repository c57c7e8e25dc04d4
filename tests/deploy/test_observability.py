"""Operations: labelled Prometheus metrics added up across a real gunicorn's workers, the worker's
task metrics on its own port, JSON log lines from gunicorn and Celery with request and task ids."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tests.harness.processes import WebServer, Worker, frugal_env
from tests.harness.servers import free_port
from tests.routing.conftest import seed

pytestmark = [pytest.mark.slow]


def _samples(text: str, name: str) -> dict[str, float]:
    """{label text: value} of every sample of ``name``."""
    found = {}
    for match in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M):
        found[match.group(1) or ""] = float(match.group(2))
    return found


def _json_lines(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        if line.strip():
            records.append(json.loads(line))   # raises on a plain-text line
    return records


def test_metrics_are_labelled_per_experiment_arm_and_model_across_gunicorn_workers(sqlite_url, data_dir, demo_models, tmp_path):
    from service.auth import create_key
    from service.runtime import Runtime
    from tests.conftest import make_settings

    s = seed(sqlite_url, data_dir, demo_models)
    rt = Runtime(make_settings(data_dir, database_url=sqlite_url))
    read = {"Authorization": "Bearer " + create_key(rt.db, name="r", scope="read").secret}
    rt.close()
    web = WebServer(frugal_env(data_dir, sqlite_url, FRUGAL_METRICS_INTERVAL_S="0.2", FRUGAL_LOG_LEVEL="INFO"),
                    tmp_path / "web.log", workers=2)
    n = 60
    try:
        with httpx.Client(timeout=30) as client:
            for k in range(n):
                r = client.post(web.url + "/v1/predict", headers={**s.sdk, "X-Request-ID": f"req-{k}"},
                                json={"experiment": s.experiment, "unit_id": f"u{k}", "features": s.features})
                assert r.status_code == 200, r.text
            missing = client.get(web.url + "/v1/experiments/nope", headers={**s.admin, "X-Request-ID": "abc-123"})
            assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "abc-123"
            assert re.fullmatch(r"[0-9a-f]{32}", client.get(web.url + "/healthz").headers["X-Request-ID"])
            deadline = time.monotonic() + 60
            while True:
                text = client.get(web.url + "/v1/metrics", headers=read).text
                served = _samples(text, "frugal_model_predictions_total")
                if sum(v for k, v in served.items() if 'served="true"' in k) >= n or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
    finally:
        web.stop()

    assert _samples(text, "frugal_predictions_total") == {"": n}        # the unlabelled counter keeps its meaning
    by_arm = {k: v for k, v in served.items() if 'served="true"' in k}
    assert sum(by_arm.values()) == n, served
    arms = {re.search(r'arm="(\w+)"', k).group(1): (re.search(r'model="([^"]+)"', k).group(1), v) for k, v in by_arm.items()}
    assert set(arms) == {"champion", "challenger"}, arms
    assert arms["champion"][0] == s.champion and arms["challenger"][0] == s.challenger
    assert all(f'experiment="{s.experiment}"' in k for k in by_arm)
    counts = _samples(text, "frugal_prediction_latency_seconds_count")
    assert sum(counts.values()) == n
    buckets = _samples(text, "frugal_prediction_latency_seconds_bucket")
    assert sum(v for k, v in buckets.items() if 'le="+Inf"' in k) == n
    assert sum(_samples(text, "frugal_model_inference_seconds_count").values()) >= 1
    http = _samples(text, "frugal_http_requests_total")
    assert http['{method="POST",route="/v1/predict",status="200"}'] == n, http
    assert http['{method="GET",route="/v1/experiments/<ref>",status="404"}'] == 1, http

    records = _json_lines((tmp_path / "web.log").read_text())        # gunicorn's own lines are JSON too
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["msg"] for r in records), records[:5]


@pytest.mark.worker
def test_the_worker_logs_json_at_frugal_log_level_and_serves_task_metrics(pg_url, redis_url, data_dir, tmp_path):
    from service.app import create_app
    from service.worker.celery_app import make_celery
    from tests.conftest import make_settings

    port = free_port()
    worker = Worker(frugal_env(data_dir, pg_url, redis_url, FRUGAL_LOG_LEVEL="INFO"), tmp_path / "worker.log",
                    extra=["--metrics-port", str(port)])
    try:
        celery = make_celery(create_app(make_settings(data_dir, database_url=pg_url, broker_url=redis_url)))
        for word in ("a", "b", "c"):
            assert celery.send_task("frugal.ping", args=[word]).get(timeout=120)["echo"] == word
        deadline = time.monotonic() + 30
        while True:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                text = ""
            tasks = _samples(text, "frugal_worker_tasks_total")
            if tasks.get('{state="SUCCESS",task="frugal.ping"}') == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert tasks.get('{state="SUCCESS",task="frugal.ping"}') == 3, text[-2000:]
        assert _samples(text, "frugal_worker_task_duration_seconds_count")['{task="frugal.ping"}'] == 3
    finally:
        worker.stop()
    lines = [line for line in (tmp_path / "worker.log").read_text().splitlines() if line.strip()]
    # Celery's shutdown notice is a print(), not a log record; everything else is a JSON line
    records = _json_lines("\n".join(line for line in lines if not line.startswith("worker: Warm shutdown")))
    assert any(r["level"] == "INFO" and r["logger"].startswith("celery") and "ready" in r["msg"] for r in records), records
