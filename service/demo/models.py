"""The demo models: scikit-learn's bundled breast-cancer data set (nothing is downloaded), a complex
champion and cheaper challengers, exported to ONNX with skl2onnx.

``build_demo_models(directory)`` writes ``<key>.onnx`` files, ``test.csv`` (the held-out rows with a
``label`` column) and ``manifest.json``; a second call with the same recipe reuses the files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

RECIPE = "frugal-demo-4"   # bump when the models or the split change
SEED = 7


@dataclass(frozen=True)
class DemoModel:
    """One demo ONNX file and what to register it as."""

    key: str
    name: str
    version: str
    task: str
    path: Path
    description: str
    feature_names: list[str]
    role: str | None = None


SPECS = {
    "gbm": ("cancer-gbm", "champion", "gradient boosting, 300 trees of depth 3 (the expensive champion)"),
    "logistic": ("cancer-logistic", "challenger", "standardised logistic regression (the cheap challenger)"),
    "mlp": ("cancer-mlp", None, "standardised MLP 64-32 (a candidate for int8 quantization)"),
}


def feature_names() -> list[str]:
    """The data set's feature names in snake_case ("mean radius" -> "mean_radius")."""
    from sklearn.datasets import load_breast_cancer

    return [re.sub(r"[^a-z0-9]+", "_", n.lower()).strip("_") for n in load_breast_cancer().feature_names]


def _estimators():
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "gbm": GradientBoostingClassifier(n_estimators=300, max_depth=3, learning_rate=0.05, random_state=SEED),
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5)),
        "mlp": make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=1000, random_state=SEED)),
    }


def split():
    """(X_train, X_test, y_train, y_test) of the breast-cancer data, float32-exact, seeded."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    X = data.data.astype(np.float32).astype(np.float64)  # what the float32 ONNX input will see
    return train_test_split(X, data.target, test_size=0.3, random_state=SEED, stratify=data.target)


def train(X_train, y_train) -> dict:
    """The fitted demo estimators by key (deterministic: fixed seeds)."""
    estimators = _estimators()
    for estimator in estimators.values():
        estimator.fit(X_train, y_train)
    return estimators


def to_onnx(estimator, n_features: int, name: str = "frugal-demo") -> bytes:
    """skl2onnx export with a float32 ``input`` [None, n_features] (classifiers keep the default ZipMap).

    The graph is named ``name`` rather than skl2onnx's random uuid, so a rebuild gives the same bytes
    (and the same sha256 in the registry)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(estimator, initial_types=[("input", FloatTensorType([None, n_features]))],
                          target_opset={"": 17, "ai.onnx.ml": 3})
    onx.graph.name = name
    return onx.SerializeToString()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _models(directory: Path, names: list[str]) -> dict[str, DemoModel]:
    return {key: DemoModel(key, name, "1", "binary", directory / f"{key}.onnx", description, names, role)
            for key, (name, role, description) in SPECS.items()}


def build_demo_models(directory: Path | str) -> dict[str, DemoModel]:
    """Train and export the demo models into ``directory`` (or reuse them if the manifest matches).

    Keys: "gbm" (role "champion"), "logistic" (role "challenger") and "mlp".
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "manifest.json"
    if manifest.exists():
        try:
            saved = json.loads(manifest.read_text())
            if saved.get("recipe") == RECIPE and all(_digest(directory / f) == h for f, h in saved["files"].items()):
                return _models(directory, saved["feature_names"])
        except (OSError, ValueError, KeyError):
            pass  # rebuild below

    names = feature_names()
    X_train, X_test, y_train, y_test = split()
    for key, estimator in train(X_train, y_train).items():
        (directory / f"{key}.onnx").write_bytes(to_onnx(estimator, X_train.shape[1], SPECS[key][0]))
    with open(directory / "test.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*names, "label"])
        for row, label in zip(X_test, y_test):
            writer.writerow([repr(float(v)) for v in row] + [int(label)])
    files = [f"{key}.onnx" for key in SPECS] + ["test.csv"]
    manifest.write_text(json.dumps({"recipe": RECIPE, "feature_names": names,
                                    "files": {f: _digest(directory / f) for f in files}}, indent=2))
    return _models(directory, names)
