"""Serving with real onnxruntime sessions: predictions equal scikit-learn's, batches equal single
rows, one session per model per process, never reused across a fork."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from service.inference.outputs import decode
from service.inference.sessions import SessionPool


@pytest.mark.parametrize("key", ["gbm", "logistic", "mlp"])
def test_demo_predictions_equal_scikit_learn_on_the_test_set(key, demo_models, demo_signatures, fitted, settings):
    _, X_test, _, _, estimators = fitted
    model = SessionPool(settings).get(key, demo_models[key].path, task="binary", signature=demo_signatures[key])
    result = model.run(X_test.tolist())
    estimator = estimators[key]
    assert [o.prediction for o in result.outputs] == estimator.predict(X_test).tolist()
    confidence = np.array([o.confidence for o in result.outputs])
    np.testing.assert_allclose(confidence, estimator.predict_proba(X_test).max(axis=1), atol=1e-5)
    assert result.inference_ms > 0


def test_a_batch_equals_the_rows_one_by_one(demo_models, demo_signatures, fitted, settings):
    _, X_test, _, _, _ = fitted
    model = SessionPool(settings).get("mlp", demo_models["mlp"].path, task="binary", signature=demo_signatures["mlp"])
    rows = X_test[:60].tolist()
    batch = model.run(rows).outputs
    single = [model.run([row]).outputs[0] for row in rows]
    assert batch == single


def test_a_batch_is_one_session_run(demo_models, demo_signatures, settings):
    model = SessionPool(settings).get("gbm", demo_models["gbm"].path, task="binary", signature=demo_signatures["gbm"])
    calls = []
    real_run = model.session.run
    model.session = type("Counting", (), {"run": lambda self, *a: calls.append(a[1]["input"].shape) or real_run(*a)})()
    model.run([[1.0] * 30] * 17)
    assert calls == [(17, 30)]


def test_multiclass_string_labels_with_and_without_zipmap(iris, settings):
    model = SessionPool(settings).get(iris.path.name, iris.path, task="multiclass", signature=iris.signature)
    outputs = model.run(iris.X_test.tolist()).outputs
    assert [o.prediction for o in outputs] == iris.estimator.predict(iris.X_test).tolist()
    assert {o.prediction for o in outputs} == {"setosa", "versicolor", "virginica"}
    np.testing.assert_allclose([o.confidence for o in outputs], iris.estimator.predict_proba(iris.X_test).max(axis=1),
                               atol=1e-5)


def test_a_regressor_answers_values_without_confidence(regressor, settings):
    model = SessionPool(settings).get("reg", regressor.path, task="regression", signature=regressor.signature)
    outputs = model.run(regressor.X_test.tolist()).outputs
    assert all(o.confidence is None for o in outputs)
    np.testing.assert_allclose([o.prediction for o in outputs], regressor.estimator.predict(regressor.X_test), rtol=1e-4)


def test_probabilities_alone_and_a_single_sigmoid_column_are_decoded():
    probs = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32)
    assert [(o.prediction, round(o.confidence, 3)) for o in decode("multiclass", [probs], 2)] == [(1, 0.7), (0, 0.6)]
    sigmoid = np.array([[0.9], [0.2]], dtype=np.float32)
    assert [(o.prediction, round(o.confidence, 3)) for o in decode("binary", [sigmoid], 2)] == [(1, 0.9), (0, 0.8)]
    zipmap = [{"no": 0.25, "yes": 0.75}]
    assert decode("binary", [zipmap], 1)[0].prediction == "yes"
    with pytest.raises(ValueError):
        decode("binary", [np.zeros((3, 2), dtype=np.int64)], 3)


def test_one_session_per_digest_created_once_under_concurrency(demo_models, demo_signatures, settings):
    pool = SessionPool(settings)
    got = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        got.append(pool.get("d1", demo_models["logistic"].path, task="binary", signature=demo_signatures["logistic"]))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m in got}) == 1 and len(pool) == 1
    other = pool.get("d2", demo_models["mlp"].path, task="binary", signature=demo_signatures["mlp"])
    assert other is not got[0] and len(pool) == 2


def test_thread_counts_come_from_settings(demo_models, demo_signatures, tmp_path):
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, ort_intra_op_threads=2, ort_inter_op_threads=1)
    model = SessionPool(settings).get("d", demo_models["logistic"].path, task="binary", signature=demo_signatures["logistic"])
    options = model.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)


def test_a_forked_child_never_uses_the_parents_session(demo_models, demo_signatures, settings):
    pool = SessionPool(settings)
    args = ("d", demo_models["logistic"].path)
    kwargs = {"task": "binary", "signature": demo_signatures["logistic"]}
    parent_model = pool.get(*args, **kwargs)
    row = [1.0] * 30
    expected = parent_model.run([row]).outputs[0]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report and leave without running pytest's teardown
        try:
            child_model = pool.get(*args, **kwargs)
            out = child_model.run([row]).outputs[0]
            report = {"pid": os.getpid(), "model_pid": child_model.pid, "same": child_model is parent_model,
                      "prediction": out.prediction, "confidence": out.confidence}
        except BaseException as exc:  # noqa: BLE001 - anything goes back to the parent
            report = {"error": repr(exc)}
        os.write(write_fd, json.dumps(report).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as handle:
        report = json.loads(handle.read())
    os.waitpid(pid, 0)
    assert "error" not in report, report
    assert report["pid"] == pid and report["model_pid"] == pid and not report["same"]
    assert (report["prediction"], report["confidence"]) == (expected.prediction, expected.confidence)
    assert pool.get(*args, **kwargs) is parent_model and parent_model.pid == os.getpid()
