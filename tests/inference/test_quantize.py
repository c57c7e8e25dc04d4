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


def test_quantizing_registers_a_profiled_version_and_the_cli_compares_costs(demo_models, sqlite_url, data_dir):
    """The new version carries lineage and a profile measured on this host beside its source's, and
    `frugal models quantize` prints both costs (and warns when the quantized one is not cheaper)."""
    from click.testing import CliRunner

    from service import registry
    from service.cli import main as cli
    from service.runtime import Runtime
    from tests.conftest import make_settings

    env = {"FRUGAL_DATA_DIR": str(data_dir), "FRUGAL_DATABASE_URL": sqlite_url, "FRUGAL_LOG_LEVEL": "WARNING"}
    mlp = demo_models["mlp"]
    registered = CliRunner().invoke(cli, ["models", "register", str(mlp.path), "--name", "mlp", "--version", "1",
                                          "--task", "binary"], env=env)
    assert registered.exit_code == 0, registered.output
    result = CliRunner().invoke(cli, ["models", "quantize", "mlp:1", "--to", "int8"], env=env)
    assert result.exit_code == 0, result.output
    assert "registered mlp:1-int8" in result.output and "measured CPU cost per 1,000 predictions" in result.output

    rt = Runtime(make_settings(data_dir, database_url=sqlite_url))
    try:
        source, derived = registry.resolve(rt.db, "mlp:1"), registry.resolve(rt.db, "mlp:1-int8")
    finally:
        rt.close()
    assert derived.derived_from_id == source.id and derived.transform == "int8"
    before, after = registry.cost_comparison(source, derived)
    assert before > 0 and after > 0
    assert f"({after / before:.2f}x)" in result.output
    assert ("is not cheaper to run here" in result.output) == (after >= before)
