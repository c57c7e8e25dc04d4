"""Distil a champion into a smaller student: train a cheap scikit-learn model on the champion's own
answers to a set of inputs, and export it to ONNX with skl2onnx.

The student learns to imitate the teacher (its predicted class, or its predicted value for a
regressor), so the inputs need no labels: production-like inputs are what matter.  Students:

- ``logistic``: standardised logistic regression (ridge regression for a regressor);
- ``shallow-trees``: 30 boosted trees of depth 2;
- ``small-mlp``: a standardised MLP with one hidden layer of 16.

Needs scikit-learn and skl2onnx (``pip install 'frugal[optimize]'``); without them the error says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from service.errors import NotImplementedHere, ValidationFailed, field_error

SEED = 7


class Student(StrEnum):
    LOGISTIC = "logistic"
    SHALLOW_TREES = "shallow-trees"
    SMALL_MLP = "small-mlp"


@dataclass(frozen=True)
class Distilled:
    student: Student
    data: bytes                 # the ONNX file
    trained_on: int             # rows of teacher answers it learned from


def _estimator(student: Student, task: str):
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    regression = task == "regression"
    if student is Student.LOGISTIC:
        return make_pipeline(StandardScaler(), Ridge(alpha=1.0) if regression else LogisticRegression(max_iter=2000))
    if student is Student.SHALLOW_TREES:
        kind = GradientBoostingRegressor if regression else GradientBoostingClassifier
        return kind(n_estimators=30, max_depth=2, random_state=SEED)
    kind = MLPRegressor if regression else MLPClassifier
    return make_pipeline(StandardScaler(), kind(hidden_layer_sizes=(16,), max_iter=2000, random_state=SEED))


def _require() -> None:
    try:
        import skl2onnx  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        raise NotImplementedHere("distillation needs scikit-learn and skl2onnx: install the package's optimize extra (pip install 'frugal[optimize]')") from None


def distill(task: str, signature: dict[str, Any], rows: list[list[float]], teacher_answers: list[Any],
            students: list[Student]) -> list[Distilled]:
    """One student per entry of ``students``, trained on ``rows`` and the teacher's answers to them.

    Raises ValidationFailed when the rows cannot teach anything (fewer than 20, or a classifier
    teacher that gives one class to every row) and NotImplementedHere without scikit-learn.
    """
    _require()
    if len(rows) < 20:
        raise ValidationFailed("too few rows to distil from", errors=[field_error(
            "data_csv", f"{len(rows)} rows; a student needs at least 20 of the champion's answers")])
    X = np.asarray(rows, dtype=np.float32)
    y = np.asarray(teacher_answers, dtype=float if task == "regression" else object)
    if task != "regression":
        if len(set(y.tolist())) < 2:
            raise ValidationFailed("the champion gives these rows one class", errors=[field_error(
                "data_csv", "a student cannot learn from a single class: use rows where the champion's answers vary")])
        y = _class_array(y)
    made = []
    for student in students:
        estimator = _estimator(Student(student), task)
        estimator.fit(X.astype(np.float64), y)
        made.append(Distilled(Student(student), _to_onnx(estimator, signature), len(rows)))
    return made


def _class_array(y: np.ndarray) -> np.ndarray:
    """Integer classes stay integers (the student's ONNX labels then match the teacher's)."""
    try:
        as_int = np.asarray([int(v) for v in y.tolist()])
        if all(float(v) == float(i) for v, i in zip(y.tolist(), as_int.tolist())):
            return as_int
    except (TypeError, ValueError):
        pass
    return y.astype(str)


def _to_onnx(estimator, signature: dict[str, Any]) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    name = signature["inputs"][0]["name"] if signature.get("layout", "matrix") == "matrix" else "input"
    model = convert_sklearn(estimator, initial_types=[(name, FloatTensorType([None, signature["n_features"]]))],
                            target_opset={"": 17, "ai.onnx.ml": 3})
    model.graph.name = "frugal-student"   # not skl2onnx's random uuid: one training gives one digest
    return model.SerializeToString()
