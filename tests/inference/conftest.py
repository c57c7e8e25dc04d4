"""Fixtures for inference tests: the demo ONNX models with their fitted scikit-learn twins, and
small extra models (a regressor, a multiclass classifier with and without ZipMap)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@dataclass
class Built:
    """An ONNX model written to disk, its signature and the estimator it came from."""

    path: Path
    data: bytes
    signature: dict[str, Any]
    estimator: Any
    X_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="session")
def fitted():
    """(X_train, X_test, y_train, y_test, {key: fitted estimator}) of the demo recipe."""
    from service.demo.models import split, train

    X_train, X_test, y_train, y_test = split()
    return X_train, X_test, y_train, y_test, train(X_train, y_train)


def signature_of(data: bytes, feature_names: list[str] | None = None) -> dict[str, Any]:
    from service.inference.signature import inspect_model

    return inspect_model(data, feature_names).to_dict()


@pytest.fixture(scope="session")
def demo_signatures(demo_models):
    """{key: signature dict} of the demo models, with their real feature names."""
    return {k: signature_of(m.path.read_bytes(), m.feature_names) for k, m in demo_models.items()}


def _write(directory: Path, name: str, onx) -> tuple[Path, bytes]:
    data = onx.SerializeToString()
    path = directory / f"{name}.onnx"
    path.write_bytes(data)
    return path, data


@pytest.fixture(scope="session")
def regressor(tmp_path_factory) -> Built:
    """LinearRegression on scikit-learn's bundled diabetes data (output: one float per row)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32).astype(np.float64)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=3)
    model = LinearRegression().fit(X_train, y_train)
    onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, X.shape[1]]))], target_opset=17)
    path, data = _write(tmp_path_factory.mktemp("regressor"), "diabetes-linear", onx)
    return Built(path, data, signature_of(data), model, X_test, y_test)


@pytest.fixture(scope="session", params=["zipmap", "tensor"])
def iris(request, tmp_path_factory) -> Built:
    """A multiclass classifier with string class labels, exported with ZipMap (list of dicts) or
    with plain tensor probabilities (zipmap=False)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    data = load_iris()
    X = data.data.astype(np.float32).astype(np.float64)
    y = np.asarray(data.target_names)[data.target]  # "setosa", "versicolor", "virginica"
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=5, stratify=y)
    model = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    options = {id(model): {"zipmap": request.param == "zipmap"}}
    onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 4]))], options=options,
                          target_opset={"": 17, "ai.onnx.ml": 3})
    path, blob = _write(tmp_path_factory.mktemp("iris"), f"iris-{request.param}", onx)
    return Built(path, blob, signature_of(blob), model, X_test, y_test)


@pytest.fixture
def settings(tmp_path):
    from tests.conftest import make_settings

    return make_settings(tmp_path)
