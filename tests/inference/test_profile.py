"""Profiles measured on this host: every figure present and plausible (no timing thresholds)."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import ValidationFailed
from service.inference.profile import profile_model


def test_a_classifier_profile_has_every_figure_and_its_accuracy(demo_models, demo_signatures, fitted):
    _, X_test, _, y_test, estimators = fitted
    model = demo_models["logistic"]
    csv_text = (model.path.parent / "test.csv").read_text()
    profile = profile_model(model.path, "binary", labelled_csv=csv_text, price_per_core_hour=0.10, budget_s=0.4,
                            signature=demo_signatures["logistic"])
    latency = profile["single_row_latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert 0 < profile["single_row_inference_ms"]["p50"] <= profile["single_row_inference_ms"]["p99"]
    assert set(profile["rows_per_s"]) == {"1", "32", "256"} and all(v > 0 for v in profile["rows_per_s"].values())
    assert profile["file_size_bytes"] == model.path.stat().st_size
    assert profile["memory_mb"] >= 0 and profile["single_row_samples"] >= 20
    assert profile["cpu_ms_per_prediction"] > 0
    assert profile["cost_per_1k"] == pytest.approx(profile["cpu_ms_per_prediction"] / 3_600_000 * 0.10 * 1000, rel=1e-3)
    assert profile["labelled_rows"] == len(y_test)
    assert profile["accuracy"] == pytest.approx(np.mean(estimators["logistic"].predict(X_test) == y_test))


def test_a_regressor_profile_reports_rmse(regressor, tmp_path):
    names = regressor.signature["feature_names"]
    lines = [",".join([*names, "label"])]
    lines += [",".join(repr(float(v)) for v in [*row, label]) for row, label in zip(regressor.X_test, regressor.y_test)]
    profile = profile_model(regressor.path, "regression", labelled_csv="\n".join(lines), budget_s=0.2,
                            signature=regressor.signature)
    expected = np.sqrt(np.mean((regressor.estimator.predict(regressor.X_test) - regressor.y_test) ** 2))
    assert profile["rmse"] == pytest.approx(expected, rel=1e-4) and "accuracy" not in profile


def test_without_labels_there_is_no_quality_figure(demo_models, demo_signatures):
    profile = profile_model(demo_models["gbm"].path, "binary", budget_s=0.2, signature=demo_signatures["gbm"])
    assert "accuracy" not in profile and "rmse" not in profile and profile["rows_per_s"]["256"] > 0


@pytest.mark.parametrize("text, says", [("a,b\n1,2\n", "no 'label' column"), ("label\n1\n", "lacks feature columns")])
def test_a_csv_that_does_not_fit_is_refused(demo_models, demo_signatures, text, says):
    with pytest.raises(ValidationFailed) as info:
        profile_model(demo_models["gbm"].path, "binary", labelled_csv=text, budget_s=0.1, signature=demo_signatures["gbm"])
    assert says in info.value.errors[0]["message"]


def test_a_non_positive_budget_is_refused(demo_models, demo_signatures):
    with pytest.raises(ValidationFailed):
        profile_model(demo_models["gbm"].path, "binary", budget_s=0, signature=demo_signatures["gbm"])


def test_a_benchmark_in_a_fresh_process_measures_the_models_own_memory_the_same_from_any_caller(demo_models, demo_signatures):
    """What `frugal models bench` and POST /v1/models/{id}/benchmark run: the same figure whichever process asks
    (this one has loaded many sessions; a web worker or the CLI has loaded others or none)."""
    from service.inference.profile import profile_in_fresh_process

    model = demo_models["logistic"]   # a 1.2 KB model: its session is small, whatever the caller holds
    first, second = (profile_in_fresh_process(model.path, "binary", budget_s=0.2, signature=demo_signatures["logistic"])
                     for _ in range(2))
    assert abs(first["memory_mb"] - second["memory_mb"]) < 0.5, (first["memory_mb"], second["memory_mb"])
    assert 0 <= first["memory_mb"] < 5, "the model's own increment, not the interpreter's or onnxruntime's"
    assert first["cpu_ms_per_prediction"] > 0 and first["single_row_samples"] >= 20


def test_a_fresh_process_benchmark_refuses_bad_input_before_starting_a_process(demo_models, demo_signatures):
    from service.inference.profile import profile_in_fresh_process

    with pytest.raises(ValidationFailed) as info:
        profile_in_fresh_process(demo_models["gbm"].path, "binary", labelled_csv="a,b\n1,2\n", budget_s=0.1,
                                 signature=demo_signatures["gbm"])
    assert "no 'label' column" in info.value.errors[0]["message"]
