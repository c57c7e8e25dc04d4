"""What a model takes and returns, read once at registration and stored with it.

Frugal feeds tabular models: one 2-D numeric input ``[batch, n_features]`` (what skl2onnx, the
PyTorch and LightGBM exporters produce), or one ``[batch, 1]`` input per feature.  Anything else is
refused at registration with a message saying why, rather than failing on the first request.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from service.errors import ValidationFailed, field_error

ORT_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64", "tensor(int32)": "int32",
              "tensor(float16)": "float16"}


@dataclass(frozen=True)
class Signature:
    inputs: list[dict[str, Any]]            # [{name, shape, dtype}]
    outputs: list[dict[str, Any]]           # [{name, type}]
    feature_names: list[str]
    n_features: int
    layout: str                             # "matrix": one [N, F] input; "columns": one [N, 1] input per feature
    opset: int | None = None                # the default (ai.onnx) domain's opset version
    opsets: dict[str, int] = field(default_factory=dict)
    producer: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Signature":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed("the file is not a model Frugal can serve", errors=[field_error("file", message)])


def _dims(shape: list[Any]) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def load_session_from_bytes(data: bytes):
    """A single-threaded onnxruntime session over in-memory model bytes (for validation, not serving)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def inspect_model(data: bytes, feature_names: list[str] | None = None) -> Signature:
    """Validate ONNX bytes (parse, check, create an onnxruntime session) and read the signature.

    Raises ValidationFailed (422, field ``file`` or ``feature_names``) for empty, corrupt or non-ONNX
    bytes, a graph onnxruntime cannot load (e.g. an unsupported operator) and inputs Frugal cannot feed.
    """
    import onnx
    from google.protobuf.message import DecodeError

    if not data:
        raise _refuse("the file is empty")
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise _refuse(f"not an ONNX model (it does not parse as an ONNX protobuf: {exc})") from None
    if not model.graph.node and not model.graph.output:
        raise _refuse("not an ONNX model (no graph: is this the right file?)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise _refuse(f"the ONNX checker rejects it: {str(exc).splitlines()[0][:300]}") from None
    try:
        session = load_session_from_bytes(data)
    except Exception as exc:  # onnxruntime raises its own exception types (NOT_IMPLEMENTED, INVALID_GRAPH, ...)
        text = str(exc).strip().splitlines()[0][:400]
        unsupported = ("NOT_IMPLEMENTED", "not implemented", "not a registered function/op", "Could not find an implementation")
        hint = (" (it uses an operator this onnxruntime does not implement; re-export it with standard ONNX operators"
                " or a lower opset)" if any(u.lower() in text.lower() for u in unsupported) else "")
        raise _refuse(f"onnxruntime cannot load it{hint}: {text}") from None

    inputs = []
    for arg in session.get_inputs():
        dtype = ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise _refuse(f"input {arg.name!r} has type {arg.type}; Frugal feeds numeric tensors only")
        inputs.append({"name": arg.name, "shape": _dims(list(arg.shape)), "dtype": dtype})
    outputs = [{"name": o.name, "type": o.type} for o in session.get_outputs()]

    if len(inputs) == 1 and len(inputs[0]["shape"]) == 2 and inputs[0]["shape"][1] is not None:
        layout, n = "matrix", inputs[0]["shape"][1]
        default_names = [f"f{i}" for i in range(n)]
    elif len(inputs) >= 1 and all(len(i["shape"]) in (1, 2) and (len(i["shape"]) == 1 or i["shape"][1] == 1) for i in inputs):
        layout, n = "columns", len(inputs)
        default_names = [i["name"] for i in inputs]
    else:
        shapes = ", ".join(f"{i['name']}{i['shape']}" for i in inputs)
        raise _refuse(f"inputs {shapes}: Frugal serves one [batch, n_features] input or one [batch, 1] input per feature")

    if feature_names is not None:
        if len(feature_names) != n:
            raise ValidationFailed("feature names do not match the model", errors=[field_error(
                "feature_names", f"{len(feature_names)} names given, the model takes {n} features")])
        bad = [f for f in feature_names if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,100}", f)]
        if bad or len(set(feature_names)) != n:
            raise ValidationFailed("feature names must be unique identifiers", errors=[field_error(
                "feature_names", f"unique names of letters, digits, '_', '.', '-' (bad: {bad[:5]})")])
    names = list(feature_names) if feature_names is not None else default_names
    opsets = {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}
    return Signature(inputs=inputs, outputs=outputs, feature_names=names, n_features=n, layout=layout,
                     opset=opsets.get("ai.onnx"), opsets=opsets,
                     producer=f"{model.producer_name} {model.producer_version}".strip())


def task_problem(data: bytes, signature: Signature, task: str) -> str | None:
    """Why the model's outputs do not fit ``task`` (None when they do).

    A classifier answers with a label tensor (integers or strings) and/or class probabilities (a
    ZipMap or a float [N, C] tensor); a regressor with float values only.  The outputs' types say
    which; one trial row of zeros says how many classes the probabilities have (binary: 2)."""
    import numpy as np

    from service.inference.outputs import _labels, _probabilities

    types = [o["type"] for o in signature.outputs]
    labelled = any(t in ("tensor(int64)", "tensor(int32)", "tensor(string)") for t in types)
    zipmap = any(t.startswith("seq(map") for t in types)
    if task == "regression":
        if labelled or zipmap:
            return (f"its outputs ({', '.join(types)}) are a classifier's (class labels or probabilities); "
                    "register it as binary or multiclass")
        return None
    classes = None
    try:
        session = load_session_from_bytes(data)
        if signature.layout == "matrix":
            spec = signature.inputs[0]
            feed = {spec["name"]: np.zeros((1, signature.n_features), dtype=spec["dtype"])}
        else:
            feed = {i["name"]: np.zeros((1, 1) if len(i["shape"]) == 2 else (1,), dtype=i["dtype"]) for i in signature.inputs}
        results = session.run(None, feed)
    except Exception:  # a trial row the model refuses: judge by the output types alone
        results = []
    if results and not labelled and not zipmap:
        single = [r for r in results if isinstance(r, np.ndarray) and r.dtype.kind == "f" and r.size == 1]
        if len(single) == len(results) and not all(0.0 <= float(r.reshape(-1)[0]) <= 1.0 for r in single):
            value = float(single[0].reshape(-1)[0])
            return (f"it returns one number per row ({', '.join(types)}; {value:g} for a row of zeros), a "
                    "regressor's output, not class labels or probabilities; register it as regression")
    for r in results:
        probs = _probabilities(r) if not (isinstance(r, np.ndarray) and r.ndim == 2 and r.shape[1] == 1) else None
        if probs is not None:
            classes = probs[0].shape[1]
            break
    if classes is None and not labelled and not zipmap:
        return (f"its outputs ({', '.join(types)}) hold neither class labels nor probabilities; "
                "register it as regression")
    if classes is not None and task == "binary" and classes != 2:
        return f"it scores {classes} classes; register it as multiclass"
    if classes is not None and task == "multiclass" and classes < 3:
        return "it scores 2 classes; register it as binary"
    return None
