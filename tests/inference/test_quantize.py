"""Quantization: int8 (onnxruntime dynamic) and fp16 versions that load, run and stay accurate."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import ValidationFailed
from service.inference.quantize import quantize_model
from service.inference.sessions import SessionPool
from service.inference.signature import inspect_model


def _accuracy(path, signature, X, y, settings) -> float:
    model = SessionPool(settings).get(str(path), path, task="binary", signature=signature)
    return float(np.mean([o.prediction for o in model.run(X.tolist()).outputs] == y))


@pytest.fixture(scope="module")
def int8_mlp(demo_models):
    return quantize_model(demo_models["mlp"].path.read_bytes(), "int8")


def test_int8_is_smaller_and_within_two_points_of_float_accuracy(int8_mlp, demo_models, fitted, settings, tmp_path):
    _, X_test, _, y_test, _ = fitted
    source = demo_models["mlp"].path
    assert len(int8_mlp) < source.stat().st_size
    target = tmp_path / "mlp.int8.onnx"
    target.write_bytes(int8_mlp)
    sig = inspect_model(int8_mlp).to_dict()
    assert sig["inputs"] == inspect_model(source.read_bytes()).to_dict()["inputs"]  # same feed as its source
    float_acc = _accuracy(source, sig, X_test, y_test, settings)
    int8_acc = _accuracy(target, sig, X_test, y_test, settings)
    assert abs(int8_acc - float_acc) <= 0.02, (int8_acc, float_acc)


def test_fp16_keeps_float32_inputs_and_runs(demo_models, fitted, settings, tmp_path):
    _, X_test, _, y_test, _ = fitted
    data = quantize_model(demo_models["mlp"].path.read_bytes(), "fp16")
    sig = inspect_model(data).to_dict()
    assert sig["inputs"][0]["dtype"] == "float32"
    target = tmp_path / "mlp.fp16.onnx"
    target.write_bytes(data)
    float_acc = _accuracy(demo_models["mlp"].path, sig, X_test, y_test, settings)
    assert abs(_accuracy(target, sig, X_test, y_test, settings) - float_acc) <= 0.02


def test_int8_of_a_tree_ensemble_is_refused_as_a_no_op(demo_models):
    with pytest.raises(ValidationFailed) as info:
        quantize_model(demo_models["gbm"].path.read_bytes(), "int8")
    assert "does not change this model" in info.value.detail


@pytest.mark.parametrize("to", ["int4", "INT8", "", "bf16"])
def test_an_unknown_target_is_refused(demo_models, to):
    with pytest.raises(ValidationFailed) as info:
        quantize_model(demo_models["mlp"].path.read_bytes(), to)
    assert info.value.errors == [{"field": "to", "message": "must be one of int8, fp16"}]
