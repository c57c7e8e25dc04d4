"""A scorer scores the one-row requests it took off its pipe together, yet charges each one the
time of a single-request run: real onnxruntime sessions on the demo models, real policies from a
registered experiment (SQLite).  Only the runner is wrapped, to record the size of each real run."""

from __future__ import annotations

import math

import pytest


@pytest.fixture
def shadow_rig(sqlite_url, data_dir, demo_models):
    from sklearn.datasets import load_breast_cancer

    from service.routing.runtime import catalog, model_runner
    from service.runtime import Runtime
    from tests.conftest import make_settings
    from tests.routing.conftest import seed

    seed(sqlite_url, data_dir, demo_models, mode="shadow", name="batch", shadow_sample=1.0)
    rt = Runtime(make_settings(data_dir, database_url=sqlite_url))
    config = catalog(rt).get("batch")
    real = model_runner(rt)
    runs: list[tuple[str, int]] = []

    def recording(spec, rows, use_cache):
        runs.append((spec.ref, len(rows)))
        return real(spec, rows, use_cache)

    yield {"rt": rt, "config": config, "run": recording, "real": real, "runs": runs,
           "rows": load_breast_cancer().data[:120].tolist()}
    rt.close()


def _jobs(config, rows, policy=None, prefix="r", use_cache=False):
    from service.routing.shadow import ShadowJob

    return [ShadowJob(config.id, config.phase, policy or config.challenger, use_cache,
                      [(f"{prefix}{k}", f"u{k}", row, 0.25 + k / 1000)]) for k, row in enumerate(rows)]


def _score(rig, jobs, batched=None):
    from service.routing.shadow import score_batch

    events: list[dict] = []
    counts = score_batch(rig["run"], rig["rt"].settings, lambda e: events.append(e) or True, jobs, batched)
    return counts, {e["request_id"]: e for e in events}


def _alone(rig, job):
    from service.routing.shadow import score_job

    events: list[dict] = []
    score_job(rig["real"], rig["rt"].settings, lambda e: events.append(e) or True, job)
    return events[0]


def test_one_row_requests_are_scored_in_two_runs_and_each_is_charged_a_single_run(shadow_rig):
    rig, config = shadow_rig, shadow_rig["config"]
    jobs = _jobs(config, rig["rows"][:40])
    counts, events = _score(rig, jobs)

    assert counts == (40, 0, 0)
    assert rig["runs"] == [(config.challenger.primary.ref, 1), (config.challenger.primary.ref, 39)]
    single = {e["inference_ms"] for e in events.values()}
    assert len(single) == 1 and next(iter(single)) > 0   # every row: the one timed single-row run
    for job in jobs:
        request_id, _, _, overhead_ms = job.rows[0]
        event, alone = events[request_id], _alone(rig, job)
        # the same answer the challenger gives that request alone, logged as the challenger's row
        assert (event["label"], event["model_id"], event["served"]) == (alone["label"], alone["model_id"], False)
        assert math.isclose(event["confidence"], alone["confidence"], rel_tol=1e-6)
        assert math.isclose(event["latency_ms"], overhead_ms + event["inference_ms"])
        assert event["cost"] > 0


def test_a_request_of_several_rows_is_scored_as_one_run_of_its_own(shadow_rig):
    from service.routing.shadow import ShadowJob

    rig, config = shadow_rig, shadow_rig["config"]
    singles = _jobs(config, rig["rows"][:10])
    several = ShadowJob(config.id, config.phase, config.challenger, False,
                        [(f"multi{k}", "u-multi", row, 0.5) for k, row in enumerate(rig["rows"][10:15])])
    counts, events = _score(rig, [singles[0], several, *singles[1:]])

    assert counts == (15, 0, 0)
    assert sorted(size for _, size in rig["runs"]) == [1, 5, 9]
    multi = [events[f"multi{k}"] for k in range(5)]
    assert len({e["inference_ms"] for e in multi}) == 1   # its run's time, shared by its rows


def test_a_cascade_charges_the_rows_it_escalates_both_models_runs(shadow_rig):
    from service.routing.catalog import PolicySpec

    rig, config = shadow_rig, shadow_rig["config"]
    cheap, fallback = config.challenger.primary, config.champion.primary
    cascade = PolicySpec("cascade", cheap, fallback, threshold=0.999)
    counts, events = _score(rig, _jobs(config, rig["rows"], cascade))

    assert counts == (120, 0, 0)
    escalated = [e for e in events.values() if e["answered_by_id"] == fallback.id]
    kept = [e for e in events.values() if e["answered_by_id"] == cheap.id]
    assert escalated and kept   # the threshold splits the bundled data
    assert len({e["inference_ms"] for e in kept}) == 1
    cheap_ms = kept[0]["inference_ms"]
    assert all(e["inference_ms"] > cheap_ms for e in escalated)   # cheap run + a single fallback run
    assert (fallback.ref, 1) in rig["runs"] and len(rig["runs"]) == 4


def test_a_row_the_challenger_refuses_fails_only_its_own_request(shadow_rig):
    rig, config = shadow_rig, shadow_rig["config"]
    rows = [list(r) for r in rig["rows"][:20]]
    rows[7] = rows[7][:-1]   # one feature short: the batched run fails, then each request runs alone
    counts, events = _score(rig, _jobs(config, rows))

    assert counts == (19, 1, 0)
    assert "r7" not in events and len(events) == 19


def test_with_the_cache_on_a_hit_costs_nothing_and_the_rest_are_charged_the_last_timed_run(shadow_rig):
    from service.routing.shadow import timed_batch_runner

    rig, config = shadow_rig, shadow_rig["config"]
    batched = timed_batch_runner(rig["run"])   # as a scorer keeps it across batches
    _, first = _score(rig, _jobs(config, rig["rows"][:10], prefix="a", use_cache=True), batched)
    timed = first["a0"]["inference_ms"]
    # the next batch leads with a row the cache holds: no single run to time in it
    counts, events = _score(rig, _jobs(config, [rig["rows"][0], *rig["rows"][20:30]], prefix="b", use_cache=True), batched)

    assert counts == (11, 0, 0) and timed > 0
    assert events["b0"]["cache_hit"] and events["b0"]["inference_ms"] == 0 and events["b0"]["cost"] == 0
    assert all(events[f"b{k}"]["inference_ms"] == timed and not events[f"b{k}"]["cache_hit"] for k in range(1, 11))
