"""Make a cheaper version of a model: dynamic int8 quantization (onnxruntime) or float16 weights.

int8 quantizes the weights of MatMul/Gemm-style operators (MLPs, linear layers); a tree ensemble
has none, so its int8 version is refused rather than registered as an identical copy.  float16
converts weights and activations but keeps float32 inputs and outputs, so feeds do not change.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from service.errors import ValidationFailed, field_error

TARGETS = ("int8", "fp16")


def quantize_model(data: bytes, to: str) -> bytes:
    """The ``to`` ("int8" or "fp16") version of an ONNX model, checked to load in onnxruntime.

    Raises ValidationFailed (field ``to``) for an unknown target, a conversion that changes nothing
    (int8 of a tree ensemble) or a result onnxruntime cannot load.
    """
    if to not in TARGETS:
        raise ValidationFailed("unknown quantization target", errors=[field_error("to", f"must be one of {', '.join(TARGETS)}")])
    out = _int8(data) if to == "int8" else _fp16(data)
    if not _changed(out, to):
        raise ValidationFailed(f"{to} quantization does not change this model", errors=[field_error(
            "to", "the model has no weights this method quantizes (e.g. a tree ensemble); nothing to register")])
    from service.inference.signature import load_session_from_bytes

    try:
        load_session_from_bytes(out)
    except Exception as exc:
        raise ValidationFailed(f"the {to} model does not load in onnxruntime", errors=[field_error("to", str(exc)[:300])]) from None
    return out


def _changed(data: bytes, to: str) -> bool:
    import onnx

    model = onnx.load_model_from_string(data)
    if to == "int8":
        return any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear", "ConvInteger") or n.op_type.startswith("QLinear")
                   for n in model.graph.node)
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


def _int8(data: bytes) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="frugal-quantize-") as tmp:
        source, target = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        source.write_bytes(data)
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        return target.read_bytes()


def _fp16(data: bytes) -> bytes:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load_model_from_string(data)
    with warnings.catch_warnings():  # "will be truncated": tiny weights rounding to fp16's range is the point
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    _retarget_casts(converted)
    return converted.SerializeToString()


def _retarget_casts(model) -> None:
    """A Cast the model already had (skl2onnx puts one after a Scaler) still says ``to=FLOAT`` after
    conversion while its output is now declared float16, so onnxruntime refuses the graph; make
    those casts produce float16.  (Blocking Cast in the converter instead makes it loop forever.)"""
    import onnx

    declared = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.output]}
    for node in model.graph.node:
        if node.op_type != "Cast" or declared.get(node.output[0]) != onnx.TensorProto.FLOAT16:
            continue
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                attribute.i = onnx.TensorProto.FLOAT16
