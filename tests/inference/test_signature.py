"""Registration-time validation: what a model takes and returns, and which files are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper

from service.errors import ValidationFailed
from service.inference.signature import Signature, inspect_model


def _model(nodes, inputs, outputs, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    opsets = [helper.make_opsetid("", 17), *[helper.make_opsetid(d, v) for d, v in extra_opsets]]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString()


def _field_messages(exc: ValidationFailed) -> dict[str, str]:
    return {e["field"]: e["message"] for e in exc.errors}


def test_demo_model_signature_records_inputs_outputs_names_and_opset(demo_models):
    model = demo_models["gbm"]
    sig = inspect_model(model.path.read_bytes(), model.feature_names)
    assert sig.inputs == [{"name": "input", "shape": [None, 30], "dtype": "float32"}]
    assert [o["name"] for o in sig.outputs] == ["output_label", "output_probability"]
    assert sig.outputs[1]["type"].startswith("seq(map(")  # ZipMap
    assert sig.n_features == 30 and sig.layout == "matrix"
    assert sig.feature_names == model.feature_names
    assert sig.opset == sig.opsets["ai.onnx"] and 9 <= sig.opset <= 17 and "ai.onnx.ml" in sig.opsets


def test_feature_names_default_to_positions(demo_models):
    sig = inspect_model(demo_models["logistic"].path.read_bytes())
    assert sig.feature_names == [f"f{i}" for i in range(30)]


def test_signature_round_trips_through_json(demo_models):
    sig = inspect_model(demo_models["mlp"].path.read_bytes(), demo_models["mlp"].feature_names)
    assert Signature.from_dict(json.loads(json.dumps(sig.to_dict()))) == sig


@pytest.mark.parametrize("names, problem", [(["a", "b"], "2 names given"), (["a"] * 30, "unique"),
                                            ([f"x {i}" for i in range(30)], "unique")])
def test_bad_feature_names_are_refused(demo_models, names, problem):
    with pytest.raises(ValidationFailed) as info:
        inspect_model(demo_models["logistic"].path.read_bytes(), names)
    assert problem in _field_messages(info.value)["feature_names"]


@pytest.mark.parametrize("blob, says", [
    (b"", "empty"),
    (b"this is a CSV file, not a model\n1,2,3\n", "not an ONNX model"),
    (bytes(range(256)) * 8, "not an ONNX model"),
])
def test_non_onnx_bytes_are_refused(blob, says):
    with pytest.raises(ValidationFailed) as info:
        inspect_model(blob)
    assert info.value.status == 422
    assert says in _field_messages(info.value)["file"]


def test_a_truncated_model_is_refused(demo_models):
    data = demo_models["gbm"].path.read_bytes()
    with pytest.raises(ValidationFailed) as info:
        inspect_model(data[: len(data) // 3])
    assert "file" in _field_messages(info.value)


def test_an_unsupported_operator_is_refused_with_a_hint():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
    data = _model([helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")], [x], [y],
                  extra_opsets=[("com.example", 1)])
    with pytest.raises(ValidationFailed) as info:
        inspect_model(data)
    message = _field_messages(info.value)["file"]
    assert "onnxruntime cannot load it" in message and "does not implement" in message and "Frobnicate" in message


def test_two_matrix_inputs_are_refused():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 7])
    data = _model([helper.make_node("Concat", ["a", "b"], ["y"], axis=1)], [a, b], [y])
    with pytest.raises(ValidationFailed) as info:
        inspect_model(data)
    assert "one [batch, n_features] input" in _field_messages(info.value)["file"]


def test_an_image_shaped_input_is_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 8])
    with pytest.raises(ValidationFailed) as info:
        inspect_model(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y]))
    assert "x[None, 3, 8]" in _field_messages(info.value)["file"]


def test_one_column_input_per_feature_is_accepted_and_fed_by_name():
    from service.inference.features import build_feed

    a = helper.make_tensor_value_info("age", TensorProto.FLOAT, [None, 1])
    b = helper.make_tensor_value_info("income", TensorProto.DOUBLE, [None, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    data = _model([helper.make_node("Cast", ["income"], ["income_f"], to=TensorProto.FLOAT),
                   helper.make_node("Concat", ["age", "income_f"], ["y"], axis=1)], [a, b], [y])
    sig = inspect_model(data)
    assert sig.layout == "columns" and sig.feature_names == ["age", "income"] and sig.n_features == 2
    feed = build_feed(sig.to_dict(), [{"income": 1000.5, "age": 40}, [30, 2000]])
    assert feed["age"].dtype == np.float32 and feed["income"].dtype == np.float64
    assert feed["age"].shape == (2, 1) and feed["income"][:, 0].tolist() == [1000.5, 2000.0]
