"""Shadow scoring in scorer processes (the default executor): real spawned processes, real
onnxruntime sessions, and their own event log writing to real Postgres.

Faults here are real ones: a corrupt challenger file, a scorer killed with SIGKILL, a full queue.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import sqlalchemy as sa


@pytest.fixture
def make_rig(fresh_pg, data_dir, demo_models):
    from service import experiments, registry
    from service.definition import ExperimentDefinition
    from service.routing.runtime import router
    from service.runtime import Runtime
    from tests.conftest import make_settings

    made = []

    def make(**overrides):
        # Scorers at normal priority unless a test is about priority: at SCHED_IDLE they get no CPU
        # while anything else on the host is busy, and these tests wait for them to score.
        overrides = {"shadow_nice": 0, "shadow_sched_idle": False, **overrides}
        rt = Runtime(make_settings(data_dir, database_url=fresh_pg, shadow_executor="process", **overrides))
        roles = {m.role: m for m in demo_models.values() if getattr(m, "role", None)}
        refs = {role: registry.register(rt.db, rt.settings, m.path.read_bytes(), name=m.name, version=m.version, task=m.task)
                for role, m in roles.items() if role in ("champion", "challenger")}
        record = experiments.create(rt.db, ExperimentDefinition.model_validate({
            "name": "shadow", "mode": "shadow", "champion": {"kind": "model", "model": refs["champion"].ref},
            "challenger": {"kind": "model", "model": refs["challenger"].ref}, "metric": {"kind": "binary", "margin": 0.02},
            "shadow_sample": 1.0}), actor="test")
        experiments.transition(rt.db, str(record.id), "start", actor="test")
        rig = {"rt": rt, "router": router(rt), "refs": refs, "rows": _dataset_rows(roles["champion"])}
        made.append(rt)
        return rig

    yield make
    for rt in made:
        rt.close()


def _dataset_rows(champion, n: int = 60) -> list[list[float]]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    assert data.data.shape[1] == len(champion.feature_names)
    return data.data[:n].tolist()


def _predict(rig, prefix: str, rows):
    return [rig["router"].predict("shadow", [(f"{prefix}-u{k}", row, f"{prefix}-{k}")])[0] for k, row in enumerate(rows)]


def _logged(rt, prefix: str) -> dict[bool, dict[str, float]]:
    with rt.db.engine.connect() as conn:
        found = conn.execute(sa.text("SELECT request_id, served, prediction, label FROM predictions WHERE request_id LIKE :p"),
                             {"p": f"{prefix}-%"}).all()
    out: dict[bool, dict[str, float]] = {True: {}, False: {}}
    for r in found:
        out[r.served][r.request_id] = r.label if r.prediction is None else r.prediction
    return out


def _wait(condition, timeout_s: float = 60.0) -> bool:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_scorer_process_scores_every_shadow_row_with_the_challenger_and_logs_it(make_rig):
    from service.inference.sessions import LoadedModel, new_session
    from service.registry import model_path

    rig = make_rig(shadow_nice=19, shadow_sched_idle=True)   # the defaults
    answers = _predict(rig, "ok", rig["rows"])
    champion = rig["refs"]["champion"].ref
    assert all(a.arm == "champion" and a.served_by == champion for a in answers)
    # the scorer runs at the lowest CPU priority: nice 19 and SCHED_IDLE
    assert _wait(lambda: rig["router"].stats.shadow_completed > 0)
    scorer = rig["router"].shadow.pids[0]
    assert os.getpriority(os.PRIO_PROCESS, scorer) == 19
    assert os.sched_getscheduler(scorer) == os.SCHED_IDLE

    rig["router"].close()   # the scorer finishes the queue and flushes its event log before it exits
    pids = rig["router"].shadow.pids
    assert len(pids) == 1 and os.getpid() not in pids   # scored in another process
    stats = rig["router"].stats
    assert (stats.shadow_submitted, stats.shadow_completed, stats.shadow_failed, stats.shadow_dropped) == (60, 60, 0, 0)
    assert rig["rt"].lazy("eventlog", lambda: None).flush(timeout=30)
    logged = _logged(rig["rt"], "ok")
    assert len(logged[True]) == 60 and len(logged[False]) == 60

    # the shadow rows hold the challenger's own answers for the same features
    spec = rig["refs"]["challenger"]
    model = LoadedModel(new_session(model_path(rig["rt"].settings, spec.digest)), spec.task, spec.signature)
    expected = [o.prediction for o in model.run(rig["rows"]).outputs]
    assert [logged[False][f"ok-{k}"] for k in range(60)] == [float(p) for p in expected]

    # the challenger's latency is "had it answered": the request's own overhead (its latency minus the
    # champion's inference) plus the challenger's run, never its bare inference time
    with rig["rt"].db.engine.connect() as conn:
        times = conn.execute(sa.text("SELECT request_id, served, latency_ms, inference_ms FROM predictions "
                                     "WHERE request_id LIKE 'ok-%'")).all()
    by = {(r.request_id, r.served): r for r in times}
    for k in range(60):
        champ, chall = by[(f"ok-{k}", True)], by[(f"ok-{k}", False)]
        overhead = champ.latency_ms - champ.inference_ms
        assert overhead > 0 and chall.inference_ms > 0
        assert chall.latency_ms >= overhead + chall.inference_ms - 1e-6


def test_a_corrupt_challenger_fails_in_the_scorer_is_counted_and_never_reaches_the_caller(make_rig):
    from service.registry import model_path

    rig = make_rig()
    model_path(rig["rt"].settings, rig["refs"]["challenger"].digest).write_bytes(b"not an onnx model")   # the scorer loads it on first use
    answers = _predict(rig, "bad", rig["rows"][:20])
    assert all(a.fallback_reason is None and a.served_by == rig["refs"]["champion"].ref for a in answers)
    rig["router"].close()
    stats = rig["router"].stats
    assert stats.shadow_failed == 20 and stats.shadow_completed == 0
    assert rig["rt"].lazy("eventlog", lambda: None).flush(timeout=30)
    logged = _logged(rig["rt"], "bad")
    assert len(logged[True]) == 20 and logged[False] == {}


def test_a_killed_scorer_is_restarted_and_what_it_lost_is_counted(make_rig):
    from service.routing import shadow as shadow_module

    rig = make_rig()
    router = rig["router"]
    _predict(rig, "before", rig["rows"][:20])
    assert _wait(lambda: router.stats.shadow_completed == 20)
    assert _wait(lambda: len(_logged(rig["rt"], "before")[False]) == 20)   # written by the scorer's event log
    first = router.shadow.pids[0]
    os.kill(first, signal.SIGSTOP)   # alive but not reading: the next rows wait in its pipe
    router.predict("shadow", [(f"lost-u{k}", row, f"lost-{k}") for k, row in enumerate(rig["rows"][20:30])])
    assert _wait(lambda: router.shadow._sent == 30, 10)
    os.kill(first, signal.SIGKILL)
    assert _wait(lambda: not router.shadow._scorers[0][0].is_alive(), 10)

    time.sleep(max(shadow_module.RESTART_EVERY_S, shadow_module.LIVENESS_EVERY_S))
    answers = _predict(rig, "after", rig["rows"][30:60])
    assert all(a.served_by == rig["refs"]["champion"].ref for a in answers)
    router.close()
    assert router.shadow.pids[0] != first and router.shadow.restarts == 1
    stats = router.stats
    assert (stats.shadow_submitted, stats.shadow_completed, stats.shadow_failed, stats.shadow_dropped) == (60, 50, 0, 10)
    assert rig["rt"].lazy("eventlog", lambda: None).flush(timeout=30)
    shadow_rows = {prefix: len(_logged(rig["rt"], prefix)[False]) for prefix in ("before", "lost", "after")}
    assert shadow_rows == {"before": 20, "lost": 0, "after": 30}
    assert sum(len(_logged(rig["rt"], prefix)[True]) for prefix in ("before", "lost", "after")) == 60


def _stuck_scorer(rig, **overrides):
    """10 rows scored and stored, then the scorer stopped (SIGSTOP) with 15 more sent to it."""
    router = rig["router"]
    _predict(rig, "drained", rig["rows"][:10])
    assert _wait(lambda: len(_logged(rig["rt"], "drained")[False]) == 10)
    os.kill(router.shadow.pids[0], signal.SIGSTOP)   # alive but not reading
    _predict(rig, "stuck", rig["rows"][10:25])
    assert _wait(lambda: router.shadow._sent == 25, 10)
    return router.shadow._scorers[0][0]


def _after_stop(rig):
    stats = rig["router"].stats
    assert rig["rt"].lazy("eventlog", lambda: None).flush(timeout=30)
    return ((stats.shadow_submitted, stats.shadow_completed, stats.shadow_dropped),
            (len(_logged(rig["rt"], "drained")[False]), len(_logged(rig["rt"], "stuck")[False])))


def test_a_hung_scorer_is_killed_when_the_shutdown_budget_ends_and_its_rows_are_counted(make_rig):
    """Shutdown has a budget (FRUGAL_SHADOW_DRAIN_S, inside gunicorn's graceful_timeout)."""
    rig = make_rig(shadow_drain_s=0.5)
    scorer = _stuck_scorer(rig)
    started = time.monotonic()
    rig["router"].close()
    took = time.monotonic() - started

    assert 0.4 < took < 5.0, took   # the budget, then a kill: not the 15 s default, not forever
    assert scorer.exitcode == -signal.SIGKILL
    assert _after_stop(rig) == ((25, 10, 15), (10, 0))


def test_a_stopping_worker_puts_its_scorers_back_at_normal_priority_where_it_may(make_rig):
    """With no request left to protect, scorers drain at normal priority: at SCHED_IDLE a host kept
    busy by other processes would give them no CPU to drain or flush.  It takes CAP_SYS_NICE (root
    here and in CI); without it they keep their priority and the stop goes on."""
    import threading

    rig = make_rig(shadow_drain_s=1.0, shadow_nice=19, shadow_sched_idle=True)
    scorer = _stuck_scorer(rig)
    threads = [int(t) for t in os.listdir(f"/proc/{scorer.pid}/task")]
    assert all(os.sched_getscheduler(t) == os.SCHED_IDLE and os.getpriority(os.PRIO_PROCESS, t) == 19 for t in threads)
    closing = threading.Thread(target=rig["router"].close)
    closing.start()
    time.sleep(0.3)   # close() lifts the priority first, then waits out the budget on the stopped scorer
    during = [(os.sched_getscheduler(t), os.getpriority(os.PRIO_PROCESS, t)) for t in threads]
    closing.join(10)

    may = os.geteuid() == 0
    assert set(during) == ({(os.SCHED_OTHER, 0)} if may else {(os.SCHED_IDLE, 19)}), during
    assert _after_stop(rig) == ((25, 10, 15), (10, 0))


def test_a_late_scorer_stops_scoring_in_time_to_flush_and_exits_by_itself(make_rig):
    """A scorer that is behind when the budget's scoring part ends stops scoring, flushes what it has
    scored and exits; what it had not scored is counted as dropped, and nobody is killed."""
    import threading

    rig = make_rig(shadow_drain_s=2.0)   # scoring must stop 1 s in (half the budget, at most 3 s)
    scorer = _stuck_scorer(rig)
    closing = threading.Thread(target=rig["router"].close)
    started = time.monotonic()
    closing.start()
    time.sleep(1.3)
    os.kill(scorer.pid, signal.SIGCONT)   # it wakes up past its scoring deadline, 15 rows in its pipe
    closing.join(10)
    took = time.monotonic() - started

    assert not closing.is_alive() and took < 2.0, took
    assert scorer.exitcode == 0   # exited by itself
    assert _after_stop(rig) == ((25, 10, 15), (10, 0))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_to_a_starting_scorer_does_not_kill_it(make_rig, signum):
    """SIGTERM to a whole process group (a container stop, the test harness) or a terminal's Ctrl-C
    can reach a scorer before it has set itself up: the web worker stops it in order instead."""
    rig = make_rig()
    router = rig["router"]
    _predict(rig, "early", rig["rows"][:1])
    assert _wait(lambda: router.shadow.pids, 10)
    os.kill(router.shadow.pids[0], signum)       # while it is still importing its modules
    _predict(rig, "late", rig["rows"][1:30])
    router.close()
    assert router.shadow.restarts == 0
    assert router.stats.shadow_completed == 30 and router.stats.shadow_dropped == 0


def test_a_full_queue_drops_shadow_samples_and_counts_them(make_rig):
    rig = make_rig(shadow_queue_size=1)
    # A one-row queue: a request finds the previous one's row still waiting for the sender (it ships
    # every few ms) and its own sample is dropped.
    _predict(rig, "full", rig["rows"])
    rig["router"].close()
    stats = rig["router"].stats
    assert stats.shadow_dropped > 0
    assert stats.shadow_completed + stats.shadow_dropped == 60 and stats.shadow_failed == 0
    assert rig["rt"].lazy("eventlog", lambda: None).flush(timeout=30)
    logged = _logged(rig["rt"], "full")
    assert len(logged[True]) == 60 and len(logged[False]) == stats.shadow_completed
