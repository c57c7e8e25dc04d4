"""A model's declared task is checked against its outputs at registration (the audit registered a
regressor as binary and it served "confidence" 182.7)."""

from __future__ import annotations

import pytest

from service.errors import ValidationFailed
from service.inference.signature import Signature, task_problem


def _sig(built) -> Signature:
    return Signature.from_dict(built.signature)


def test_a_regressor_fits_only_regression(regressor):
    assert task_problem(regressor.data, _sig(regressor), "regression") is None
    for task in ("binary", "multiclass"):
        problem = task_problem(regressor.data, _sig(regressor), task)
        assert problem and "register it as regression" in problem


def test_a_multiclass_classifier_is_neither_binary_nor_regression(iris):
    assert task_problem(iris.data, _sig(iris), "multiclass") is None
    assert "register it as multiclass" in task_problem(iris.data, _sig(iris), "binary")
    assert "classifier" in task_problem(iris.data, _sig(iris), "regression")


def test_the_demo_binary_classifiers_fit_binary_only(demo_models):
    for key, model in demo_models.items():
        data = model.path.read_bytes()
        from service.inference.signature import inspect_model

        sig = inspect_model(data, model.feature_names)
        assert task_problem(data, sig, "binary") is None, key
        assert task_problem(data, sig, "multiclass") is not None, key
        assert task_problem(data, sig, "regression") is not None, key


def test_registration_refuses_the_wrong_task_with_a_field_error(regressor, fresh_pg, tmp_path):
    from service.registry import register
    from service.store.database import Database
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, database_url=fresh_pg)
    db = Database(fresh_pg)
    try:
        with pytest.raises(ValidationFailed) as raised:
            register(db, settings, regressor.data, name="reg", version="1", task="binary")
        assert raised.value.errors[0]["field"] == "task"
        assert register(db, settings, regressor.data, name="reg", version="1", task="regression").task == "regression"
    finally:
        db.dispose()


def test_an_experiment_may_not_mix_tasks(regressor, demo_models, fresh_pg, tmp_path):
    from service import experiments
    from service.definition import ExperimentDefinition
    from service.registry import register
    from service.store.database import Database
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, database_url=fresh_pg)
    db = Database(fresh_pg)
    try:
        model = next(iter(demo_models.values()))
        champion = register(db, settings, model.path.read_bytes(), name="clf", version="1", task="binary")
        challenger = register(db, settings, regressor.data, name="reg", version="1", task="regression")
        body = {"name": "mixed", "mode": "ab", "champion": {"kind": "model", "model": champion.ref},
                "challenger": {"kind": "model", "model": challenger.ref}, "metric": {"kind": "binary", "margin": 0.02}}
        with pytest.raises(ValidationFailed) as raised:
            experiments.create(db, ExperimentDefinition.model_validate(body), actor="test")
        messages = [e["message"] for e in raised.value.errors if e["field"] == "challenger.model"]
        assert any("both arms must answer the same task" in m for m in messages), messages
    finally:
        db.dispose()
