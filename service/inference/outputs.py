"""Map a session's outputs to (prediction, confidence) per row, by task kind.

Classifiers from skl2onnx return a label tensor and probabilities, either as a tensor ``[N, C]`` or,
with the default ZipMap, as a list of ``{class: probability}`` maps; other exporters return only
probabilities or logits-free scores (then the prediction is the arg-max class index).  Confidence is
the probability of the predicted class.  Regressors return one value per row; confidence is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Output:
    """One row's answer: the predicted class (or value) and the predicted class's probability."""

    prediction: Any
    confidence: float | None


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode()
    return value


def _probabilities(value: Any) -> tuple[np.ndarray, list[Any] | None] | None:
    """([N, C] probabilities, class labels if the output names them) from a tensor or a ZipMap
    sequence of maps; a single [N, 1] column is read as P(class 1).  None if neither."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = list(value[0].keys())
        return np.asarray([[row[k] for k in keys] for row in value], dtype=np.float64), keys
    if isinstance(value, np.ndarray) and value.ndim == 2 and value.dtype.kind == "f":
        p = value.astype(np.float64, copy=False)
        if p.shape[1] == 1:
            p = np.hstack([1.0 - p, p])
        return p, None
    return None


def _labels(value: Any) -> np.ndarray | None:
    """A label tensor: [N] or [N, 1] of integers or strings (None otherwise)."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuOSU":
        return None
    if value.ndim == 1:
        return value
    if value.ndim == 2 and value.shape[1] == 1:
        return value[:, 0]
    return None


def decode(task: str, results: list[Any], n_rows: int) -> list[Output]:
    """Outputs of ``session.run`` (in the model's output order) as one Output per row.

    ``task`` is one of service.registry.TASKS: "binary", "multiclass" or "regression".
    """
    if task == "regression":
        values = np.asarray(results[0], dtype=np.float64).reshape(n_rows, -1)[:, 0]
        return [Output(float(v), None) for v in values]
    labels = None
    probabilities = classes = None
    for value in results:
        if labels is None and _labels(value) is not None:
            labels = _labels(value)
        elif probabilities is None and (found := _probabilities(value)) is not None:
            probabilities, classes = found
    if labels is None and probabilities is None:
        raise ValueError("the model returned neither a label nor class probabilities")
    if labels is not None and len(labels) != n_rows or probabilities is not None and len(probabilities) != n_rows:
        raise ValueError(f"the model returned a different number of rows than it was given ({n_rows})")
    if probabilities is not None:
        confidence = probabilities.max(axis=1)
        if labels is None:
            best = probabilities.argmax(axis=1)
            labels = [classes[j] for j in best] if classes is not None else best
        return [Output(_scalar(label), float(c)) for label, c in zip(labels, confidence)]
    return [Output(_scalar(label), None) for label in labels]
