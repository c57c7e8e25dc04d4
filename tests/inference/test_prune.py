"""Pruning a tree ensemble on its ONNX file: the first k trees give what scikit-learn computes for the
first k trees of the estimator it was exported from (boosting: staged predictions; a forest: the
mean of its first k trees), for classifiers and regressors."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import ValidationFailed
from service.inference.prune import describe, prune_trees
from tests.inference.conftest import signature_of


def _run(data: bytes, X: np.ndarray):
    from service.inference.signature import load_session_from_bytes

    session = load_session_from_bytes(data)
    return session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})


def _convert(estimator, n_features: int, zipmap: bool = True) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": False}} if not zipmap else None
    return convert_sklearn(estimator, initial_types=[("input", FloatTensorType([None, n_features]))], options=options,
                           target_opset={"": 17, "ai.onnx.ml": 3}).SerializeToString()


def test_the_first_k_boosted_trees_give_sklearns_staged_probabilities(demo_models, fitted):
    _, X_test, _, _, estimators = fitted
    gbm = estimators["gbm"]
    data = demo_models["gbm"].path.read_bytes()
    assert describe(data).trees == 300 and not describe(data).averaged
    staged = list(gbm.staged_predict_proba(X_test))
    for keep in (150, 30, 1):
        out = _run(prune_trees(data, keep), X_test)
        probabilities = np.asarray([[row[0], row[1]] for row in out[1]])
        np.testing.assert_allclose(probabilities, staged[keep - 1], atol=2e-5)
        assert (out[0] == staged[keep - 1].argmax(axis=1)).mean() > 0.99   # float32 ties at 0.5 aside


def test_the_first_k_trees_of_a_forest_give_the_mean_of_those_trees():
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_breast_cancer(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=40, max_depth=5, random_state=3).fit(X, y)
    data = _convert(forest, X.shape[1], zipmap=False)
    assert describe(data).averaged   # leaf weights divided by 40: the kept ones are scaled back up
    for keep in (20, 5):
        expected = np.mean([t.predict_proba(X) for t in forest.estimators_[:keep]], axis=0)
        np.testing.assert_allclose(_run(prune_trees(data, keep), X)[1], expected, atol=1e-5)


def test_a_boosted_regressor_keeps_its_base_value_and_first_k_trees():
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = load_diabetes(return_X_y=True)
    model = GradientBoostingRegressor(n_estimators=60, max_depth=2, random_state=1).fit(X, y)
    data = _convert(model, X.shape[1])
    assert describe(data).op_type == "TreeEnsembleRegressor" and not describe(data).averaged
    staged = list(model.staged_predict(X))
    for keep in (30, 3):
        np.testing.assert_allclose(_run(prune_trees(data, keep), X)[0][:, 0], staged[keep - 1], rtol=1e-4, atol=1e-3)


def test_a_pruned_model_registers_with_the_same_signature(demo_models):
    data = demo_models["gbm"].path.read_bytes()
    pruned = prune_trees(data, 10)
    assert len(pruned) < len(data) / 10
    assert signature_of(pruned)["inputs"] == signature_of(data)["inputs"]


@pytest.mark.parametrize("keep", [0, 300, 301])
def test_keep_outside_one_to_trees_minus_one_is_refused(demo_models, keep):
    with pytest.raises(ValidationFailed) as caught:
        prune_trees(demo_models["gbm"].path.read_bytes(), keep)
    assert caught.value.errors[0]["field"] == "keep" and "300 trees" in caught.value.errors[0]["message"]


def test_a_model_without_trees_is_refused(demo_models):
    data = demo_models["logistic"].path.read_bytes()
    assert describe(data) is None
    with pytest.raises(ValidationFailed, match="only a tree ensemble"):
        prune_trees(data, 1)
