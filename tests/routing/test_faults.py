"""A failing or slow challenger never fails, or slows, a user's request.

The real router, catalog, onnxruntime sessions, event log and shadow scorer run against Postgres;
the only thing added is a fault on the challenger's model runner: it raises, or it sleeps well past
the deadline.  In shadow mode the web side never runs the challenger at all: the fault reaches the
scorer, which counts the failures per experiment.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

SLEEP_S = 1.5   # well past the deadline (500 ms), which is generous for a busy host


@pytest.fixture
def rig(fresh_pg, data_dir, demo_models):
    from service import experiments, registry
    from service.definition import ExperimentDefinition
    from service.eventlog import event_log
    from service.routing.router import Router
    from service.routing.runtime import catalog, model_runner
    from service.runtime import Runtime
    from tests.conftest import make_settings

    rt = Runtime(make_settings(data_dir, database_url=fresh_pg))
    roles = {m.role: m for m in demo_models.values() if getattr(m, "role", None)}
    refs = {role: registry.register(rt.db, rt.settings, m.path.read_bytes(), name=m.name, version=m.version, task=m.task)
            for role, m in roles.items() if role in ("champion", "challenger")}
    for name, mode in (("shadow", "shadow"), ("ab", "ab")):
        record = experiments.create(rt.db, ExperimentDefinition.model_validate({
            "name": name, "mode": mode, "champion": {"kind": "model", "model": refs["champion"].ref},
            "challenger": {"kind": "model", "model": refs["challenger"].ref}, "metric": {"kind": "binary", "margin": 0.02},
            "challenger_deadline_ms": 500}), actor="test")
        experiments.transition(rt.db, str(record.id), "start", actor="test")

    real = model_runner(rt)
    fault = {"kind": None}

    def run(spec, rows, use_cache):
        if spec.digest == refs["challenger"].digest:
            if fault["kind"] == "raise":
                raise RuntimeError("challenger exploded")
            if fault["kind"] == "sleep":
                time.sleep(SLEEP_S)
        return real(spec, rows, use_cache)

    log = event_log(rt)
    router = Router(catalog(rt), rt.settings, run, log.record_many)
    features = [0.5] * len(roles["champion"].feature_names)
    # Load the experiments and both onnxruntime sessions before any request is timed: the latency
    # bounds below are about the challenger's faults, not a cold start (one took 445 ms on a busy host).
    config = catalog(rt).get("shadow")
    for spec in (config.champion.primary, config.challenger.primary):
        real(spec, [features], False)
    yield {"rt": rt, "router": router, "fault": fault, "refs": refs, "features": features, "log": log, "run": run}
    router.close()
    rt.close()


def _rows(rt, where: str) -> list:
    with rt.db.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT request_id, arm, served, fallback_reason FROM predictions WHERE {where}")).all()


def _slower_than_the_fault(answers) -> int:
    """How many answers took as long as the fault.  A champion that waited for the challenger would
    make most of them that slow; one is allowed, for a stall of the shared host."""
    return sum(1 for a in answers if a.latency_ms >= SLEEP_S * 1000)


def _predict(rig, experiment: str, n: int, prefix: str):
    return [rig["router"].predict(experiment, [(f"{prefix}-u{k}", rig["features"], f"{prefix}-{k}")])[0] for k in range(n)]


@pytest.mark.parametrize("fault", ["raise", "sleep"])
def test_shadow_challenger_faults_never_reach_the_caller(rig, fault):
    from service.scorer import Scorer
    from service.store.shadow import DropReason, dropped

    rig["fault"]["kind"] = fault
    champion = rig["refs"]["champion"].ref
    n = 10 if fault == "raise" else 4
    answers = _predict(rig, "shadow", n, f"shadow-{fault}")
    assert all(a.arm == "champion" and a.served_by == champion and a.fallback_reason is None for a in answers)
    # the champion does not wait for the shadow challenger (which takes SLEEP_S a run)
    assert _slower_than_the_fault(answers) <= 1, sorted(a.latency_ms for a in answers)

    assert rig["log"].flush(timeout=30)
    assert len(_rows(rig["rt"], f"request_id LIKE 'shadow-{fault}-%' AND served")) == n
    scorer = Scorer(rig["rt"], rig["run"])
    while scorer.score_batch().claimed:
        pass
    shadow = _rows(rig["rt"], f"request_id LIKE 'shadow-{fault}-%' AND NOT served")
    with rig["rt"].db.unit_of_work() as session:
        drops = dropped(session, _experiment_id(rig, "shadow"))
    if fault == "raise":
        assert scorer.stats.failed == n and shadow == [] and drops == {DropReason.FAILED: n}
    else:
        assert scorer.stats.scored == n and len(shadow) == n and drops == {}
        assert {r.arm for r in shadow} == {"challenger"}


def _experiment_id(rig, name: str) -> int:
    from service.routing.runtime import catalog

    return catalog(rig["rt"]).get(name).id


@pytest.mark.parametrize("fault, reason", [("raise", "challenger_error"), ("sleep", "challenger_timeout")])
def test_ab_challenger_faults_fall_back_to_the_champion_and_are_recorded(rig, fault, reason):
    rig["fault"]["kind"] = fault
    champion = rig["refs"]["champion"].ref
    answers = _predict(rig, "ab", 40, f"ab-{fault}")
    challenger_arm = [a for a in answers if a.arm == "challenger"]
    assert challenger_arm, "some units must be assigned to the challenger"
    assert all(a.served_by == champion and a.fallback_reason == reason for a in challenger_arm)
    assert all(a.fallback_reason is None for a in answers if a.arm == "champion")
    # the deadline (500 ms) cut the wait short, for every challenger-arm request
    assert _slower_than_the_fault(answers) <= 1, sorted(a.latency_ms for a in answers)
    assert len(challenger_arm) >= 5

    assert rig["log"].flush(timeout=30)
    rows = _rows(rig["rt"], f"request_id LIKE 'ab-{fault}-%'")
    assert len(rows) == 40
    assert sorted(r.request_id for r in rows if r.fallback_reason == reason) == sorted(a.request_id for a in challenger_arm)


def test_a_trusted_inline_challenger_that_turns_slow_is_isolated_again_after_one_request(rig, monkeypatch):
    """After TRUST_AFTER fast answers the challenger runs on the request thread; its first overrun is
    answered by the champion (that one request waits for it) and sends it back behind the deadline."""
    from service.routing import router as router_module

    monkeypatch.setattr(router_module, "TRUST_AFTER", 5)
    answers = _predict(rig, "ab", 60, "trust-fast")
    challenger_units = [a for a in answers if a.arm == "challenger"]
    assert len(challenger_units) > 5 and all(a.fallback_reason is None for a in challenger_units)
    challenger_id = rig["refs"]["challenger"].id
    assert rig["router"]._trust[challenger_id] >= 5  # earned: now inline

    rig["fault"]["kind"] = "sleep"
    answers = _predict(rig, "ab", 60, "trust-slow")
    slow = [a for a in answers if a.arm == "challenger"]
    assert slow and all(a.fallback_reason == "challenger_timeout" for a in slow)
    assert all(a.served_by == rig["refs"]["champion"].ref for a in slow)
    waited = [a for a in slow if a.latency_ms >= SLEEP_S * 1000]
    assert len(waited) == 1  # only the inline run that overran; the rest were cut at the deadline
    assert rig["router"]._trust[challenger_id] == 0
