"""Distillation: students trained on a champion's answers, exported to ONNX, that imitate it; and the
agreement measure that screens them (checked on models whose agreement is known)."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import ValidationFailed
from service.inference.agreement import compare, outputs_of
from service.inference.distill import Student, distill
from service.inference.outputs import Output


def test_each_student_imitates_the_champion_on_rows_it_did_not_learn_from(demo_models, demo_signatures, fitted):
    X_train, X_test, _, y_test, _ = fitted
    teacher = demo_models["gbm"].path.read_bytes()
    sig = demo_signatures["gbm"]
    answers = [o.prediction for o in outputs_of(teacher, "binary", sig, X_train.tolist())]
    students = distill("binary", sig, X_train.tolist(), answers, list(Student))
    assert [s.student for s in students] == list(Student)
    source = outputs_of(teacher, "binary", sig, X_test.tolist())
    for student in students:
        assert student.trained_on == len(X_train)
        result = compare("binary", source, outputs_of(student.data, "binary", sig, X_test.tolist()), y_test)
        assert result.agreement >= 0.9, (student.student, result)
        assert result.quality_drop is not None and result.quality_drop <= 0.05, (student.student, result)
        assert len(student.data) < len(teacher)


def test_a_regressor_student_learns_the_teachers_values(regressor):
    rows = regressor.X_test.tolist()
    teacher = outputs_of(regressor.data, "regression", regressor.signature, rows)
    (student,) = distill("regression", regressor.signature, rows, [o.prediction for o in teacher], [Student.LOGISTIC])
    result = compare("regression", teacher, outputs_of(student.data, "regression", regressor.signature, rows), None)
    assert result.agreement_name == "R² against the source" and result.agreement > 0.95, result


def test_one_class_or_too_few_rows_cannot_teach(demo_signatures):
    rows = [[0.0] * 30 for _ in range(40)]
    with pytest.raises(ValidationFailed, match="one class"):
        distill("binary", demo_signatures["gbm"], rows, [1] * 40, [Student.LOGISTIC])
    with pytest.raises(ValidationFailed, match="too few rows"):
        distill("binary", demo_signatures["gbm"], rows[:5], [0, 1, 0, 1, 0], [Student.LOGISTIC])


def test_agreement_and_quality_are_counted_as_defined():
    source = [Output(p, 0.9) for p in (1, 0, 1, 1, 0, 0, 1, 0)]
    derived = [Output(p, 0.9) for p in (1, 0, 0, 1, 0, 1, 1, 0)]   # differs on rows 2 and 5
    labels = np.asarray([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])   # source right 7/8, derived 5/8
    result = compare("binary", source, derived, labels)
    assert result.agreement == 6 / 8 and result.quality_name == "accuracy"
    assert result.source_quality == 7 / 8 and result.quality == 5 / 8 and result.quality_drop == 2 / 8
    values = [Output(v, None) for v in (1.0, 2.0, 3.0, 4.0)]
    shifted = [Output(v + 0.5, None) for v in (1.0, 2.0, 3.0, 4.0)]
    regression = compare("regression", values, shifted, np.asarray([1.0, 2.0, 3.0, 4.0]))
    assert regression.agreement == pytest.approx(1 - 4 * 0.25 / 5.0)   # 1 - SSE / total sum of squares
    assert regression.quality_drop == pytest.approx(0.5)               # RMSE 0 -> 0.5
