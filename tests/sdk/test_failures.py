"""The SDK under failure: the service down at start, killed mid-run, and slow."""

from __future__ import annotations

import gc
import json
import signal
import statistics
import time

import pytest

from frugal_sdk import Client
from tests.harness.proxy import DelayProxy
from tests.harness.servers import free_port

pytestmark = pytest.mark.postgres


def test_service_down_at_start_uses_the_bootstrap_within_the_timeout(live, tmp_path):
    with Client(live.url, live.sdk_key, timeout=5) as client:
        truth = {u: client.assign(live.experiment, u).arm for u in (f"u{i}" for i in range(200))}
        ruleset = client._rules  # the document the service sent, saved below as a bootstrap file
    bootstrap = tmp_path / "ruleset.json"
    bootstrap.write_text(json.dumps({"version": ruleset.version, "experiments": [
        {"name": r.name, "state": r.state, "mode": r.mode, "unit": r.unit, "phase": r.phase, "salt": r.salt,
         "coverage_bp": r.coverage_bp, "served_arm": r.served_arm,
         "arms": [{"name": n, "weight_bp": w, "policy": r.policies[n]} for n, w in zip(r.arms, r.weights_bp)]}
        for r in ruleset.rules.values()]}))
    down = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(down, live.sdk_key, init_timeout=0.5, timeout=0.5, bootstrap=bootstrap) as client:
        construct_s = time.monotonic() - started
        got = {u: client.assign(live.experiment, u) for u in truth}
        fallback = client.predict(live.experiment, "u1", live.features, fallback=0)
        stats = client.stats()
    assert construct_s < 0.5 * 1.1
    assert {u: a.arm for u, a in got.items()} == truth and all(a.stale for a in got.values())
    assert stats["ruleset_source"] == "bootstrap" and not client.ready
    assert fallback.prediction == 0 and fallback.fallback_reason.startswith("sdk_unavailable")


def test_service_down_at_start_without_bootstrap_gives_defaults_not_exceptions(live):
    down = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(down, live.sdk_key, init_timeout=0.3, timeout=0.3) as client:
        a = client.assign(live.experiment, "u")
        p = client.predict(live.experiment, "u", live.features)
    assert time.monotonic() - started < 2 * 0.3 * 1.1  # the start, then one predict, each bounded
    assert (a.arm, a.reason, a.error_code) == ("champion", "ERROR", "PROVIDER_NOT_READY")
    assert p.prediction is None and p.from_fallback


def test_service_killed_mid_run_assignments_continue_and_outcomes_all_arrive(live, tmp_path):
    cache = tmp_path / "ruleset-cache.json"
    with Client(live.url, live.sdk_key, timeout=0.5, refresh_interval=0.2, flush_interval=0.1,
                ruleset_cache=cache) as client:
        before = {u: client.assign(live.experiment, u).arm for u in (f"k{i}" for i in range(300))}
        sent_before = [client.predict(live.experiment, f"k{i}", live.features) for i in range(20)]
        for p in sent_before:
            client.record_outcome(p.request_id, 1.0)
        assert client.flush(timeout=10)

        live.server.signal(signal.SIGKILL)
        live.server.proc.wait(10)
        for i in range(300):
            client.record_outcome(f"while-down-{i}", float(i % 2))
        time.sleep(1.0)  # several refresh and delivery attempts fail meanwhile
        during = {u: client.assign(live.experiment, u) for u in before}
        stats_down = client.stats()
        assert {u: a.arm for u, a in during.items()} == before
        assert all(a.stale for a in during.values()) and stats_down["ruleset_errors"] >= 1
        assert stats_down["buffered"] == 300 and stats_down["dropped"] == 0 and stats_down["retries"] >= 1

        live.restart()
        assert client.flush(timeout=30)
        stats = client.stats()
    # "queued" is an acknowledgement too: on a loaded host the service may spool an insert that passes
    # its ingest lock/statement timeout rather than wait (docs/eventlog.md); it is stored shortly after
    assert stats["outcomes_sent"] + stats["outcomes_queued"] == 320 and stats["dropped"] == 0 and stats["buffered"] == 0
    deadline = time.monotonic() + 30
    while (stored := live.rows("SELECT count(*) AS n FROM outcomes WHERE request_id LIKE 'while-down-%'")[0].n) < 300 \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stored == 300
    assert json.loads(cache.read_text())["version"] == stats["ruleset_version"]


def test_outcomes_beyond_the_buffer_are_spooled_and_delivered_by_the_next_client(live, tmp_path):
    spool = tmp_path / "outcomes.spool"
    down = f"http://127.0.0.1:{free_port()}"
    with Client(down, live.sdk_key, local=False, timeout=0.2, buffer_size=50, spool_path=spool) as client:
        for i in range(120):
            client.record_outcome(f"spooled-{i}", 1.0)
        client.close(timeout=0.5)
        stats = client.stats()
    assert stats["dropped"] == 0 and stats["spooled"] == 120  # 70 overflowed, 50 written at close
    assert len(spool.read_text().splitlines()) == 120
    with Client(live.url, live.sdk_key, local=False, timeout=5, buffer_size=50, spool_path=spool) as client:
        assert client.flush(timeout=20)
        stats = client.stats()
    assert stats["outcomes_sent"] == 120 and stats["unspooled"] == 120 and not spool.exists()
    assert live.rows("SELECT count(*) AS n FROM outcomes WHERE request_id LIKE 'spooled-%'")[0].n == 120


def test_without_a_spool_a_full_buffer_drops_and_counts(live):
    down = f"http://127.0.0.1:{free_port()}"
    with Client(down, live.sdk_key, local=False, timeout=0.2, buffer_size=10) as client:
        for i in range(25):
            client.record_outcome(f"d{i}", 1.0)
        client.close(timeout=0.3)
        stats = client.stats()
    assert stats["dropped"] == 25 and stats["outcomes_sent"] == 0  # 15 at put, 10 at close


def test_a_slow_service_does_not_hold_the_caller_past_its_deadline(live):
    proxy = DelayProxy(live.port, delay_s=2.0)
    deadline = 0.4
    # The suite's process holds a large heap by now (models, plots, apps): a full cyclic-GC pass can
    # stall it for half a second, which would be the interpreter's pause, not the SDK's deadline.
    gc.collect()
    gc.disable()
    try:
        with Client(proxy.url, live.sdk_key, local=False, timeout=deadline) as client:
            took = []
            for i in range(5):
                started = time.monotonic()
                p = client.predict(live.experiment, f"slow-{i}", live.features, deadline=deadline, fallback=-1)
                took.append(time.monotonic() - started)
                assert p.prediction == -1 and p.fallback_reason.startswith("sdk_deadline")
    finally:
        gc.enable()
        proxy.close()
    assert deadline * 0.9 <= statistics.median(took) <= deadline * 1.1, took
    assert max(took) <= deadline * 1.25, took
