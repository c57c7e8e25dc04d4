"""How closely a derived model (quantized, pruned, distilled) follows its source on a set of rows.

Offline screening before an experiment: the share of rows on which the two predict the same class
(for a regressor, R² of the derived model's outputs against the source's), and, on rows with a
label, each model's accuracy (or RMSE).  ``service.candidates`` uses it to say which candidates
are worth an experiment; the experiment's sequential test is what proves one is good enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.inference.outputs import Output


@dataclass(frozen=True)
class Agreement:
    """A derived model beside its source on ``rows`` rows (``labelled`` of them with a label)."""

    rows: int
    agreement: float                 # classification: share of equal predictions; regression: R² against the source
    agreement_name: str              # "same prediction" or "R² against the source"
    labelled: int
    quality_name: str | None         # "accuracy" or "rmse" (None without labels)
    source_quality: float | None
    quality: float | None

    @property
    def quality_drop(self) -> float | None:
        """How much worse than its source (accuracy points lost, or RMSE gained); None without labels."""
        if self.quality is None or self.source_quality is None:
            return None
        return self.source_quality - self.quality if self.quality_name == "accuracy" else self.quality - self.source_quality


def outputs_of(data: bytes, task: str, signature: dict[str, Any], rows: list[list[float]]) -> list[Output]:
    """The model's answers to ``rows`` (in onnxruntime, in this process, in one run)."""
    from service.inference.features import build_feed
    from service.inference.outputs import decode
    from service.inference.signature import load_session_from_bytes

    session = load_session_from_bytes(data)
    return decode(task, session.run(None, build_feed(signature, rows)), len(rows))


def predictions(outputs: list[Output]) -> np.ndarray:
    return np.asarray([o.prediction for o in outputs], dtype=object)


def compare(task: str, source: list[Output], derived: list[Output], labels: np.ndarray | None) -> Agreement:
    """``derived`` against ``source`` (the same rows, in order), and both against ``labels``."""
    if len(source) != len(derived) or not source:
        raise ValueError("compare needs the same non-empty rows for both models")
    a, b = predictions(source), predictions(derived)
    if task == "regression":
        a, b = a.astype(float), b.astype(float)
        spread = float(np.sum((a - a.mean()) ** 2))
        agreement = 1.0 - float(np.sum((a - b) ** 2)) / spread if spread > 0 else float(np.allclose(a, b))
        name, quality_name = "R² against the source", "rmse"
        quality = (lambda p: float(np.sqrt(np.mean((p - labels.astype(float)) ** 2)))) if labels is not None else None
    else:
        agreement = float(np.mean([x == y for x, y in zip(a.tolist(), b.tolist())]))
        name, quality_name = "same prediction", "accuracy"
        quality = (lambda p: float(np.mean([_same_label(x, y) for x, y in zip(p.tolist(), labels.tolist())]))) \
            if labels is not None else None
    return Agreement(len(source), agreement, name, 0 if labels is None else len(labels),
                     quality_name if labels is not None else None,
                     quality(a) if quality else None, quality(b) if quality else None)


def _same_label(prediction: Any, label: Any) -> bool:
    """A label read from CSV as a float (1.0) equals a predicted class 1 or "1"."""
    try:
        return float(prediction) == float(label)
    except (TypeError, ValueError):
        return str(prediction) == str(label)
